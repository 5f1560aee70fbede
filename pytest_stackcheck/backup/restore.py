"""Restore archives into scratch databases, never into a live database.

Every restore goes through ``guard_target``: the target must carry the
scratch prefix, must not be one of the deployment's database names, and must
not exist yet, so a restore can neither overwrite nor later drop anything it
did not create. The database dump runs through psql with ``ON_ERROR_STOP``
and ``--single-transaction``, so the first error aborts the whole restore
instead of leaving a partial database that looks fine.
"""

from __future__ import annotations

import gzip
import logging
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from pytest_stackcheck.backup.scratch import ScratchServer
from pytest_stackcheck.errors import StackcheckError

log = logging.getLogger("pytest_stackcheck")

SCRATCH_PREFIX = "stackcheck_restore_"
ERROR_LINES = 10

# pg_dumpall writes CREATE ROLE for every role, the bootstrap superuser
# included, and relies on that statement failing harmlessly where the role
# exists. Every other error in a globals restore is real.
_ROLE_EXISTS = re.compile(r'ERROR:\s+role "[^"]+" already exists')
_CREATE_ROLE = re.compile(r'^CREATE ROLE ("(?:[^"]|"")+"|[^\s;]+);', re.MULTILINE)


class RestoreRefused(StackcheckError):
    """A restore was aimed at a database it must not touch."""


class RestoreFailed(StackcheckError):
    """psql stopped a restore on an error."""


@dataclass(frozen=True, slots=True)
class Restored:
    """One archive restored into a scratch database."""

    archive: Path
    database: str
    target: str
    duration_s: float


def scratch_name(database: str) -> str:
    """Return the scratch database name used to restore ``database``."""
    return f"{SCRATCH_PREFIX}{database}"


def guard_target(
    target: str, live_databases: Collection[str], existing: Collection[str]
) -> None:
    """Raise RestoreRefused unless ``target`` is a new scratch database name."""
    if target in live_databases:
        raise RestoreRefused(
            f"restore target {target!r} is a live database of this stack; a "
            f"restore only goes into a new database named {SCRATCH_PREFIX}NAME"
        )
    if not target.startswith(SCRATCH_PREFIX):
        raise RestoreRefused(
            f"restore target {target!r} does not start with {SCRATCH_PREFIX!r}; "
            "only scratch databases are restored into and dropped"
        )
    if target in existing:
        raise RestoreRefused(
            f"restore target {target!r} already exists on the scratch server; "
            "drop it by hand if an earlier run left it, then run again"
        )


def roles_in_globals(archive: Path) -> list[str]:
    """Return the role names the globals archive creates."""
    with gzip.open(archive, "rt", encoding="utf-8", errors="replace") as stream:
        text = stream.read()
    names = []
    for match in _CREATE_ROLE.finditer(text):
        name = match.group(1)
        if name.startswith('"'):
            name = name[1:-1].replace('""', '"')
        names.append(name)
    return names


def apply_globals(server: ScratchServer, archive: Path, timeout_s: float) -> None:
    """Create the roles of a globals archive on the scratch server.

    Raises RestoreFailed on any error except "role already exists".
    """
    result = _psql(server, "postgres", archive, (), timeout_s)
    errors = [
        line
        for line in result.stderr.splitlines()
        if "ERROR:" in line and not _ROLE_EXISTS.search(line)
    ]
    if result.returncode != 0 or errors:
        shown = "\n".join(errors[:ERROR_LINES]) or result.stderr.strip()
        raise RestoreFailed(
            f"restoring the roles from {archive.name} failed (psql exit status "
            f"{result.returncode}):\n{shown}"
        )


def roles_without_password(server: ScratchServer, names: Collection[str]) -> list[str]:
    """Return which of the roles ``names`` have no password on the scratch server.

    pg_dumpall --no-role-passwords (or a dump by a role that may not read
    pg_authid) creates the roles without one, so after a restore onto a new
    server they cannot log in with a password.
    """
    import psycopg

    with psycopg.connect(**server.conninfo("postgres")) as conn:
        rows = conn.execute(
            "SELECT rolname FROM pg_authid "
            "WHERE rolname = ANY(%s) AND rolpassword IS NULL ORDER BY 1",
            (list(names),),
        ).fetchall()
    return [str(row[0]) for row in rows]


def existing_databases(server: ScratchServer) -> set[str]:
    """Return the database names on the scratch server."""
    import psycopg

    with psycopg.connect(**server.conninfo("postgres")) as conn:
        rows = conn.execute("SELECT datname FROM pg_database").fetchall()
    return {str(row[0]) for row in rows}


def restore_database(
    server: ScratchServer,
    archive: Path,
    database: str,
    *,
    owner: str,
    live_databases: Collection[str],
    timeout_s: float,
) -> Restored:
    """Restore ``database``'s archive into a new scratch database owned by ``owner``.

    The scratch database is created only after the guard passes and is
    dropped again if the restore fails, so a failure leaves nothing behind.
    """
    import psycopg
    from psycopg import sql

    target = scratch_name(database)
    guard_target(target, live_databases, existing_databases(server))

    started = time.monotonic()
    with psycopg.connect(**server.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(target), sql.Identifier(owner)
            )
        )
    try:
        result = _psql(
            server,
            target,
            archive,
            ("--set", "ON_ERROR_STOP=1", "--single-transaction"),
            timeout_s,
        )
        if result.returncode != 0:
            errors = [line for line in result.stderr.splitlines() if line.strip()]
            raise RestoreFailed(
                f"restoring {archive.name} into {target} failed (psql exit "
                f"status {result.returncode}), so the whole restore was rolled "
                "back:\n" + "\n".join(errors[-ERROR_LINES:])
            )
    except BaseException:
        drop_database(server, target)
        raise

    duration = time.monotonic() - started
    log.info("restored %s into %s in %.2f s", archive.name, target, duration)
    return Restored(archive, database, target, duration)


def drop_database(server: ScratchServer, target: str) -> None:
    """Drop a scratch database; refuses names without the scratch prefix."""
    import psycopg
    from psycopg import sql

    if not target.startswith(SCRATCH_PREFIX):
        raise RestoreRefused(
            f"refusing to drop {target!r}: only {SCRATCH_PREFIX}NAME databases "
            "are dropped"
        )
    with psycopg.connect(**server.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(target)
            )
        )
    log.info("dropped scratch database %s", target)


def _psql(
    server: ScratchServer,
    dbname: str,
    archive: Path,
    options: tuple[str, ...],
    timeout_s: float,
) -> subprocess.CompletedProcess[str]:
    # The archive is decompressed to a private file first: psql commits at
    # the end of its input, so a pipe that broke part way would commit a
    # partial restore.
    with tempfile.TemporaryDirectory(prefix="stackcheck-restore-") as directory:
        plain = Path(directory) / "dump.sql"
        try:
            with gzip.open(archive, "rb") as source, plain.open("wb") as sink:
                shutil.copyfileobj(source, sink, length=1 << 20)
        except (OSError, EOFError) as exc:
            raise RestoreFailed(
                f"{archive.name} cannot be decompressed ({exc}); the archive is damaged"
            ) from exc
        command = server.psql(dbname, *options, "--file", str(plain))
        try:
            return subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                timeout=timeout_s,
                check=False,
                env={"PGCONNECT_TIMEOUT": "10", "LC_ALL": "C", "PATH": "/usr/bin:/bin"},
            )
        except subprocess.TimeoutExpired as exc:
            raise RestoreFailed(
                f"restoring {archive.name} into {dbname} did not finish within "
                f"{timeout_s} s; raise backup.restore_timeout_s"
            ) from exc
