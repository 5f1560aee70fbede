"""Archives on disk: find them, verify them, and judge retention and freshness.

An archive verifies when its gzip stream is intact (``gzip -t``), it contains at
least one byte of SQL, and its last lines contain the completion trailer that
pg_dump (or pg_dumpall) writes only after the whole dump succeeded.
"""

from __future__ import annotations

import calendar
import fnmatch
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

DATABASE_TRAILER = "-- PostgreSQL database dump complete"
CLUSTER_TRAILER = "-- PostgreSQL database cluster dump complete"

# The trailer is followed by "--", a blank line and, since PostgreSQL 15.14,
# 16.10 and 17.6, a "\unrestrict KEY" line; 8 lines leave a margin.
TRAILER_LINES = 8
GZIP_TIMEOUT_S = 600.0
SECONDS_PER_DAY = 86400.0
# find -mtime +N ignores the fraction of a day, so the common retention line
# "find -mtime +7 -delete" keeps archives until they are 8 days old. An
# archive counts as expired only one day past the window, so that this line,
# and a daily job that starts a little later than the day before, pass.
RETENTION_GRACE_DAYS = 1.0
_STAMP = re.compile(r"\d{8}T\d{6}Z")
# Seconds a new archive's name stamp may lie outside the job's run.
STAMP_MARGIN_S = 60.0


@dataclass(frozen=True, slots=True)
class Archive:
    """One archive file and what verifying it found."""

    path: Path
    size_bytes: int
    mtime: float
    problem: str = ""

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def ok(self) -> bool:
        return not self.problem

    def age_hours(self, now: float) -> float:
        """Return the archive's age in hours at ``now`` (seconds since epoch)."""
        return (now - self.mtime) / 3600.0


# pg_dump's custom format (-Fc) starts with these bytes; psql cannot restore it.
CUSTOM_FORMAT_MAGIC = b"PGDMP"
CUSTOM_FORMAT_PROBLEM = (
    "the archive is in pg_dump's custom format (it starts with PGDMP), not "
    "plain SQL{where}; dump with --format=plain, or name it .dump and restore "
    "it with pg_restore"
)


def verify(path: Path, trailer: str) -> str:
    """Return why the archive at ``path`` is not good, or '' when it is."""
    if path.stat().st_size == 0:
        return "the file is empty (0 bytes)"
    with path.open("rb") as raw:
        if raw.read(len(CUSTOM_FORMAT_MAGIC)) == CUSTOM_FORMAT_MAGIC:
            return CUSTOM_FORMAT_PROBLEM.format(where=" and not gzip-compressed")

    tested = subprocess.run(
        ["gzip", "-t", str(path)],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=GZIP_TIMEOUT_S,
        check=False,
    )
    if tested.returncode != 0:
        return f"gzip -t failed: {tested.stderr.strip() or tested.returncode}"

    import gzip

    last: list[bytes] = []
    seen_any = False
    with gzip.open(path, "rb") as stream:
        if stream.read(len(CUSTOM_FORMAT_MAGIC)) == CUSTOM_FORMAT_MAGIC:
            return CUSTOM_FORMAT_PROBLEM.format(where=" inside the gzip stream")
        stream.seek(0)
        for line in stream:
            seen_any = True
            last.append(line)
            if len(last) > TRAILER_LINES:
                last.pop(0)
    if not seen_any:
        return "the archive decompresses to nothing (an empty dump)"
    tail = [line.rstrip(b"\r\n").decode("utf-8", "replace") for line in last]
    if trailer not in tail:
        return (
            f"the dump does not end with '{trailer}', so it stopped part way; "
            f"its last line is {tail[-1]!r}"
        )
    return ""


def find_archives(directory: Path, pattern: str, trailer: str) -> list[Archive]:
    """Return the archives matching ``pattern``, each verified, newest first.

    Hidden files (a job's temporary names) are left out; ``leftover_files``
    reports them.
    """
    found: list[Archive] = []
    if not directory.is_dir():
        return found
    for path in directory.iterdir():
        if path.name.startswith(".") or not path.is_file():
            continue
        if not fnmatch.fnmatchcase(path.name, pattern):
            continue
        stat = path.stat()
        found.append(Archive(path, stat.st_size, stat.st_mtime, verify(path, trailer)))
    found.sort(key=lambda archive: archive.mtime, reverse=True)
    return found


def database_pattern(glob: str, database: str) -> str:
    """Return the file name pattern of ``database``'s archives."""
    return glob.replace("{database}", database)


def leftover_files(directory: Path) -> list[str]:
    """Return hidden or partial files that a finished job should have removed."""
    if not directory.is_dir():
        return []
    return sorted(
        entry.name
        for entry in directory.iterdir()
        if entry.name.startswith(".") or "partial" in entry.name
    )


