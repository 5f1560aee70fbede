"""Restart gate (S1) against real local stacks: always passes, on-failure fails."""

from __future__ import annotations

import json

from helpers import SUITES, local_profile

RESTART_SUITE = str(SUITES / "chaos" / "test_restart.py")
SHORT_BUDGET = {"[policy]\n": "[chaos]\nrecovery_s = 5.0\n\n[policy]\n"}


def test_always_policy_recovers_with_report(run_suite, tmp_path):
    profile = local_profile(tmp_path, SHORT_BUDGET)
    report = tmp_path / "report"

    result = run_suite(
        profile, RESTART_SUITE, "-m", "chaos", "-k", "genesis", "--gate-report", report
    )

    result.assert_outcomes(passed=3)
    gates = json.loads((report / "gates.json").read_text())
    evidence = {
        fact["name"]: fact["value"]
        for gate in gates["gates"]
        if gate["name"] == "chaos"
        for check in gate["checks"]
        for fact in check["evidence"]
    }
    html = (report / "signoff.html").read_text()
    for death in ("kill", "term", "exit-zero"):
        recovery = evidence[f"genesis_after_{death}.recovery"]
        assert isinstance(recovery, float)
        assert 0 < recovery <= 5.0
        assert evidence[f"genesis_after_{death}.recovery_resolution"] <= 0.6
        assert f"recovery: genesis after {death}" in html


def test_on_failure_policy_fails_clean_deaths(run_suite, tmp_path):
    profile = local_profile(
        tmp_path,
        {
            **SHORT_BUDGET,
            "[services.genesis]\n": "[services.genesis]\nrestart = 'on-failure'\n",
        },
    )

    result = run_suite(profile, RESTART_SUITE, "-m", "chaos", "-k", "genesis")

    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*genesis stayed down after term (state EXITED, exit status 0)*",
            "*genesis stayed down after exit-zero (state EXITED, exit status 0)*",
        ],
        consecutive=False,
    )
    assert result.stdout.str().count("set Restart=always") >= 2
