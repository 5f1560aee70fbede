"""SLO verdicts and the pure parts of the load checks, without a stack."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pytest_stackcheck.load.gateway import judge_gateway
from pytest_stackcheck.load.locust_runner import EntryStats, LocustResult
from pytest_stackcheck.load.proxy import _judge_stream, sized_body
from pytest_stackcheck.load.spec import GatewayLoad, ProxyChecks
from pytest_stackcheck.load.verdict import Bound, Threshold, Verdict, percentile
from pytest_stackcheck.schema import SchemaError


def _entry(type_: str, name: str, requests: int, p95: float, rps: float) -> EntryStats:
    return EntryStats(
        type=type_,
        name=name,
        requests=requests,
        failures=0,
        median_ms=p95 / 2,
        average_ms=p95 / 2,
        p50_ms=p95 / 2,
        p95_ms=p95,
        p99_ms=p95,
        rps=rps,
    )


def _result(entries: list[EntryStats], users: int) -> LocustResult:
    return LocustResult(
        entries=tuple(entries),
        history=(),
        peak_users=users,
        workers_connected=0,
        elapsed_s=5.0,
        csv_prefix=Path("locust"),
        html_path=Path("locust.html"),
    )


def test_threshold_line_names_key_and_values():
    threshold = Threshold("load.x.p95_ms", "p95", 12.0, 10.0, " ms", Bound.AT_MOST)

    assert not threshold.ok
    assert threshold.describe() == "FAIL load.x.p95_ms: p95 = 12 ms, required <= 10 ms"


def test_unmeasured_threshold_fails():
    threshold = Threshold("k", "rate", math.nan, 1.0, "", Bound.AT_LEAST)

    assert not threshold.ok
    assert "not measured" in threshold.describe()


def test_invalid_run_fails_with_thresholds_met():
    met = Threshold("k", "rate", 5.0, 1.0, "", Bound.AT_LEAST)
    verdict = Verdict("load", (met,), ("reached 1 of 4 users",))

    assert not verdict.ok
    assert "INVALID RUN: reached 1 of 4 users" in verdict.message()
    assert "pass k: rate = 5" in verdict.message()


def test_percentile_nearest_rank():
    values = list(range(1, 101))

    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.95) == 95
    assert percentile(values, 1.0) == 100
    assert math.isnan(percentile([], 0.5))


def test_gateway_short_of_rate_is_invalid():
    spec = GatewayLoad(users=4, user_rps=10.0)
    entries = [
        _entry("POST", "/v1/chat/completions", 50, 20.0, 10.0),
        _entry("derived", "stream: first token", 50, 5.0, 10.0),
        _entry("derived", "stream: time per token", 50, 2.0, 10.0),
    ]

    verdict = judge_gateway(_result(entries, users=4), spec, workers=0)

    assert not verdict.ok
    assert any("of the 40 requested" in reason for reason in verdict.invalid)
    assert [t.key for t in verdict.missed] == ["load.gateway.min_rps"]


def test_gateway_missing_users_is_invalid():
    spec = GatewayLoad(users=4, user_rps=0.0)
    entries = [_entry("POST", "/request", 50, 20.0, 100.0)]

    verdict = judge_gateway(_result(entries, users=2), spec, workers=0)

    assert any("reached 2 of the 4 users" in r for r in verdict.invalid)


def test_gateway_judges_slowest_entry():
    spec = GatewayLoad(users=1, user_rps=0.0, p95_ms=100.0)
    entries = [
        _entry("POST", "/request", 50, 20.0, 100.0),
        _entry("derived", "submit: answer ready", 50, 150.0, 100.0),
        _entry("derived", "stream: first token", 50, 500.0, 100.0),
    ]

    verdict = judge_gateway(_result(entries, users=1), spec, workers=0)
    p95 = next(t for t in verdict.thresholds if t.key == "load.gateway.p95_ms")

    # First-token times are judged by ttft_p95_ms, not by the latency SLOs.
    assert p95.label == "p95 latency of derived submit: answer ready"
    assert p95.measured == 150.0


@pytest.mark.parametrize(
    ("arrivals", "ok"),
    [
        ([0.1 + i for i in range(10)], True),
        ([9.0 + i * 0.001 for i in range(10)], False),
        ([0.1 + i for i in range(5)] + [4.5 + i * 0.001 for i in range(5)], True),
        ([0.1 + i for i in range(4)] + [3.5 + i * 0.001 for i in range(6)], False),
        ([2.5 + i for i in range(10)], False),
        ([0.1 + i for i in range(9)], False),
    ],
    ids=["spaced", "buffered", "half-spaced", "mostly-buffered", "late", "short"],
)
def test_stream_judgement(arrivals, ok):
    result = _judge_stream(arrivals, ProxyChecks())

    assert result.ok is ok, result.message


@pytest.mark.parametrize("size", [200, 943718, 8 * 1024 * 1024, 8 * 1024 * 1024 + 1])
def test_sized_body_is_exact(size):
    body, words = sized_body(size)

    assert len(body) == size
    document = json.loads(body)
    assert len(document["messages"][0]["content"].split()) == words


def test_load_spec_rejects_bad_share():
    with pytest.raises(
        SchemaError, match=r"load.gateway.max_error_rate.*between 0 and 1"
    ):
        GatewayLoad(max_error_rate=5.0)
