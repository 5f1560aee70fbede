"""Run the backup job script against a stack and see what it left behind.

The job gets its connection from the libpq variables (``PGHOST``, ``PGPORT``,
``PGUSER``, ``PGPASSWORD``) and its policy from ``BACKUP_DIR``,
``BACKUP_DATABASES`` and ``BACKUP_RETENTION_DAYS``, so the operator's own
script can be run the same way as the shipped one.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from pytest_stackcheck.errors import StackcheckError
from pytest_stackcheck.provision.base import LiveStack

log = logging.getLogger("pytest_stackcheck")

FIXTURES = Path(__file__).resolve().parent.parent.parent / "fixtures"
SHIPPED_SCRIPT = FIXTURES / "backup" / "pg-backup.sh"

# Lines of the job's output kept for a failure message.
OUTPUT_TAIL_LINES = 20


class BackupConfigError(StackcheckError):
    """The profile does not say enough to run or judge the backup job."""


@dataclass(frozen=True, slots=True)
class JobTarget:
    """A resolved backup job: which script, where it writes, how it connects."""

    script: Path
    archive_dir: Path
    databases: tuple[str, ...]
    retention_days: int
    host: str
    port: int
    user: str
    password: str = ""
    timeout_s: float = 600.0

    def environment(self) -> dict[str, str]:
        """Return the process environment the job runs with."""
        environment = dict(os.environ)
        for name in ("PGDATABASE", "PGSERVICE", "PGPASSFILE", "PGOPTIONS"):
            environment.pop(name, None)
        environment.update(
            {
                "PGHOST": self.host,
                "PGPORT": str(self.port),
                "PGUSER": self.user,
                "BACKUP_DIR": str(self.archive_dir),
                "BACKUP_DATABASES": " ".join(self.databases),
                "BACKUP_RETENTION_DAYS": str(self.retention_days),
            }
        )
        if self.password:
            environment["PGPASSWORD"] = self.password
        else:
            environment.pop("PGPASSWORD", None)
        return environment

    def elsewhere(
        self, archive_dir: Path, *, port: int | None = None, host: str | None = None
    ) -> JobTarget:
        """Return this job writing to ``archive_dir``, optionally aimed elsewhere."""
        return replace(
            self,
            archive_dir=archive_dir,
            port=self.port if port is None else port,
            host=self.host if host is None else host,
        )


@dataclass(frozen=True, slots=True)
class JobRun:
    """One run of the backup job."""

    exit_status: int
    duration_s: float
    output: str
    new_files: tuple[str, ...]
    removed_files: tuple[str, ...]
    # Wall-clock start and end, in seconds since the epoch.
    started_at: float = 0.0
    finished_at: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def output_tail(self) -> str:
        """Return the last lines of what the job printed."""
        lines = self.output.strip().splitlines()
        return "\n".join(lines[-OUTPUT_TAIL_LINES:]) or "(no output)"


def local_workdir(stack: LiveStack) -> Path | None:
    """Return the directory of a local stack this run started, else None.

    pytest-xdist workers attach to the controller's stack and so do not own
    it, which is why the provisioner is checked instead of ``stack.owned``.
    """
    if stack.profile.doc.stack.provisioner != "local" or stack.workdir is None:
        return None
    return stack.workdir


def job_target(stack: LiveStack) -> JobTarget:
    """Resolve the backup job of ``stack`` from its profile."""
    profile = stack.profile
    backup = profile.doc.backup
    postgres = profile.doc.postgres
    script = profile.resolve(backup.script) if backup.script else SHIPPED_SCRIPT
    if not script.is_file():
        raise BackupConfigError(
            f"backup.script = {backup.script!r}: file {script} not found; name "
            "an existing script, relative to the profile"
        )

    host = postgres.host
    local_dir = local_workdir(stack)
    if local_dir is not None:
        # The local stack's superuser logs in without a password, over the
        # private socket directory only.
        host = str(local_dir / "pgsocket")

    if backup.archive_dir:
        archive_dir = profile.resolve(backup.archive_dir)
    elif local_dir is not None:
        archive_dir = local_dir / "backups"
        archive_dir.mkdir(mode=0o700, exist_ok=True)
    else:
        raise BackupConfigError(
            f"stack {stack.name}: backup.archive_dir is empty; set it to the "
            "directory the deployment's backup job writes to"
        )

    return JobTarget(
        script=script,
        archive_dir=archive_dir,
        databases=postgres.databases,
        retention_days=backup.retention_days,
        host=host,
        port=postgres.port,
        user=backup.user,
        password=stack.secret(backup.password_env),
        timeout_s=backup.job_timeout_s,
    )


def list_files(directory: Path) -> set[str]:
    """Return the names of the plain files in ``directory`` (none if missing)."""
    if not directory.is_dir():
        return set()
    return {entry.name for entry in directory.iterdir() if entry.is_file()}


@contextlib.contextmanager
def directory_lock(directory: Path, timeout_s: float) -> Iterator[None]:
    """Hold an exclusive flock on ``directory`` itself, so no lock file is left.

    pytest-xdist workers each run the job once, and this keeps two runs from
    rotating the same directory at the same time.
    """
    if not directory.is_dir():
        raise BackupConfigError(
            f"archive directory {directory} does not exist; create it or set "
            "backup.archive_dir to the job's directory"
        )
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StackcheckError(
                        f"another backup job held {directory} for more than "
                        f"{timeout_s} s; wait for it or raise backup.job_timeout_s"
                    ) from None
                time.sleep(0.1)
        yield
    finally:
        os.close(descriptor)


def _command(script: Path) -> list[str]:
    # A script without the executable bit (as a copied file may be) is run
    # with bash, which the shipped script needs anyway.
    if os.access(script, os.X_OK):
        return [str(script)]
    return ["bash", str(script)]


def run_job(target: JobTarget) -> JobRun:
    """Run the backup job once and return its status and the files it changed."""
    if not target.archive_dir.is_dir():
        raise BackupConfigError(
            f"archive directory {target.archive_dir} does not exist; create it "
            "or set backup.archive_dir to the job's directory"
        )
    before = list_files(target.archive_dir)
    started_at = time.time()
    started = time.monotonic()
    log.info("backup job %s starting for %s", target.script, target.archive_dir)
    try:
        result = subprocess.run(
            _command(target.script),
            env=target.environment(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=target.timeout_s,
            check=False,
            cwd=target.archive_dir,
        )
    except subprocess.TimeoutExpired as exc:
        raise StackcheckError(
            f"backup job {target.script} did not finish within "
            f"{target.timeout_s} s; raise backup.job_timeout_s or find what "
            "it waits for"
        ) from exc
    duration = time.monotonic() - started

    after = list_files(target.archive_dir)
    run = JobRun(
        exit_status=result.returncode,
        duration_s=duration,
        output=result.stdout + result.stderr,
        new_files=tuple(sorted(after - before)),
        removed_files=tuple(sorted(before - after)),
        started_at=started_at,
        finished_at=time.time(),
    )
    log.info(
        "backup job exited with %d after %.2f s: %d new, %d removed files",
        run.exit_status,
        duration,
        len(run.new_files),
        len(run.removed_files),
    )
    return run
