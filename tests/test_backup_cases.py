"""Broken backup setups: the backup gate must fail on each, for its reason.

Each test runs the real backup suite in a subprocess against a local stack,
with the profile naming the broken part, and checks that the failure names
the cause. The shipped job and a complete restore server pass.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from backup_helpers import install_without_extension
from helpers import REPO, SUITES, local_profile

BACKUP = str(SUITES / "backup")
CASES = REPO / "fixtures" / "backup" / "cases"
GATE_TESTS = 13


def _temporary_entries() -> set[str]:
    """Return the names of the scratch directories the backup gates create."""
    prefixes = (
        "stackcheck-scratch-pg-",
        "stackcheck-restore-",
        "stackcheck-backup-sandbox-",
    )
    root = Path(tempfile.gettempdir())
    return {entry.name for entry in root.iterdir() if entry.name.startswith(prefixes)}


def _with_backup(tmp_path: Path, table: str) -> Path:
    return local_profile(tmp_path, {"[nginx]\n": f"[backup]\n{table}\n[nginx]\n"})


def test_shipped_job_passes(tmp_path, run_suite):
    before = _temporary_entries()
    result = run_suite(local_profile(tmp_path), BACKUP, "-m", "backup")

    result.assert_outcomes(passed=GATE_TESTS)
    result.stdout.fnmatch_lines(["backup *pass*", "deployment verdict: OK"])
    assert result.ret == 0
    assert _temporary_entries() - before == set()


def test_b1_job_without_pipefail_fails(tmp_path, run_suite):
    script = CASES / "b1-no-pipefail.sh"
    profile = _with_backup(tmp_path, f"script = '{script}'")
    result = run_suite(profile, BACKUP, "-m", "backup")

    result.assert_outcomes(passed=GATE_TESTS - 1, failed=1)
    output = result.stdout.str()
    result.stdout.fnmatch_lines(["FAILED *test_failing_job_keeps_backups*"])
    assert "exited 0; a failed dump must fail the job" in output
    result.stdout.fnmatch_lines(["backup *fail*", "deployment verdict: BLOCKED*"])
    assert result.ret == 1


def test_b2_restore_server_without_extension_fails(tmp_path, run_suite):
    root, bindir = install_without_extension("pg_trgm")
    try:
        profile = _with_backup(tmp_path, f"scratch_bindir = '{bindir}'")
        result = run_suite(profile, BACKUP, "-m", "backup")
    finally:
        shutil.rmtree(root, ignore_errors=True)

    # One round trip per database fails; the job and archive checks pass.
    result.assert_outcomes(passed=GATE_TESTS - 3, failed=3)
    output = result.stdout.str()
    assert "lacks extension(s) pg_trgm" in output
    result.stdout.fnmatch_lines(["FAILED *test_round_trip*"])
    for database in ("singularity", "centralcloud", "genesis"):
        assert f"that {database} needs" in output
    result.stdout.fnmatch_lines(["backup *fail*", "deployment verdict: BLOCKED*"])
    assert result.ret == 1


def test_b2_job_without_globals_fails(tmp_path, run_suite):
    script = CASES / "b2-no-globals.sh"
    profile = _with_backup(tmp_path, f"script = '{script}'")
    result = run_suite(profile, BACKUP, "-m", "backup")

    output = result.stdout.str()
    assert "per-database dumps carry no roles" in output
    result.stdout.fnmatch_lines(
        [
            "FAILED *test_globals_restore_roles*",
            "FAILED *test_round_trip*singularity*",
        ]
    )
    result.stdout.fnmatch_lines(["backup *fail*", "deployment verdict: BLOCKED*"])
    assert result.ret == 1


def _run_case(tmp_path: Path, run_suite, name: str):
    profile = _with_backup(tmp_path, f"script = '{CASES / name}'")
    return run_suite(profile, BACKUP, "-m", "backup")


def _assert_blocked(result) -> None:
    result.stdout.fnmatch_lines(["backup *fail*", "deployment verdict: BLOCKED*"])
    assert result.ret == 1


def test_count_rotation_fails(tmp_path, run_suite):
    result = _run_case(tmp_path, run_suite, "count-rotation.sh")

    result.assert_outcomes(passed=GATE_TESTS - 1, failed=1)
    result.stdout.fnmatch_lines(["FAILED *test_retention_policy*"])
    output = result.stdout.str()
    assert "younger than backup.retention_days = 7" in output
    assert "rotate by age" in output
    _assert_blocked(result)


def test_world_readable_archives_fail(tmp_path, run_suite):
    result = _run_case(tmp_path, run_suite, "world-readable.sh")

    result.assert_outcomes(passed=GATE_TESTS - 1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*globals-*.sql.gz has mode 0644 in a directory every user can enter: "
            "every user on the host may read it*",
            "FAILED *test_archives_private*",
        ]
    )
    _assert_blocked(result)


def test_local_time_names_fail(tmp_path, run_suite, monkeypatch):
    """Names in local time marked Z are hours off in a zone east of UTC."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    result = _run_case(tmp_path, run_suite, "local-time.sh")

    result.assert_outcomes(passed=GATE_TESTS - 1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*is named with the UTC time *, but the job ran at * (+5.5 h apart)*",
            "FAILED *test_backup_job_succeeds*",
        ]
    )
    assert "date -u" in result.stdout.str()
    _assert_blocked(result)


def test_shipped_job_passes_off_utc(tmp_path, run_suite, monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    result = run_suite(local_profile(tmp_path), BACKUP, "-m", "backup")

    result.assert_outcomes(passed=GATE_TESTS)


def test_roles_without_passwords_fail(tmp_path, run_suite):
    result = _run_case(tmp_path, run_suite, "no-role-passwords.sh")

    result.assert_outcomes(passed=GATE_TESTS - 1, failed=1)
    result.stdout.fnmatch_lines(["FAILED *test_globals_restore_roles*"])
    output = result.stdout.str()
    assert "creates role(s) ['stackcheck_app'] without a password" in output
    assert "without --no-role-passwords" in output
    _assert_blocked(result)


def test_excluded_table_data_fails(tmp_path, run_suite):
    result = _run_case(tmp_path, run_suite, "exclude-table-data.sh")

    # One round trip per database fails.
    result.assert_outcomes(passed=GATE_TESTS - 3, failed=3)
    output = result.stdout.str()
    for database in ("singularity", "centralcloud", "genesis"):
        assert f"database {database}: the restore of {database}-" in output
    assert (
        "table public.events: the restore has no rows, but 50 row(s) up to "
        "id = 50 existed before the backup started"
    ) in output
    _assert_blocked(result)


def test_custom_format_archives_fail(tmp_path, run_suite):
    result = _run_case(tmp_path, run_suite, "custom-format.sh")

    result.stdout.fnmatch_lines(
        [
            "FAILED *test_archives_intact*",
            "FAILED *test_backup_job_succeeds*",
        ]
    )
    output = result.stdout.str()
    assert "in pg_dump's custom format (it starts with PGDMP)" in output
    assert "not plain SQL and not gzip-compressed" in output
    _assert_blocked(result)


def test_find_mtime_retention_passes(tmp_path, run_suite):
    """find -mtime +7 keeps archives up to 8 days old, within the grace day."""
    result = _run_case(tmp_path, run_suite, "find-mtime.sh")

    result.assert_outcomes(passed=GATE_TESTS)
    assert result.ret == 0
