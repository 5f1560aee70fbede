"""Durability gates against real local stacks: sync setting and write ledger."""

from __future__ import annotations

import json

from helpers import REPO, SUITES, local_profile

DURABILITY_SUITE = str(SUITES / "chaos" / "test_durability.py")
DEFAULT_SYNC = REPO / "fixtures" / "nats" / "cases" / "n1-default-sync.conf.j2"


def _default_sync_profile(tmp_path, chaos_table: str = ""):
    return local_profile(
        tmp_path,
        {
            "[nats]\n": f"[nats]\nconfig = '{DEFAULT_SYNC}'\n",
            "[policy]\n": f"{chaos_table}[policy]\n",
        },
    )


def test_default_sync_interval_fails(run_suite, tmp_path):
    profile = _default_sync_profile(tmp_path)

    result = run_suite(profile, DURABILITY_SUITE, "-m", "chaos", "-k", "syncs")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E * sync_interval = 120 s (sync_always false)*loses up to 120 s*"
            "set 'sync_interval: always'*accepted_loss_window_s = 120*"
        ]
    )


def test_accepted_loss_window_passes(run_suite, tmp_path):
    profile = _default_sync_profile(
        tmp_path, "[chaos]\naccepted_loss_window_s = 120.0\n\n"
    )

    result = run_suite(profile, DURABILITY_SUITE, "-m", "chaos", "-k", "syncs")

    result.assert_outcomes(passed=1)


def test_ledger_counts_zero_lost(run_suite, tmp_path):
    profile = local_profile(tmp_path)
    report = tmp_path / "report"

    result = run_suite(
        profile, DURABILITY_SUITE, "-m", "chaos", "--gate-report", report
    )

    result.assert_outcomes(passed=3)
    gates = json.loads((report / "gates.json").read_text())
    evidence = {
        fact["name"]: fact["value"]
        for gate in gates["gates"]
        for check in gate["checks"]
        for fact in check["evidence"]
    }
    for server in ("postgresql", "nats"):
        for store in ("jetstream", "postgresql"):
            key = f"ledger.{server}_kill.{store}"
            assert evidence[f"{key}.lost"] == 0
            assert " 0 lost, 0 duplicated" in evidence[key]
            assert not evidence[key].startswith(f"{store}: 0 acknowledged")
