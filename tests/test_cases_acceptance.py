"""Broken deployments the acceptance gates must block, beside the nginx cases.

Each test starts a real local stack with one thing wrong, runs the real
acceptance suite against it in a subprocess, and checks that the gate fails
and the message names the setting; the shipped profile passes the same
checks in the other tests.
"""

from __future__ import annotations

import pytest
from helpers import REPO, SUITES, local_profile

ACCEPTANCE = str(SUITES / "acceptance")
NO_JETSTREAM = REPO / "fixtures" / "nats" / "cases" / "no-jetstream.conf.j2"


def test_expected_migration_applied_passes(tmp_path, run_suite):
    result = run_suite(local_profile(tmp_path), ACCEPTANCE, "-k", "migrations")

    result.assert_outcomes(passed=3)


def test_pending_migration_fails_preprod(tmp_path, run_suite):
    profile = local_profile(
        tmp_path,
        {'expected_migration = "20240401090000"': 'expected_migration = "20250101"'},
    )

    result = run_suite(profile, ACCEPTANCE, "-k", "migrations")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        [
            "*database singularity has applied migrations in table "
            "schema_migrations, including 20250101*newest 20240401090000*",
            "preprod *fail*",
        ]
    )


def test_jetstream_off_fails_day1(tmp_path, run_suite):
    profile = local_profile(
        tmp_path, {"[nats]\n": f"[nats]\nconfig = '{NO_JETSTREAM}'\n"}
    )

    result = run_suite(profile, ACCEPTANCE, "-k", "jetstream")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*JetStream is off*add a jetstream { store_dir: ... } block*", "day1 *fail*"]
    )


def test_on_failure_restart_fails_preprod(tmp_path, run_suite):
    """A profile that declares on-failure still gets a unit that stays down (S1)."""
    profile = local_profile(
        tmp_path,
        {"[services.genesis]\n": "[services.genesis]\nrestart = 'on-failure'\n"},
    )

    result = run_suite(profile, ACCEPTANCE, "-m", "preprod", "-k", "restart")

    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*service genesis: restart policy 'on-failure', expected 'always' (the "
            "profile declares restart = 'on-failure')*exits with status 0*"
            "set Restart=always*",
            "preprod *fail*",
        ]
    )
