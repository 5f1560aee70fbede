"""Freshness on a deployed stack: judged on the archives that existed before the run.

The gate's own job writes a fresh archive, so on a deployed stack it must not
count: a deployment whose nightly job stopped two days ago fails even though
the gate has just written a backup. The deployed stack here is a local stack
attached through the ``existing`` provisioner, with PostgreSQL reached over
its socket directory.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import SUITES, local_profile

from pytest_stackcheck.backup import archives, job
from pytest_stackcheck.profile import load_profile
from pytest_stackcheck.provision.base import LiveStack
from pytest_stackcheck.provision.local import LocalProvisioner

ARCHIVES_SUITE = str(SUITES / "backup" / "test_archives.py")


@pytest.fixture(scope="module")
def live_stack(tmp_path_factory) -> Iterator[LiveStack]:
    """A local stack that the tests attach to as a deployed one."""
    provisioner = LocalProvisioner()
    profile = load_profile(local_profile(tmp_path_factory.mktemp("profile")))
    stack = provisioner.up(profile)
    try:
        yield stack
    finally:
        provisioner.down(stack)


@pytest.fixture
def deployed_archives(live_stack) -> Iterator[Path]:
    """An archive directory, and one run's archives in a directory beside it."""
    directory = Path(tempfile.mkdtemp(prefix="stackcheck-backup-test-"))
    (directory / "deployed").mkdir()
    (directory / "source").mkdir()
    try:
        run = job.run_job(job.job_target(live_stack).elsewhere(directory / "source"))
        assert run.ok, run.output_tail()
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _existing_profile(tmp_path: Path, stack: LiveStack, archive_dir: Path) -> Path:
    assert stack.workdir is not None
    doc = stack.profile.doc
    singularity = doc.services["singularity"]
    text = f"""
[stack]
name = "deployed"
provisioner = "existing"

[postgres]
host = "{stack.workdir / "pgsocket"}"
port = {doc.postgres.port}
databases = {list(doc.postgres.databases)!r}
owner = "{doc.postgres.owner}"
user = "{doc.postgres.user}"

[backup]
archive_dir = "{archive_dir}"

[nats]

[nginx]
http_port = {doc.nginx.http_port}

[[nginx.routes]]
prefix = "/"
service = "singularity"

[services.singularity]
port = {singularity.port}
database = "singularity"
"""
    path = tmp_path / "deployed.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _seed(directory: Path, age_days: float) -> None:
    now = time.time()
    for archive in (directory / "source").iterdir():
        archives.aged_copy(archive, directory / "deployed", age_days, now)


def test_stale_deployed_backups_fail(
    tmp_path, run_suite, live_stack, deployed_archives
):
    _seed(deployed_archives, 2.0)
    profile = _existing_profile(tmp_path, live_stack, deployed_archives / "deployed")

    result = run_suite(profile, ARCHIVES_SUITE, "-k", "test_backup_fresh")

    result.assert_outcomes(failed=3)
    output = result.stdout.str()
    assert "is 48.0 h old, older than backup.max_age_hours = 26.0" in output
    assert result.ret == 1


def test_fresh_deployed_backups_pass(
    tmp_path, run_suite, live_stack, deployed_archives
):
    _seed(deployed_archives, 0.5)
    profile = _existing_profile(tmp_path, live_stack, deployed_archives / "deployed")

    result = run_suite(profile, ARCHIVES_SUITE, "-k", "test_backup_fresh")

    result.assert_outcomes(passed=3)
    assert result.ret == 0
