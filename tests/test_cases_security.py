"""Internal ports bound beyond loopback: the security gate must block them.

Each test starts a real local stack with one component bound to the
wildcard address 0.0.0.0 and runs the security suite against it. Nothing is
sent to the wildcard address: the check reads the kernel's socket tables.
"""

from __future__ import annotations

import pytest
from helpers import SUITES, local_profile

SECURITY = str(SUITES / "security" / "test_exposure.py")


def test_loopback_stack_passes(tmp_path, run_suite):
    result = run_suite(local_profile(tmp_path), SECURITY)

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["security *pass*"])


def test_app_on_wildcard_fails(tmp_path, run_suite):
    profile = local_profile(
        tmp_path,
        {'database = "genesis"\n': 'database = "genesis"\nhost = "0.0.0.0"\n'},
    )

    result = run_suite(profile, SECURITY)

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*genesis listens on 0.0.0.0 port *; bind the service to 127.0.0.1*"]
    )


def test_postgres_on_wildcard_fails(tmp_path, run_suite):
    profile = local_profile(
        tmp_path, {"[postgres]\n": '[postgres]\nhost = "0.0.0.0"\n'}
    )

    result = run_suite(profile, SECURITY)

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*postgres listens on 0.0.0.0 port *; set listen_addresses = 'localhost'*"]
    )


def test_component_listed_public_passes(tmp_path, run_suite):
    profile = local_profile(
        tmp_path,
        {
            'database = "genesis"\n': 'database = "genesis"\nhost = "0.0.0.0"\n',
            "[policy]\n": '[security]\npublic = ["nginx", "genesis"]\n\n[policy]\n',
        },
    )

    result = run_suite(profile, SECURITY)

    result.assert_outcomes(passed=1)
