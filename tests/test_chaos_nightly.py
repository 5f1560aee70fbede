"""Nightly schedule: a seed gives the same faults, printed and recorded."""

from __future__ import annotations

import json
import re

from helpers import SUITES, local_profile

NIGHTLY_SUITE = str(SUITES / "chaos" / "test_nightly.py")
THREE_FAULTS = {"[policy]\n": "[chaos]\nmax_faults = 3\n\n[policy]\n"}


def _steps(report) -> list[str]:
    gates = json.loads((report / "gates.json").read_text())
    facts = [
        fact
        for gate in gates["gates"]
        for check in gate["checks"]
        for fact in check["evidence"]
        if fact["name"].startswith("step_")
    ]
    # Keep the fault and target; recovery times differ from run to run.
    return [re.sub(r": step .*", "", str(fact["value"])) for fact in facts]


def test_same_seed_same_schedule(run_suite, tmp_path):
    profile = local_profile(tmp_path, THREE_FAULTS)
    schedules = []
    for run in ("first", "second"):
        report = tmp_path / run
        result = run_suite(
            profile, NIGHTLY_SUITE, "--chaos-seed", "3", "--gate-report", report
        )
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(["chaos seed: 3 (--chaos-seed=3)"])
        schedules.append(_steps(report))

    assert len(schedules[0]) >= 1
    assert len(schedules[0]) <= 3
    assert schedules[0] == schedules[1]


def test_without_seed_skipped(run_suite, tmp_path):
    result = run_suite(local_profile(tmp_path), NIGHTLY_SUITE, "-rs")

    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*runs only with --chaos-seed N*"])


def test_invalid_seed_rejected(run_suite, tmp_path):
    result = run_suite(local_profile(tmp_path), NIGHTLY_SUITE, "--chaos-seed", "x")

    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--chaos-seed=x: not an integer*"])
