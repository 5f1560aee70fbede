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
GATE_TESTS = 12


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
