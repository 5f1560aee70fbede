"""LLM gateway under load: locust through nginx, judged against the profile's SLOs."""

from __future__ import annotations

import pytest

from pytest_stackcheck.load.gateway import gateway_run, judge_gateway
from pytest_stackcheck.load.locust_runner import run_locust


@pytest.mark.usefixtures("load_exclusive")
@pytest.mark.gate("load", item="LLM gateway meets its SLOs under load")
def test_gateway_slo(stack, evidence, load_dir, load_workers):
    spec = stack.profile.doc.load.gateway
    result = run_locust(gateway_run(stack, spec, load_dir, load_workers))
    verdict = judge_gateway(result, spec, load_workers)

    for threshold in verdict.thresholds:
        unit = threshold.unit.strip()
        evidence.record(f"{threshold.key} measured", threshold.measured, unit)
    evidence.record("load.gateway.peak_users", result.peak_users)
    evidence.record("load.gateway.workers_connected", result.workers_connected)
    evidence.record("load.gateway.report", str(result.html_path))

    # locust's per-second history fills per-request rows only late in a short
    # run, so the plots use its aggregate row, which covers every second.
    aggregate = [p for p in result.history if p.name == "Aggregated"]
    latency = {
        "p50": [(p.elapsed_s, p.p50_ms) for p in aggregate if p.p50_ms == p.p50_ms],
        "p95": [(p.elapsed_s, p.p95_ms) for p in aggregate if p.p95_ms == p.p95_ms],
    }
    throughput = {"all requests": [(p.elapsed_s, p.rps) for p in aggregate]}
    evidence.plot("LLM gateway latency", latency, "elapsed (s)", "latency (ms)")
    evidence.plot("LLM gateway throughput", throughput, "elapsed (s)", "requests/s")

    assert verdict.ok, verdict.message()
