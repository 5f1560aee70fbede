"""What the gateway route of nginx must pass through unchanged under real traffic.

Three checks, each against the gateway through nginx:

- server-sent events reach the client one by one as the upstream writes
  them, the first within ``first_event_s`` (``proxy_buffering on`` holds
  them back until the answer ends);
- an answer slower than nginx's default 60 s ``proxy_read_timeout`` still
  arrives as 200, with the upstream hit once;
- request bodies up to ``max_body_bytes`` reach the upstream whole, and one
  byte more is answered 413 (``client_max_body_size`` defaults to 1 MiB).

The checks ask for slow answers and spaced events with request headers
that only the reference gateway honours (``X-Stackcheck-Latency-Ms``,
``X-Stackcheck-Token-Interval-Ms``). Against a gateway that ignores them
the checks fail and say so, rather than pass on answers that were never
slow.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass, field

import httpx

from pytest_stackcheck.load.gateway import gateway_token
from pytest_stackcheck.load.spec import GatewayLoad, ProxyChecks
from pytest_stackcheck.probes.routes import client_front
from pytest_stackcheck.provision.base import LiveStack

LATENCY_HEADER = "X-Stackcheck-Latency-Ms"
TOKEN_INTERVAL_HEADER = "X-Stackcheck-Token-Interval-Ms"
REQUEST_ID_HEADER = "X-Stackcheck-Request-Id"
HITS_HEADER = "X-Stackcheck-Hits"
SERVICE_HEADER = "X-Stackcheck-Service"
MIB = 1024 * 1024
# Body sizes around nginx's 1 MiB default and a common 8 MiB setting; each
# is sent only when it lies within the declared limit.
PROBE_BODY_BYTES = (int(0.9 * MIB), int(1.1 * MIB), 8 * MIB)
# Seconds a check waits beyond the time the answer needs.
SLACK_S = 30.0


@dataclass(frozen=True, slots=True)
class ProxyCheck:
    """The outcome of one proxy check and what it measured."""

    ok: bool
    message: str
    evidence: dict[str, float | int | str] = field(default_factory=dict)


def _url(stack: LiveStack, gateway: GatewayLoad, path: str) -> str:
    return client_front(stack).base_url + gateway.route.rstrip("/") + path


def _headers(stack: LiveStack, gateway: GatewayLoad) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {gateway_token(stack, gateway)}",
        "Host": client_front(stack).host,
    }


def _chat(content: str, max_tokens: int, stream: bool) -> dict[str, object]:
    return {
        "model": "stackcheck-proxy",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "stream": stream,
    }


def check_stream(
    stack: LiveStack, gateway: GatewayLoad, proxy: ProxyChecks
) -> ProxyCheck:
    """Stream ``stream_events`` events ``stream_interval_s`` apart and time each."""
    events = proxy.stream_events
    words = " ".join(f"w{index}" for index in range(events))
    headers = _headers(stack, gateway)
    headers[TOKEN_INTERVAL_HEADER] = str(proxy.stream_interval_s * 1000)
    headers[LATENCY_HEADER] = "0"
    # max_tokens caps the reply at one word per event, and the prompt has
    # enough words to fill it.
    body = _chat(words, events, stream=True)
    limit_s = proxy.first_event_s + events * proxy.stream_interval_s + SLACK_S

    arrivals: list[float] = []
    started = time.monotonic()
    with (
        httpx.Client(timeout=limit_s, verify=False) as client,
        client.stream(
            "POST",
            _url(stack, gateway, "/v1/chat/completions"),
            json=body,
            headers=headers,
        ) as response,
    ):
        if response.status_code != 200:
            response.read()
            return ProxyCheck(
                False,
                f"streamed chat answered {response.status_code}, expected 200: "
                f"{response.text[:200]}",
            )
        # Clients decode a compressed stream, so events are counted after
        # decoding; the encoding is named if they arrived held back.
        encoding = response.headers.get("content-encoding", "")
        buffer = b""
        for chunk in response.iter_bytes():
            now = time.monotonic() - started
            buffer += chunk
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                if event.startswith(b"data: {"):
                    arrivals.append(now)
            if time.monotonic() - started > limit_s:
                break

    return _judge_stream(arrivals, proxy, encoding)


def _judge_stream(
    arrivals: list[float], proxy: ProxyChecks, encoding: str = ""
) -> ProxyCheck:
    events = proxy.stream_events
    # Events closer together than half the interval arrived in one read,
    # which means something between the upstream and the client held them.
    # Half the events must arrive on their own, which tolerates the jitter
    # of a real model's token times but not a buffered stream.
    required_bursts = math.ceil(min(len(arrivals), events) / 2)
    bursts = 0
    previous = -proxy.stream_interval_s
    for arrival in arrivals:
        if arrival - previous >= proxy.stream_interval_s / 2:
            bursts += 1
        previous = arrival
    first = arrivals[0] if arrivals else float("nan")
    evidence: dict[str, float | int | str] = {
        "stream events": len(arrivals),
        "stream bursts": bursts,
        "stream first event (s)": round(first, 3),
        "stream last event (s)": round(arrivals[-1], 3) if arrivals else "none",
        "stream content encoding": encoding or "none",
    }

    faults = []
    if len(arrivals) < events:
        faults.append(f"received {len(arrivals)} of {events} events")
    if bursts < required_bursts:
        faults.append(
            f"{len(arrivals)} events sent {proxy.stream_interval_s:g} s apart "
            f"arrived in {bursts} bursts (at least {required_bursts} expected), "
            "so the proxy buffered them; set "
            "proxy_buffering off on the gateway location (or have the gateway "
            "send X-Accel-Buffering: no)"
        )
    if not first <= proxy.first_event_s:
        faults.append(
            f"the first event arrived after {first:.2f} s, later than "
            f"load.proxy.first_event_s = {proxy.first_event_s:g} s"
        )
    if faults and encoding:
        faults.append(
            f"the stream came with Content-Encoding: {encoding}, and nginx "
            "compresses in blocks; remove text/event-stream from gzip_types "
            "(or set gzip off) on the gateway location"
        )
    if faults:
        return ProxyCheck(False, "server-sent events: " + "; ".join(faults), evidence)
    return ProxyCheck(
        True,
        f"{events} events arrived one by one, the first after {first:.2f} s",
        evidence,
    )


def check_slow_answer(
    stack: LiveStack, gateway: GatewayLoad, proxy: ProxyChecks
) -> ProxyCheck:
    """Ask for an answer that takes ``slow_answer_s`` and expect 200 after it."""
    request_id = uuid.uuid4().hex
    headers = _headers(stack, gateway)
    headers[LATENCY_HEADER] = str(proxy.slow_answer_s * 1000)
    headers[REQUEST_ID_HEADER] = request_id
    body = _chat("slow answer", 4, stream=False)

    url = _url(stack, gateway, "/v1/chat/completions")

    started = time.monotonic()
    with httpx.Client(
        timeout=2 * proxy.slow_answer_s + SLACK_S, verify=False
    ) as client:
        response = client.post(url, json=body, headers=headers)
        elapsed = time.monotonic() - started

        # A second, quick request with the same id learns how often the
        # upstream saw the first, even when nginx answered 504 to it.
        headers[LATENCY_HEADER] = "0"
        follow_up = client.post(url, json=body, headers=headers)
    hits = _hits_before(follow_up)
    evidence: dict[str, float | int | str] = {
        "slow answer status": response.status_code,
        "slow answer seconds": round(elapsed, 2),
        "slow answer upstream hits": hits if hits is not None else "not reported",
    }
    seen = f"; the upstream saw it {hits} times" if hits and hits > 1 else ""

    if response.status_code != 200:
        return ProxyCheck(
            False,
            f"an answer that takes {proxy.slow_answer_s:g} s "
            f"(load.proxy.slow_answer_s) got {response.status_code} after "
            f"{elapsed:.1f} s{seen}; raise proxy_read_timeout on the gateway "
            "location above the longest answer (nginx's default is 60 s)",
            evidence,
        )
    if elapsed < proxy.slow_answer_s:
        return ProxyCheck(
            False,
            f"the answer came after {elapsed:.1f} s, sooner than the "
            f"{proxy.slow_answer_s:g} s requested with {LATENCY_HEADER}, so "
            "the gateway ignores that header and nginx's read timeout was not "
            "tested; set load.proxy.slow_answer_s = 0 for such gateways",
            evidence,
        )
    if hits != 1:
        return ProxyCheck(
            False,
            f"the upstream saw the request {hits or 'an unknown number of'} "
            "times, expected once; a proxy that retries a timed-out POST runs "
            "the model again (check proxy_next_upstream)",
            evidence,
        )
    return ProxyCheck(
        True,
        f"a {proxy.slow_answer_s:g} s answer arrived as 200 after "
        f"{elapsed:.1f} s, upstream hit once",
        evidence,
    )


def _completion_id(response: httpx.Response) -> str | None:
    """Return the ``id`` of a chat completion, which is unique to each completion."""
    try:
        document = response.json()
    except ValueError:
        return None
    value = document.get("id") if isinstance(document, dict) else None
    return value if isinstance(value, str) and value else None


def _hits_before(follow_up: httpx.Response) -> int | None:
    """Return the hits of the first request, from the count after the follow-up."""
    raw = follow_up.headers.get(HITS_HEADER, "")
    if follow_up.status_code != 200 or not raw.isdigit():
        return None
    return int(raw) - 1


def sized_body(size: int) -> tuple[bytes, int]:
    """Return a chat request of exactly ``size`` bytes and its word count."""
    skeleton = json.dumps(_chat("", 1, stream=False)).encode()
    room = size - len(skeleton)
    if room < 1:
        raise ValueError(f"a body of {size} bytes is too small for a chat request")
    content = ("a " * (room // 2 + 1))[:room]
    body = json.dumps(_chat(content, 1, stream=False)).encode()
    return body, len(content.split())


def check_body_limit(
    stack: LiveStack, gateway: GatewayLoad, proxy: ProxyChecks
) -> ProxyCheck:
    """Send bodies up to ``max_body_bytes`` and one byte over; expect 200, then 413."""
    limit = proxy.max_body_bytes
    sizes = sorted({size for size in PROBE_BODY_BYTES if size <= limit} | {limit})
    headers = _headers(stack, gateway)
    headers["Content-Type"] = "application/json"
    faults: list[str] = []
    evidence: dict[str, float | int | str] = {}
    # Completion id -> size of the request that first got it.
    answered: dict[str, int] = {}

    with httpx.Client(timeout=60.0, verify=False) as client:
        url = _url(stack, gateway, "/v1/chat/completions")
        for size in sizes:
            body, words = sized_body(size)
            response = client.post(url, content=body, headers=headers)
            evidence[f"body {size} bytes status"] = response.status_code
            if response.status_code != 200:
                faults.append(
                    f"a {size}-byte body got {response.status_code}, expected 200 "
                    f"up to load.proxy.max_body_bytes = {limit}; set "
                    f"client_max_body_size to at least {limit} bytes on the "
                    "gateway location (nginx's default is 1m)"
                )
                continue
            completion = _completion_id(response)
            if completion in answered:
                faults.append(
                    f"the {size}-byte request got completion {completion}, the "
                    f"response to the earlier {answered[completion]}-byte request, "
                    "so a cache answered instead of the model; turn proxy_cache "
                    "off on the gateway location"
                )
                continue
            if completion is not None:
                answered[completion] = size
            if SERVICE_HEADER in response.headers:
                received = response.json().get("usage", {}).get("prompt_tokens")
                if received != words:
                    faults.append(
                        f"a {size}-byte body of {words} words reached the upstream "
                        f"as {received} words, so it was cut on the way"
                    )

        over, _ = sized_body(limit + 1)
        response = client.post(url, content=over, headers=headers)
        evidence[f"body {limit + 1} bytes status"] = response.status_code
        if response.status_code != 413:
            faults.append(
                f"a body one byte over the declared limit ({limit + 1} bytes) got "
                f"{response.status_code}, expected 413; nginx accepts larger "
                "bodies than load.proxy.max_body_bytes says, so correct one of them"
            )

    if faults:
        return ProxyCheck(False, "request bodies: " + "; ".join(faults), evidence)
    return ProxyCheck(
        True,
        f"bodies of {', '.join(map(str, sizes))} bytes reached the upstream and "
        f"{limit + 1} bytes got 413",
        evidence,
    )
