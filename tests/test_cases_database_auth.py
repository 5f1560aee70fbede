"""pg_hba.conf that trusts TCP logins: the security gate must block it."""

from __future__ import annotations

import pytest
from helpers import REPO, SUITES, local_profile

AUTH_SUITE = str(SUITES / "security" / "test_database_auth.py")
TRUST = REPO / "fixtures" / "postgres" / "cases" / "trust-host.conf"


def test_password_auth_passes(tmp_path, run_suite):
    result = run_suite(local_profile(tmp_path), AUTH_SUITE)

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["security *pass*"])


def test_trust_over_tcp_fails(tmp_path, run_suite):
    profile = local_profile(
        tmp_path, {"[postgres]\n": f"[postgres]\nhba = '{TRUST}'\n"}
    )

    result = run_suite(profile, AUTH_SUITE)

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*let stackcheck_app, postgres log in to singularity with a wrong "
            "password: pg_hba.conf trusts TCP connections*"
        ]
    )


def test_missing_hba_file_rejected(tmp_path, run_suite):
    profile = local_profile(tmp_path, {"[postgres]\n": "[postgres]\nhba = 'absent'\n"})

    result = run_suite(profile, AUTH_SUITE)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*postgres.hba*does not exist*"])
