"""NATS probes: a pub/sub round trip, request/reply, and monitoring reads."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from pytest_stackcheck.errors import ProbeError


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """A message published and received back, with its latency."""

    subject: str
    latency_s: float
    payload_ok: bool


def pubsub_round_trip(url: str, timeout_s: float) -> RoundTrip:
    """Publish a unique message on a fresh subject and receive it back."""
    return asyncio.run(_pubsub(url, timeout_s))


async def _pubsub(url: str, timeout_s: float) -> RoundTrip:
    import nats

    subject = f"stackcheck.probe.{uuid.uuid4().hex}"
    payload = uuid.uuid4().bytes
    client = await nats.connect(
        url, connect_timeout=timeout_s, max_reconnect_attempts=0
    )
    try:
        subscription = await client.subscribe(subject)
        await client.flush(timeout=max(1, int(timeout_s)))
        started = time.monotonic()
        await client.publish(subject, payload)
        message = await subscription.next_msg(timeout=timeout_s)
        latency = time.monotonic() - started
        return RoundTrip(subject, latency, message.data == payload)
    finally:
        await client.close()


def request_reply(
    url: str, subject: str, body: dict[str, Any], timeout_s: float
) -> tuple[dict[str, Any], float]:
    """Send a JSON request on ``subject``; return the JSON reply and latency."""
    return asyncio.run(_request(url, subject, body, timeout_s))


async def _request(
    url: str, subject: str, body: dict[str, Any], timeout_s: float
) -> tuple[dict[str, Any], float]:
    import nats

    client = await nats.connect(
        url, connect_timeout=timeout_s, max_reconnect_attempts=0
    )
    try:
        started = time.monotonic()
        reply = await client.request(
            subject, json.dumps(body).encode(), timeout=timeout_s
        )
        latency = time.monotonic() - started
    finally:
        await client.close()
    try:
        document = json.loads(reply.data)
    except ValueError as exc:
        raise ProbeError(
            f"reply on {subject} is not JSON: {reply.data[:200]!r}"
        ) from exc
    if not isinstance(document, dict):
        raise ProbeError(f"reply on {subject} is not a JSON object: {document!r}")
    return document, latency


def monitor(client: httpx.Client, base_url: str, path: str) -> dict[str, Any]:
    """Read one JSON page of the NATS monitoring port, such as ``/varz``."""
    response = client.get(base_url.rstrip("/") + path)
    if response.status_code != 200:
        raise ProbeError(
            f"GET {base_url}{path} returned {response.status_code}: "
            f"{response.text[:200]!r}"
        )
    document = response.json()
    if not isinstance(document, dict):
        raise ProbeError(f"GET {base_url}{path} did not return a JSON object")
    return document
