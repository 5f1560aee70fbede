"""Secrets printed by the stack: the security gate must block them.

Each test starts a real local stack whose reference service prints its
settings, database password and bearer token included, the way apps that
dump their configuration do, and runs the secret scan against it. The
secrets are set in the environment, so the test can check
that no output of the run repeats them.
"""

from __future__ import annotations

import pytest
from helpers import SUITES, local_profile

SECRETS_SUITE = str(SUITES / "security" / "test_secrets.py")
PASSWORD = "pg-password-for-the-leak-test"
TOKEN = "llm-token-for-the-leak-test"


@pytest.fixture(autouse=True)
def known_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set the stack's secrets to values this module can search for."""
    monkeypatch.setenv("STACKCHECK_PG_PASSWORD", PASSWORD)
    monkeypatch.setenv("STACKCHECK_LLM_TOKEN", TOKEN)


def _exposing(tmp_path, anchor: str, where: str):
    return local_profile(
        tmp_path, {anchor: f'{anchor}args = ["--expose-settings", "{where}"]\n'}
    )


def test_quiet_stack_passes(tmp_path, run_suite):
    result = run_suite(local_profile(tmp_path), SECRETS_SUITE, "-rs")

    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["security *pass*"])


def test_password_in_log_fails(tmp_path, run_suite):
    profile = _exposing(tmp_path, 'database = "genesis"\n', "log")

    result = run_suite(profile, SECRETS_SUITE)

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*STACKCHECK_PG_PASSWORD (verbatim) appears in log genesis.log*"
            "password=[*][*][*]*",
            "*Fix: stop the service from printing its settings*",
        ]
    )
    assert PASSWORD not in result.stdout.str()


def test_token_in_health_fails(tmp_path, run_suite):
    profile = _exposing(tmp_path, 'role = "llm-server"\n', "health")

    result = run_suite(profile, SECRETS_SUITE)

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*STACKCHECK_LLM_TOKEN (verbatim) appears in llm-server /health*"]
    )
    assert TOKEN not in result.stdout.str()
