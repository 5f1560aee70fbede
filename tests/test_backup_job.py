"""The backup job script against a real local stack, and what it leaves on disk.

The shipped job must fail loudly when PostgreSQL is down and leave the good
archives alone. The broken job without pipefail runs through the same checks
to show that they tell the two apart.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import REPO, local_profile

from pytest_stackcheck.backup import archives, job
from pytest_stackcheck.control.supervisor import SupervisorControl
from pytest_stackcheck.errors import StackcheckError
from pytest_stackcheck.probes.wait import wait_until
from pytest_stackcheck.profile import load_profile
from pytest_stackcheck.provision.base import LiveStack
from pytest_stackcheck.provision.local import LocalProvisioner

NO_PIPEFAIL = REPO / "fixtures" / "backup" / "cases" / "b1-no-pipefail.sh"
DATABASES = ("singularity", "centralcloud", "genesis")


@pytest.fixture(scope="module")
def live_stack(tmp_path_factory) -> Iterator[LiveStack]:
    """A local stack for this module's job runs."""
    provisioner = LocalProvisioner()
    profile = load_profile(local_profile(tmp_path_factory.mktemp("profile")))
    stack = provisioner.up(profile)
    try:
        yield stack
    finally:
        provisioner.down(stack)


@pytest.fixture
def archive_dir() -> Iterator[Path]:
    """An empty archive directory, removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="stackcheck-backup-test-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def postgres_stopped(live_stack) -> Iterator[None]:
    """Stop the stack's PostgreSQL for one test and start it again after."""
    import psycopg

    assert live_stack.supervisor_socket is not None
    control = SupervisorControl(live_stack.supervisor_socket)
    control.stop("postgresql")
    try:
        yield
    finally:
        control.start("postgresql")

        def connect() -> bool:
            with psycopg.connect(**live_stack.conninfo("singularity")):
                return True

        waited = wait_until(connect, bool, 30.0, 0.1)
        assert waited.ok, f"PostgreSQL did not come back: {waited.error}"


def _good_archives(directory: Path) -> dict[str, int]:
    counts = {}
    for database in DATABASES:
        found = archives.find_archives(
            directory, f"{database}-*.sql.gz", archives.DATABASE_TRAILER
        )
        counts[database] = sum(1 for archive in found if archive.ok)
    found = archives.find_archives(
        directory, "globals-*.sql.gz", archives.CLUSTER_TRAILER
    )
    counts["globals"] = sum(1 for archive in found if archive.ok)
    return counts


def _seed_week(live_stack: LiveStack, directory: Path, ages: list[float]) -> None:
    """Fill ``directory`` with good archives of the given ages in days."""
    source = Path(tempfile.mkdtemp(prefix="stackcheck-backup-test-"))
    try:
        run = job.run_job(job.job_target(live_stack).elsewhere(source))
        assert run.ok, run.output_tail()
        now = time.time()
        for archive in source.iterdir():
            for age in ages:
                archives.aged_copy(archive, directory, age, now)
    finally:
        shutil.rmtree(source, ignore_errors=True)


def test_job_writes_verified_archives(live_stack, archive_dir):
    run = job.run_job(job.job_target(live_stack).elsewhere(archive_dir))

    assert run.ok, run.output_tail()
    assert len(run.new_files) == len(DATABASES) + 1
    assert _good_archives(archive_dir) == dict.fromkeys([*DATABASES, "globals"], 1)
    assert archives.leftover_files(archive_dir) == []


def test_job_stopped_server_fails(live_stack, archive_dir, postgres_stopped):
    run = job.run_job(job.job_target(live_stack).elsewhere(archive_dir))

    assert run.exit_status != 0
    assert run.new_files == ()
    assert job.list_files(archive_dir) == set()
    assert "dump of singularity failed" in run.output


def test_no_pipefail_job_stopped_server_exits_0(
    live_stack, archive_dir, postgres_stopped
):
    target = job.job_target(live_stack).elsewhere(archive_dir)
    broken = replace(target, script=NO_PIPEFAIL)
    run = job.run_job(broken)

    # The fault the shipped job prevents: success reported, empty archives.
    assert run.exit_status == 0
    assert len(run.new_files) == len(DATABASES) + 1
    problems = [
        archives.verify(archive_dir / name, archives.DATABASE_TRAILER)
        for name in run.new_files
        if not name.startswith("globals")
    ]
    assert all("empty dump" in problem for problem in problems), problems


@pytest.fixture
def seven_good(live_stack, archive_dir) -> set[str]:
    """Seven daily good archives per database, the oldest past the window."""
    _seed_week(live_stack, archive_dir, [day + 0.5 for day in range(1, 8)])
    return job.list_files(archive_dir)


def test_three_failing_runs_keep_seven(
    live_stack, archive_dir, seven_good, postgres_stopped
):
    target = job.job_target(live_stack).elsewhere(archive_dir)
    for _ in range(3):
        run = job.run_job(target)
        assert run.exit_status != 0
        assert run.new_files == ()
        assert run.removed_files == ()

    assert job.list_files(archive_dir) == seven_good
    assert _good_archives(archive_dir) == dict.fromkeys([*DATABASES, "globals"], 7)


def test_successful_run_rotates_expired(live_stack, archive_dir):
    ages = [day + 0.5 for day in range(10)]
    _seed_week(live_stack, archive_dir, ages)
    run = job.run_job(job.job_target(live_stack).elsewhere(archive_dir))

    assert run.ok, run.output_tail()
    # 0.5 to 6.5 days stay, 7.5 to 9.5 go, and the new archive is added.
    assert _good_archives(archive_dir) == dict.fromkeys([*DATABASES, "globals"], 8)
    assert len(run.removed_files) == 3 * (len(DATABASES) + 1)


def test_directory_lock_times_out(archive_dir):
    # flock locks belong to the open file, so a second open conflicts even
    # within one process.
    with (
        job.directory_lock(archive_dir, 1.0),
        pytest.raises(StackcheckError, match="another backup job held"),
        job.directory_lock(archive_dir, 0.3),
    ):
        pass

    with job.directory_lock(archive_dir, 0.3):
        assert job.list_files(archive_dir) == set()


def test_directory_lock_needs_directory(tmp_path):
    with (
        pytest.raises(job.BackupConfigError, match="does not exist"),
        job.directory_lock(tmp_path / "missing", 0.3),
    ):
        pass
