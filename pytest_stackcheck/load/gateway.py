"""Gateway load: locust against the LLM gateway through nginx, judged by SLOs.

One LLM request is one submit (``POST /request``), one chat completion or
one streamed chat completion. The polls of a submitted request are HTTP
requests but not LLM requests. Latency SLOs apply to what a client waits
for: each HTTP request, each whole stream, and for submit-and-poll the time
until the answer is ready. Each percentile is judged on the slowest entry.
"""

from __future__ import annotations

import math
from pathlib import Path

from pytest_stackcheck.load.locust_runner import (
    LOCUSTFILES,
    EntryStats,
    LocustResult,
    LocustRun,
)
from pytest_stackcheck.load.spec import GatewayLoad
from pytest_stackcheck.load.verdict import Bound, Threshold, Verdict
from pytest_stackcheck.probes.routes import client_front
from pytest_stackcheck.provision.base import LiveStack

GATEWAY_LOCUSTFILE = LOCUSTFILES / "gateway.py"
DERIVED = "derived"
FIRST_TOKEN = "stream: first token"
TIME_PER_TOKEN = "stream: time per token"
ANSWER_READY = "submit: answer ready"
# A run that reaches less than this share of users * user_rps did not
# produce the requested load, whatever its latencies were.
REACHED_SHARE = 0.9


def gateway_token(stack: LiveStack, spec: GatewayLoad) -> str:
    """Return the bearer token of the service behind the gateway route."""
    doc = stack.profile.doc
    for route in doc.nginx.routes:
        if route.prefix == spec.route and route.service in doc.services:
            return stack.secret(doc.services[route.service].token_env)
    return ""


def gateway_run(
    stack: LiveStack, spec: GatewayLoad, out_dir: Path, workers: int
) -> LocustRun:
    """Describe the locust run the profile requests against this stack."""
    front = client_front(stack)
    return LocustRun(
        locustfile=GATEWAY_LOCUSTFILE,
        host=front.base_url + spec.route.rstrip("/"),
        users=spec.users,
        spawn_rate=spec.spawn_rate,
        duration_s=spec.duration_s,
        out_dir=out_dir,
        workers=workers,
        environment={
            "STACKCHECK_LOAD_TOKEN": gateway_token(stack, spec),
            "STACKCHECK_LOAD_MAX_TOKENS": str(spec.max_tokens),
            "STACKCHECK_LOAD_USER_RPS": str(spec.user_rps),
            "STACKCHECK_LOAD_HOST_HEADER": front.host,
        },
    )


def requested_rps(spec: GatewayLoad) -> float:
    """Return the LLM requests per second the profile requests, or 0 for "max"."""
    return spec.users * spec.user_rps


def latency_entries(result: LocustResult) -> list[EntryStats]:
    """Return the entries whose latency a client waits for."""
    return [
        entry
        for entry in result.entries
        if entry.name != "Aggregated"
        and (entry.type != DERIVED or entry.name == ANSWER_READY)
    ]


def llm_request_rps(result: LocustResult) -> float:
    """Return LLM requests per second: every POST (submit, chat, stream)."""
    return sum(entry.rps for entry in result.entries if entry.type == "POST")


def judge_gateway(result: LocustResult, spec: GatewayLoad, workers: int) -> Verdict:
    """Judge a gateway run against the profile's SLOs."""
    entries = latency_entries(result)
    requests = sum(entry.requests for entry in entries)
    failures = sum(entry.failures for entry in entries)
    rate = llm_request_rps(result)
    requested_rate = requested_rps(spec)

    invalid: list[str] = []
    if requests == 0:
        invalid.append("no request completed, so nothing could be judged")
    if result.peak_users < spec.users:
        invalid.append(
            f"reached {result.peak_users} of the {spec.users} users requested "
            "(load.gateway.users); the load generator was short of CPU or failed "
            "to start users"
        )
    if workers and result.workers_connected < workers:
        invalid.append(
            f"{result.workers_connected} of {workers} locust workers connected"
        )
    if requested_rate and rate < REACHED_SHARE * requested_rate:
        invalid.append(
            f"reached {rate:.1f} LLM requests/s of the {requested_rate:g} requested "
            f"(users * user_rps); the gateway or the load generator could not "
            "keep up"
        )

    min_rps = spec.min_rps or REACHED_SHARE * requested_rate
    thresholds = [
        *_worst_latencies(entries, spec),
        Threshold(
            "load.gateway.max_error_rate",
            f"error rate ({failures} of {requests})",
            failures / requests if requests else math.nan,
            spec.max_error_rate,
            "",
            Bound.AT_MOST,
        ),
        Threshold(
            "load.gateway.min_rps",
            "LLM requests per second",
            rate,
            min_rps,
            " req/s",
            Bound.AT_LEAST,
        ),
        Threshold(
            "load.gateway.ttft_p95_ms",
            "p95 time to first token",
            _p95(result.entry(DERIVED, FIRST_TOKEN)),
            spec.ttft_p95_ms,
            " ms",
            Bound.AT_MOST,
        ),
        Threshold(
            "load.gateway.min_tokens_per_s",
            "streamed tokens per second",
            _tokens_per_s(result.entry(DERIVED, TIME_PER_TOKEN)),
            spec.min_tokens_per_s,
            " tokens/s",
            Bound.AT_LEAST,
        ),
    ]
    return Verdict("LLM gateway load", tuple(thresholds), tuple(invalid))


def _worst_latencies(entries: list[EntryStats], spec: GatewayLoad) -> list[Threshold]:
    thresholds = []
    limits = {"p50": spec.p50_ms, "p95": spec.p95_ms, "p99": spec.p99_ms}
    for name, limit in limits.items():
        worst: EntryStats | None = None
        value = math.nan
        for entry in entries:
            measured = float(getattr(entry, f"{name}_ms"))
            if not math.isnan(measured) and (worst is None or measured > value):
                worst, value = entry, measured
        label = f"{name} latency of {worst.label}" if worst else f"{name} latency"
        thresholds.append(
            Threshold(
                f"load.gateway.{name}_ms", label, value, limit, " ms", Bound.AT_MOST
            )
        )
    return thresholds


def _p95(entry: EntryStats | None) -> float:
    return entry.p95_ms if entry is not None and entry.requests else math.nan


def _tokens_per_s(entry: EntryStats | None) -> float:
    if entry is None or not entry.requests or math.isnan(entry.average_ms):
        return math.nan
    if entry.average_ms <= 0:
        return math.inf
    return 1000.0 / entry.average_ms
