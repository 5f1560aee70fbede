"""The [backup] table of a stack profile: defaults and rejected values."""

from __future__ import annotations

import pytest
from helpers import STACKS, local_profile

from pytest_stackcheck.backup import job
from pytest_stackcheck.profile import load_profile
from pytest_stackcheck.provision.base import LiveStack


def _with_backup(tmp_path, table: str):
    return local_profile(tmp_path, {"[nginx]\n": f"[backup]\n{table}\n[nginx]\n"})


def test_backup_defaults():
    backup = load_profile(STACKS / "local.toml").doc.backup

    assert backup.script == ""
    assert backup.retention_days == 7
    assert backup.max_age_hours == 26.0
    assert backup.archive_glob == "{database}-????????T??????Z.sql.gz"


def test_backup_table_loads(tmp_path):
    profile = load_profile(
        _with_backup(tmp_path, "retention_days = 14\nmax_age_hours = 30")
    )

    assert profile.doc.backup.retention_days == 14
    assert profile.doc.backup.max_age_hours == 30.0


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("retention_days = 0", r"backup\.retention_days.* = 0 is invalid"),
        ("max_age_hours = -1", r"backup\.max_age_hours.*must be positive"),
        ("archive_glob = 'db-*.sql.gz'", r"does not contain \{database\}"),
        ("retention = 7", r"backup\.retention.*did you mean 'retention_days'"),
    ],
)
def test_backup_rejects_invalid(tmp_path, table, message):
    with pytest.raises(pytest.UsageError, match=message):
        load_profile(_with_backup(tmp_path, table))


def test_missing_script_rejected_at_job(tmp_path):
    profile = load_profile(_with_backup(tmp_path, "script = 'no-such-job.sh'"))

    with pytest.raises(job.BackupConfigError, match=r"backup\.script.*not found"):
        job.job_target(LiveStack(profile=profile))
