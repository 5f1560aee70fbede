"""The gateway load gate against a real local stack, through real nginx.

Each test runs the shipped load suite in a subprocess. The failing cases
change only the profile: a threshold beyond what any stack can do, or a
reference gateway that answers slowly.
"""

from __future__ import annotations

import json
import re

from helpers import SUITES, local_profile

GATEWAY = str(SUITES / "load" / "test_gateway.py")
SLOW_GATEWAY = {
    'role = "llm-server"\n': 'role = "llm-server"\nargs = ["--latency-ms", "1500"]\n'
}


def test_gateway_passes_with_shipped_slos(tmp_path, run_suite):
    report = tmp_path / "report"
    result = run_suite(local_profile(tmp_path), GATEWAY, "--gate-report", str(report))

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["load *pass*", "deployment verdict: OK"])
    files = report / "load" / "test_gateway_slo"
    assert (files / "locust_stats.csv").is_file()
    assert (files / "locust_stats_history.csv").is_file()
    assert (files / "locust.html").is_file()
    assert _evidence(report, "load.gateway.p95_ms measured") < 1000
    assert _evidence(report, "load.gateway.max_error_rate measured") == 0
    signoff = (report / "signoff.html").read_text()
    assert "<h2>LLM gateway latency</h2>" in signoff
    assert "<h2>LLM gateway throughput</h2>" in signoff


def test_tightened_p95_fails_naming_it(tmp_path, run_suite):
    profile = local_profile(tmp_path, {"p95_ms = 1000.0": "p95_ms = 0.001"})
    result = run_suite(profile, GATEWAY)

    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "FAIL load.gateway.p95_ms: p95 latency of " in output
    assert "required <= 0.001 ms" in output
    assert "pass load.gateway.max_error_rate" in output
    result.stdout.fnmatch_lines(["load *fail*", "deployment verdict: BLOCKED*"])
    assert result.ret == 1


def test_unreachable_rate_is_an_invalid_run(tmp_path, run_suite):
    profile = local_profile(tmp_path, {"user_rps = 10.0": "user_rps = 100000.0"})
    result = run_suite(profile, GATEWAY)

    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "the run did not produce the requested load" in output
    assert "INVALID RUN: reached " in output
    assert "of the 400000 requested" in output
    assert "FAIL load.gateway.min_rps" in output


def test_slow_gateway_fails_latency_slos(tmp_path, run_suite):
    result = run_suite(local_profile(tmp_path, SLOW_GATEWAY), GATEWAY)

    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    # Whichever request is slowest is named; each waits the added 1500 ms.
    p95 = re.search(r"FAIL load.gateway.p95_ms: p95 latency of .* = (\d+) ms", output)
    assert p95 is not None
    assert int(p95.group(1)) >= 1500
    assert "FAIL load.gateway.ttft_p95_ms: p95 time to first token" in output
    assert result.ret == 1


def test_two_workers_merge_their_results(tmp_path, run_suite):
    report = tmp_path / "report"
    result = run_suite(
        local_profile(tmp_path),
        GATEWAY,
        "--load-workers",
        "2",
        "--gate-report",
        str(report),
    )

    result.assert_outcomes(passed=1)
    files = report / "load" / "test_gateway_slo"
    assert (files / "locust-worker-0.log").is_file()
    assert (files / "locust-worker-1.log").is_file()
    assert "2 workers connected" in (files / "locust.log").read_text()
    assert _evidence(report, "load.gateway.workers_connected") == 2
    assert _evidence(report, "load.gateway.peak_users") == 4


def _evidence(report, name):
    gates = json.loads((report / "gates.json").read_text())
    for gate in gates["gates"]:
        for check in gate["checks"]:
            for record in check["evidence"]:
                if record["name"] == name:
                    return record["value"]
    raise AssertionError(f"no evidence named {name!r} in gates.json")


def test_load_workers_rejects_negative(pytester):
    result = pytester.runpytest("--load-workers", "-1")

    result.stderr.fnmatch_lines(["*--load-workers='-1': expected a whole number*"])
    assert result.ret != 0


def test_token_rate_and_first_token_measured(tmp_path, run_suite):
    # 16 tokens 50 ms apart: the whole stream takes about 750 ms, so a first
    # token timed at the end of the stream would show as hundreds of ms.
    spaced = 'role = "llm-server"\nargs = ["--token-interval-ms", "50"]\n'
    profile = local_profile(
        tmp_path,
        {
            'role = "llm-server"\n': spaced,
            "min_tokens_per_s = 10.0": "min_tokens_per_s = 1000.0",
        },
    )
    result = run_suite(profile, GATEWAY)

    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    rate = re.search(r"streamed tokens per second = ([0-9.]+) tokens/s", output)
    first = re.search(r"p95 time to first token = ([0-9.]+) ms", output)
    assert rate is not None
    assert first is not None
    assert 5 < float(rate.group(1)) <= 20
    assert float(first.group(1)) < 300
    assert "FAIL load.gateway.min_tokens_per_s" in output
