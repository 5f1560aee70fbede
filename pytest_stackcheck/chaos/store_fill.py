"""Fill the JetStream store until it rejects a publish, then judge the outcome.

A well-sized store rejects the publish that would pass ``max_file_store``
with a JetStream error at once. A store whose filesystem fills first stops
replying instead (nats-server 2.15.1 logs "no space left on device" and
sends no ack), so the client only sees a timeout. Either way no publish may be
acknowledged without being stored, the messages stored before must stay
readable, and when the store stops replying ``/healthz`` must say so.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass

import httpx

log = logging.getLogger("pytest_stackcheck")

MESSAGE_BYTES = 64 * 1024
PUBLISH_TIMEOUT_S = 5.0
# A rejection slower than this is a timeout in disguise, not an error reply.
FAIL_FAST_S = 1.0
FILL_SUBJECT_PREFIX = "stackcheck.fill"


@dataclass(frozen=True, slots=True)
class FillResult:
    """Outcome of a store fill: acks, the first failure and health."""

    acknowledged: int
    present: int
    failure: str
    failure_s: float
    healthz_status: int
    healthz_body: str

    @property
    def failed_fast(self) -> bool:
        return bool(self.failure) and self.failure_s <= FAIL_FAST_S

    def problems(self) -> list[str]:
        """List every way the store misbehaved under fill, empty when it did not."""
        found: list[str] = []
        if not self.failure:
            found.append(
                f"the store accepted all {self.acknowledged} publishes, so the "
                "fill never reached its limit"
            )
        elif not self.failed_fast:
            found.append(
                f"the publish that hit the full store failed only after "
                f"{self.failure_s:.1f} s ({self.failure}), not with an error "
                f"within {FAIL_FAST_S} s; the store's filesystem filled before "
                "max_file_store, so size max_file_store below the free space"
            )
        if self.present != self.acknowledged:
            found.append(
                f"{self.acknowledged} publishes were acknowledged but "
                f"{self.present} messages are stored: acknowledged writes lost"
            )
        if self.failure and not self.failed_fast and self.healthz_status == 200:
            found.append(
                "/healthz still returns 200 while the store answers no publish: "
                f"{self.healthz_body[:200]!r}"
            )
        return found


def fill_store(
    nats_url: str, monitor_url: str, stream: str, max_bytes: int
) -> FillResult:
    """Publish 64 KiB messages until one fails or ``max_bytes`` are stored.

    The stream is created for the fill and deleted afterwards, which frees
    the space again.
    """
    return asyncio.run(_fill(nats_url, monitor_url, stream, max_bytes))


async def _fill(
    nats_url: str, monitor_url: str, stream: str, max_bytes: int
) -> FillResult:
    import nats

    subject = f"{FILL_SUBJECT_PREFIX}.{uuid.uuid4().hex[:12]}"
    client = await nats.connect(nats_url, max_reconnect_attempts=0)
    jetstream = client.jetstream()
    await jetstream.add_stream(name=stream, subjects=[subject])
    payload = b"x" * MESSAGE_BYTES
    acknowledged = 0
    failure = ""
    failure_s = 0.0
    try:
        for _ in range(max_bytes // MESSAGE_BYTES + 1):
            started = time.monotonic()
            try:
                await jetstream.publish(subject, payload, timeout=PUBLISH_TIMEOUT_S)
            except (nats.errors.Error, TimeoutError) as exc:
                failure = f"{type(exc).__name__}: {exc}".strip(": ")
                failure_s = time.monotonic() - started
                break
            acknowledged += 1

        with httpx.Client(timeout=PUBLISH_TIMEOUT_S) as http:
            healthz = http.get(monitor_url.rstrip("/") + "/healthz")
        info = await jetstream.stream_info(stream)
        present = int(info.state.messages)
    finally:
        try:
            await jetstream.delete_stream(stream)
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("could not delete fill stream %s: %r", stream, exc)
        await client.close()

    result = FillResult(
        acknowledged, present, failure, failure_s, healthz.status_code, healthz.text
    )
    log.info("store fill: %s", result)
    return result
