"""NATS under load: core publish, request/reply on the gateway, JetStream acks."""

from __future__ import annotations

import pytest

from pytest_stackcheck.load.nats_driver import (
    judge_nats,
    latency_over_time,
    run_nats_load,
)


@pytest.mark.usefixtures("load_exclusive")
@pytest.mark.gate("load", item="NATS meets its SLOs under load")
def test_nats_slo(stack, evidence):
    doc = stack.profile.doc
    spec = doc.load.nats
    result = run_nats_load(stack.nats_url, spec, doc.nats.jetstream)
    verdict = judge_nats(result, spec, doc.nats.jetstream)

    for threshold in verdict.thresholds:
        unit = threshold.unit.strip()
        evidence.record(f"{threshold.key} measured", threshold.measured, unit)
    evidence.record("load.nats.published", result.published)
    evidence.record("load.nats.requests", result.requests)
    evidence.record("load.nats.jetstream_acked", result.jetstream_acked)
    evidence.plot(
        f"NATS request/reply latency on {spec.request_subject}",
        latency_over_time(result),
        "elapsed (s)",
        "latency (ms)",
    )
    assert verdict.ok, verdict.message()
