"""NATS load driver: core publish, request/reply and acknowledged JetStream publish.

Each phase runs for at most ``duration_s`` (and a bounded message count) on
its own connection:

- core publish: publish ``payload_bytes`` messages as fast as the client
  can, then flush, so the rate counts only messages the server has read;
- request/reply: ``request_concurrency`` tasks send chat requests on the
  gateway's subject and time each reply. A timeout, a missing responder or
  a reply with ``error`` counts as failed;
- JetStream: publish into a scratch file-backed stream and wait for every
  acknowledgement, with a bounded window of acks in flight. The stream is
  deleted afterwards.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from dataclasses import dataclass

from pytest_stackcheck.errors import ProbeError
from pytest_stackcheck.load.spec import NatsLoad
from pytest_stackcheck.load.verdict import Bound, Threshold, Verdict, percentile

log = logging.getLogger("pytest_stackcheck")

MAX_MESSAGES = 5_000_000
# Messages published between two looks at the clock.
CLOCK_EVERY = 500
REQUEST_TIMEOUT_S = 5.0
JETSTREAM_WINDOW = 256
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class NatsLoadResult:
    """Measurements of the three phases."""

    published: int
    publish_s: float
    request_latencies_s: tuple[float, ...]
    request_sent_at_s: tuple[float, ...]
    request_failures: int
    request_s: float
    first_request_error: str
    jetstream_acked: int
    jetstream_s: float
    jetstream_error: str

    @property
    def publish_rate(self) -> float:
        return self.published / self.publish_s if self.publish_s else math.nan

    @property
    def requests(self) -> int:
        return len(self.request_latencies_s) + self.request_failures

    @property
    def request_rate(self) -> float:
        ok = len(self.request_latencies_s)
        return ok / self.request_s if self.request_s else math.nan

    @property
    def jetstream_rate(self) -> float:
        if not self.jetstream_s or self.jetstream_error:
            return math.nan
        return self.jetstream_acked / self.jetstream_s


async def _connect(url: str) -> object:
    import nats

    try:
        return await nats.connect(
            url,
            connect_timeout=CONNECT_TIMEOUT_S,
            max_reconnect_attempts=0,
            allow_reconnect=False,
        )
    except Exception as exc:  # nats-py raises several unrelated types here
        raise ProbeError(f"cannot connect to NATS at {url}: {exc!r}") from exc


async def publish_core(url: str, spec: NatsLoad) -> tuple[int, float]:
    """Publish as fast as possible for ``duration_s``; return (count, seconds)."""
    client = await _connect(url)
    subject = f"stackcheck.load.core.{uuid.uuid4().hex}"
    payload = b"x" * spec.payload_bytes
    count = 0
    try:
        started = time.perf_counter()
        deadline = started + spec.duration_s
        while count < MAX_MESSAGES:
            for _ in range(CLOCK_EVERY):
                await client.publish(subject, payload)  # type: ignore[attr-defined]
            count += CLOCK_EVERY
            if time.perf_counter() >= deadline:
                break
        await client.flush(timeout=30)  # type: ignore[attr-defined]
        return count, time.perf_counter() - started
    finally:
        await client.close()  # type: ignore[attr-defined]


async def request_reply(
    url: str, spec: NatsLoad
) -> tuple[list[tuple[float, float]], int, float, str]:
    """Send chat requests from concurrent tasks.

    Returns (send time, latency) of each answered request in seconds from
    the start, the failure count, the phase's seconds and the first error.
    """
    client = await _connect(url)
    samples: list[tuple[float, float]] = []
    failures = 0
    first_error = ""
    started = time.perf_counter()
    deadline = started + spec.duration_s
    limit = MAX_MESSAGES // spec.request_concurrency

    async def worker(index: int) -> None:
        nonlocal failures, first_error
        for sequence in range(limit):
            if time.perf_counter() >= deadline:
                return
            body = {
                "messages": [{"role": "user", "content": "load test"}],
                "max_tokens": 4,
                "correlation_id": f"load-{index}-{sequence}",
            }
            sent = time.perf_counter()
            try:
                reply = await client.request(  # type: ignore[attr-defined]
                    spec.request_subject,
                    json.dumps(body).encode(),
                    timeout=REQUEST_TIMEOUT_S,
                )
                document = json.loads(reply.data)
                if "error" in document:
                    raise ProbeError(f"reply has error {document['error']!r}")
            except Exception as exc:  # timeout, no responders, bad reply
                failures += 1
                first_error = first_error or repr(exc)
                continue
            samples.append((sent - started, time.perf_counter() - sent))

    try:
        await asyncio.gather(*(worker(i) for i in range(spec.request_concurrency)))
        return samples, failures, time.perf_counter() - started, first_error
    finally:
        await client.close()  # type: ignore[attr-defined]


async def publish_jetstream(url: str, spec: NatsLoad) -> tuple[int, float, str]:
    """Publish with acknowledgements into a scratch stream; return (acked, s, error)."""
    client = await _connect(url)
    name = f"STACKCHECK_LOAD_{uuid.uuid4().hex[:12].upper()}"
    subject = f"stackcheck.load.js.{name.lower()}"
    payload = b"x" * spec.payload_bytes
    jetstream = client.jetstream()  # type: ignore[attr-defined]
    acked = 0
    try:
        try:
            await jetstream.add_stream(
                name=name, subjects=[subject], storage="file", max_msgs=MAX_MESSAGES
            )
        except Exception as exc:
            return 0, 0.0, f"cannot create a JetStream stream: {exc!r}"

        started = time.perf_counter()
        deadline = started + spec.duration_s
        while acked < MAX_MESSAGES and time.perf_counter() < deadline:
            pending = [
                jetstream.publish(subject, payload, timeout=REQUEST_TIMEOUT_S)
                for _ in range(JETSTREAM_WINDOW)
            ]
            try:
                await asyncio.gather(*pending)
            except Exception as exc:
                return acked, time.perf_counter() - started, f"publish failed: {exc!r}"
            acked += JETSTREAM_WINDOW
        return acked, time.perf_counter() - started, ""
    finally:
        try:
            await jetstream.delete_stream(name)
        except Exception as exc:
            log.warning("could not delete scratch stream %s: %r", name, exc)
        await client.close()  # type: ignore[attr-defined]


async def drive(url: str, spec: NatsLoad, jetstream: bool) -> NatsLoadResult:
    """Run the three phases one after another and collect what they measured."""
    published, publish_s = await publish_core(url, spec)
    samples, failures, request_s, first_error = await request_reply(url, spec)
    acked, jetstream_s, jetstream_error = 0, 0.0, "JetStream is off in the profile"
    if jetstream:
        acked, jetstream_s, jetstream_error = await publish_jetstream(url, spec)
    return NatsLoadResult(
        published=published,
        publish_s=publish_s,
        request_latencies_s=tuple(latency for _, latency in samples),
        request_sent_at_s=tuple(sent for sent, _ in samples),
        request_failures=failures,
        request_s=request_s,
        first_request_error=first_error,
        jetstream_acked=acked,
        jetstream_s=jetstream_s,
        jetstream_error=jetstream_error,
    )


def run_nats_load(url: str, spec: NatsLoad, jetstream: bool) -> NatsLoadResult:
    """Run the NATS load driver to completion in a fresh event loop."""
    log.info("NATS load: %.1f s per phase against %s", spec.duration_s, url)
    return asyncio.run(drive(url, spec, jetstream))


def latency_over_time(
    result: NatsLoadResult, bucket_s: float = 0.25
) -> dict[str, list[tuple[float, float]]]:
    """Return p50 and p95 request/reply latency (ms) per ``bucket_s`` of sending."""
    buckets: dict[int, list[float]] = {}
    for sent, latency in zip(
        result.request_sent_at_s, result.request_latencies_s, strict=True
    ):
        buckets.setdefault(int(sent / bucket_s), []).append(latency * 1000)
    series: dict[str, list[tuple[float, float]]] = {"p50": [], "p95": []}
    for index in sorted(buckets):
        series["p50"].append((index * bucket_s, percentile(buckets[index], 0.50)))
        series["p95"].append((index * bucket_s, percentile(buckets[index], 0.95)))
    return series


def judge_nats(result: NatsLoadResult, spec: NatsLoad, jetstream: bool) -> Verdict:
    """Judge a NATS load run against the profile's SLOs."""
    latencies_ms = [value * 1000 for value in result.request_latencies_s]
    invalid = []
    if not result.requests:
        invalid.append("no request was sent, so request/reply could not be judged")
    if jetstream and result.jetstream_error:
        invalid.append(f"JetStream phase: {result.jetstream_error}")

    requests = result.requests
    error_rate = result.request_failures / requests if requests else math.nan
    error_label = f"request error rate ({result.request_failures} of {requests})"
    if result.first_request_error:
        error_label += f", first error {result.first_request_error[:120]}"

    thresholds = [
        Threshold(
            "load.nats.min_publish_rate",
            "core publish rate",
            result.publish_rate,
            spec.min_publish_rate,
            " msg/s",
            Bound.AT_LEAST,
        ),
        *(
            Threshold(
                f"load.nats.request_{name}_ms",
                f"{name} request/reply latency on {spec.request_subject}",
                percentile(latencies_ms, share),
                limit,
                " ms",
                Bound.AT_MOST,
            )
            for name, share, limit in (
                ("p50", 0.50, spec.request_p50_ms),
                ("p95", 0.95, spec.request_p95_ms),
                ("p99", 0.99, spec.request_p99_ms),
            )
        ),
        Threshold(
            "load.nats.max_request_error_rate",
            error_label,
            error_rate,
            spec.max_request_error_rate,
            "",
            Bound.AT_MOST,
        ),
        Threshold(
            "load.nats.min_request_rate",
            "request/reply rate",
            result.request_rate,
            spec.min_request_rate,
            " req/s",
            Bound.AT_LEAST,
        ),
    ]
    if jetstream:
        thresholds.append(
            Threshold(
                "load.nats.min_jetstream_ack_rate",
                "acknowledged JetStream publish rate",
                result.jetstream_rate,
                spec.min_jetstream_ack_rate,
                " msg/s",
                Bound.AT_LEAST,
            )
        )
    return Verdict("NATS load", tuple(thresholds), tuple(invalid))