def open_modes(directory: Path, names: Iterable[str]) -> list[str]:
    """Return why ``directory`` or the archives ``names`` in it are open to others.

    Archives contain every row of the databases, and the globals dump the
    roles' password hashes, so other users must not be able to read them. A
    file's mode counts only where other users can reach it, that is where
    the directory and every directory above it are searchable by others. A
    world-writable directory lets any user delete or replace archives.
    """
    problems: list[str] = []
    mode = stat.S_IMODE(directory.stat().st_mode)
    if mode & stat.S_IWOTH:
        problems.append(
            f"directory {directory} has mode {mode:04o}: every user may delete or "
            "replace archives; chmod 700 it"
        )
    if not _searchable_by_others(directory):
        return problems

    for name in sorted(names):
        mode = stat.S_IMODE((directory / name).stat().st_mode)
        if mode & (stat.S_IROTH | stat.S_IWOTH):
            access = "read" if mode & stat.S_IROTH else "change"
            problems.append(
                f"{name} has mode {mode:04o} in a directory every user can enter: "
                f"every user on the host may {access} it; set umask 077 in the "
                f"job and chmod 600 the archives, or chmod 700 {directory}"
            )
    return problems


def _searchable_by_others(directory: Path) -> bool:
    for path in (directory, *directory.resolve().parents):
        if not path.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def stamp_time(name: str) -> float | None:
    """Return the UTC time stamp ``YYYYMMDDTHHMMSSZ`` in ``name`` as epoch seconds."""
    match = _STAMP.search(name)
    if match is None:
        return None
    try:
        parsed = time.strptime(match.group(0), "%Y%m%dT%H%M%SZ")
    except ValueError:
        return None
    return float(calendar.timegm(parsed))


def stamp_problem(name: str, started_at: float, finished_at: float) -> str:
    """Return why the time stamp in a new archive's name is wrong, or ''.

    The stamp must fall within the job's run, give or take
    ``STAMP_MARGIN_S``. A name in local time marked Z is hours off wherever
    the host's time zone is not UTC.
    """
    stamped = stamp_time(name)
    if stamped is None:
        return ""
    if started_at - STAMP_MARGIN_S <= stamped <= finished_at + STAMP_MARGIN_S:
        return ""
    named = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(stamped))
    ran = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started_at))
    hours = (stamped - started_at) / 3600.0
    return (
        f"{name} is named with the UTC time {named}, but the job ran at {ran} "
        f"({hours:+.1f} h apart); the job writes local time with a Z suffix: "
        "use date -u +%Y%m%dT%H%M%SZ, because names in local time sort and "
        "expire wrongly across time zones and daylight saving changes"
    )


def newest_good(archives: Iterable[Archive]) -> Archive | None:
    """Return the newest archive that verifies, or None."""
    good = [archive for archive in archives if archive.ok]
    return max(good, key=lambda archive: archive.mtime, default=None)


@dataclass(frozen=True, slots=True)
class RetentionFinding:
    """The archives retention left in place for one database, and the expired ones."""

    kept_good: int
    kept_bad: int
    expired: tuple[str, ...]
    oldest_good_days: float


def judge_retention(
    archives: list[Archive], retention_days: int, now: float | None = None
) -> RetentionFinding:
    """List the archives past the window and its grace day, which should be gone.

    The newest good archive counts as kept whatever its age, because a policy
    that deleted it would leave the database without any backup.
    """
    now = time.time() if now is None else now
    window = (retention_days + RETENTION_GRACE_DAYS) * SECONDS_PER_DAY
    keeper = newest_good(archives)
    expired = tuple(
        archive.name
        for archive in archives
        if now - archive.mtime > window and archive is not keeper
    )
    good = [archive for archive in archives if archive.ok]
    oldest = min((archive.mtime for archive in good), default=now)
    return RetentionFinding(
        kept_good=len(good),
        kept_bad=len(archives) - len(good),
        expired=expired,
        oldest_good_days=(now - oldest) / SECONDS_PER_DAY,
    )


def aged_copy(archive: Path, directory: Path, age_days: float, now: float) -> Path:
    """Copy ``archive`` into ``directory`` as if it had been written long ago.

    The copy's name carries the older UTC time stamp and its mtime is set to
    match. Raises ValueError when the name contains no YYYYMMDDTHHMMSSZ stamp.
    """
    if _STAMP.search(archive.name) is None:
        raise ValueError(
            f"archive name {archive.name!r} contains no YYYYMMDDTHHMMSSZ time stamp"
        )
    when = now - age_days * SECONDS_PER_DAY
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    copy = directory / _STAMP.sub(stamp, archive.name, count=1)
    shutil.copyfile(archive, copy)
    os.utime(copy, (when, when))
    return copy
