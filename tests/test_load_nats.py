"""The NATS load gate against a real nats-server and the reference gateway."""

from __future__ import annotations

from helpers import SUITES, local_profile

NATS = str(SUITES / "load" / "test_nats.py")


def test_nats_passes_with_shipped_slos(tmp_path, run_suite):
    report = tmp_path / "report"
    result = run_suite(local_profile(tmp_path), NATS, "--gate-report", str(report))

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["load *pass*", "deployment verdict: OK"])
    signoff = (report / "signoff.html").read_text()
    assert "<h2>NATS request/reply latency on llm.request</h2>" in signoff


def test_unreachable_publish_rate_fails(tmp_path, run_suite):
    profile = local_profile(
        tmp_path, {"min_publish_rate = 5000.0": "min_publish_rate = 1e12"}
    )
    result = run_suite(profile, NATS)

    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "FAIL load.nats.min_publish_rate: core publish rate = " in output
    assert "required >= 1000000000000 msg/s" in output
    assert "pass load.nats.min_jetstream_ack_rate" in output
    assert result.ret == 1


def test_slow_gateway_fails_request_latency(tmp_path, run_suite):
    slow = 'role = "llm-server"\nargs = ["--latency-ms", "1500"]\n'
    profile = local_profile(tmp_path, {'role = "llm-server"\n': slow})
    result = run_suite(profile, NATS)

    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "FAIL load.nats.request_p95_ms: p95 request/reply latency on " in output
    assert "FAIL load.nats.min_request_rate" in output
    assert "pass load.nats.min_publish_rate" in output
