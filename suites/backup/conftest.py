"""Fixtures of the backup gates: one job run, its archives and a restore server.

Under pytest-xdist every worker runs the job once, one worker at a time (an
flock on the archive directory), and starts its own scratch server.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_stackcheck.backup import archives, job, restore
from pytest_stackcheck.backup.fingerprint import Fingerprint
from pytest_stackcheck.backup.roundtrip import live_fingerprint
from pytest_stackcheck.backup.scratch import (
    ScratchServer,
    scratch_bindir,
    unprivileged_user,
)


@dataclass(frozen=True, slots=True)
class BeforeJob:
    """The live databases and archive directory as they were before the job."""

    fingerprints: dict[str, Fingerprint]
    archives: dict[str, list[archives.Archive]]


@dataclass(frozen=True, slots=True)
class RestoreServer:
    """The scratch server, and how restoring the backup's roles into it went."""

    server: ScratchServer
    globals_archive: archives.Archive | None
    roles: tuple[str, ...]
    globals_error: str


@pytest.fixture(scope="session")
def backup_target(stack) -> job.JobTarget:
    """The stack's backup job: script, archive directory and connection."""
    return job.job_target(stack)


@pytest.fixture(scope="session")
def backup_before(stack, backup_target) -> BeforeJob:
    """Fingerprints and archive listings taken before this run's job."""
    backup = stack.profile.doc.backup
    fingerprints = {
        database: live_fingerprint(stack, database)
        for database in stack.profile.doc.postgres.databases
    }
    listing = {
        database: archives.find_archives(
            backup_target.archive_dir,
            archives.database_pattern(backup.archive_glob, database),
            archives.DATABASE_TRAILER,
        )
        for database in stack.profile.doc.postgres.databases
    }
    return BeforeJob(fingerprints, listing)


@pytest.fixture(scope="session")
def backup_run(backup_target, backup_before) -> job.JobRun:
    """One run of the backup job against the stack, after ``backup_before``."""
    # Another worker's run takes at most one job timeout; twice that is a margin.
    with job.directory_lock(backup_target.archive_dir, 2 * backup_target.timeout_s):
        return job.run_job(backup_target)


@pytest.fixture(scope="session")
def restore_server(stack, backup_run, backup_target) -> Iterator[RestoreServer]:
    """A scratch PostgreSQL server holding the roles of the newest globals dump."""
    doc = stack.profile.doc
    server = ScratchServer(
        scratch_bindir(doc.backup.scratch_bindir), unprivileged_user(doc.local.run_as)
    )
    server.start()
    try:
        found = archives.find_archives(
            backup_target.archive_dir,
            doc.backup.globals_glob,
            archives.CLUSTER_TRAILER,
        )
        newest = archives.newest_good(found)
        roles: tuple[str, ...] = ()
        error = ""
        if newest is None:
            error = (
                f"no globals archive matching {doc.backup.globals_glob!r} verifies "
                f"in {backup_target.archive_dir}; the job must run "
                "pg_dumpall --globals-only, because per-database dumps carry no roles"
            )
        else:
            roles = tuple(restore.roles_in_globals(newest.path))
            try:
                restore.apply_globals(server, newest.path, doc.backup.restore_timeout_s)
            except restore.RestoreFailed as exc:
                error = str(exc)
        yield RestoreServer(server, newest, roles, error)
    finally:
        server.stop()


@pytest.fixture
def sandbox_dir() -> Iterator[Path]:
    """An empty archive directory for runs of the job that must not touch real ones."""
    import shutil

    directory = Path(tempfile.mkdtemp(prefix="stackcheck-backup-sandbox-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
