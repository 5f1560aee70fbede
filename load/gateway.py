"""Locust users for the LLM gateway: submit-and-poll, chat, and streamed chat.

Point ``--host`` at the gateway as clients reach it, through nginx::

    STACKCHECK_LOAD_TOKEN=... locust -f load/gateway.py --headless \\
        --host http://127.0.0.1:8080/internal/llm -u 4 -r 4 -t 10s

Settings come from the environment, so plain ``locust -f`` and the pytest
runner use the same file:

- ``STACKCHECK_LOAD_TOKEN``: bearer token of ``/v1/chat/completions``.
- ``STACKCHECK_LOAD_MAX_TOKENS``: max_tokens of each request (default 16).
- ``STACKCHECK_LOAD_USER_RPS``: requests per second each user aims for; 0,
  the default, sends the next request as soon as the last one finished.
- ``STACKCHECK_LOAD_POLL_TIMEOUT_S``: seconds a submitted request may stay
  pending before it counts as failed (default 30).
- ``STACKCHECK_LOAD_HOST_HEADER``: the Host header to send, so that nginx
  picks the server block of its public name even when ``--host`` is an
  address (default: the host of ``--host``).

Besides the HTTP requests, streamed chats report two derived entries of type
``derived``: ``stream: first token`` (time to the first content event) and
``stream: time per token`` (the time between content events), from which
tokens per second follow. Submit-and-poll reports ``submit: answer ready``,
the time from the submit to the poll that saw the answer.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from locust import FastHttpUser, constant, constant_throughput, task

DERIVED = "derived"
FIRST_TOKEN = "stream: first token"
TIME_PER_TOKEN = "stream: time per token"
ANSWER_READY = "submit: answer ready"
POLL_INTERVAL_S = 0.02


def _setting(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r} is not a number; set it to, say, 10") from exc
    if value < 0:
        raise ValueError(f"{name}={raw!r} is negative; set it to 0 or more")
    return value


TOKEN = os.environ.get("STACKCHECK_LOAD_TOKEN", "")
MAX_TOKENS = int(_setting("STACKCHECK_LOAD_MAX_TOKENS", 16))
USER_RPS = _setting("STACKCHECK_LOAD_USER_RPS", 0.0)
POLL_TIMEOUT_S = _setting("STACKCHECK_LOAD_POLL_TIMEOUT_S", 30.0)
HOST_HEADER = os.environ.get("STACKCHECK_LOAD_HOST_HEADER", "")
PROMPT = " ".join(f"word{index}" for index in range(2 * MAX_TOKENS))


def _chat_body(stream: bool) -> dict[str, object]:
    return {
        "model": "stackcheck-load",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": MAX_TOKENS,
        "stream": stream,
        "correlation_id": uuid.uuid4().hex,
    }


class _GatewayUser(FastHttpUser):
    abstract = True
    default_headers = {"Host": HOST_HEADER} if HOST_HEADER else None
    wait_time = constant_throughput(USER_RPS) if USER_RPS > 0 else constant(0)

    def report(self, name: str, elapsed_s: float, length: int = 0) -> None:
        """Report a derived measure in locust's statistics, in milliseconds."""
        self.environment.events.request.fire(
            request_type=DERIVED,
            name=name,
            response_time=elapsed_s * 1000.0,
            response_length=length,
            exception=None,
            context={},
        )


class SubmitPollUser(_GatewayUser):
    """Submit with ``POST /request``, then poll ``GET /response/ID`` until done."""

    @task
    def submit_and_poll(self) -> None:
        started = time.perf_counter()
        with self.client.post(
            "/request", json=_chat_body(stream=False), catch_response=True
        ) as response:
            if response.status_code != 202:
                response.failure(f"expected 202 Accepted, got {response.status_code}")
                return
            answer_id = response.json().get("id")
            if not isinstance(answer_id, str):
                response.failure("the submit response has no string 'id'")
                return

        deadline = started + POLL_TIMEOUT_S
        while time.perf_counter() < deadline:
            with self.client.get(
                f"/response/{answer_id}", name="/response/[id]", catch_response=True
            ) as poll:
                if poll.status_code != 200:
                    poll.failure(f"expected 200, got {poll.status_code}")
                    return
                if poll.json().get("status") == "done":
                    self.report(ANSWER_READY, time.perf_counter() - started)
                    return
            time.sleep(POLL_INTERVAL_S)

        self.environment.events.request.fire(
            request_type=DERIVED,
            name=ANSWER_READY,
            response_time=(time.perf_counter() - started) * 1000.0,
            response_length=0,
            exception=TimeoutError(f"still pending after {POLL_TIMEOUT_S} s"),
            context={},
        )


class ChatUser(_GatewayUser):
    """Call ``POST /v1/chat/completions`` and wait for the whole answer."""

    @task
    def chat(self) -> None:
        with self.client.post(
            "/v1/chat/completions",
            json=_chat_body(stream=False),
            headers={"Authorization": f"Bearer {TOKEN}"},
            name="/v1/chat/completions",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"expected 200, got {response.status_code}")
                return
            choices = response.json().get("choices")
            if not choices:
                response.failure("the completion has no choices")


class ChatStreamUser(_GatewayUser):
    """Call ``POST /v1/chat/completions`` with ``stream: true`` and read the events.

    The request's latency is the time until ``data: [DONE]``, not until the
    headers, because a streamed answer is only complete at its end.
    """

    @task
    def chat_stream(self) -> None:
        started = time.perf_counter()
        with self.client.post(
            "/v1/chat/completions",
            json=_chat_body(stream=True),
            headers={"Authorization": f"Bearer {TOKEN}"},
            name="/v1/chat/completions (stream)",
            stream=True,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"expected 200, got {response.status_code}")
                return
            arrivals, done, error = _read_events(_chunks(response))
            finished = time.perf_counter()
            response.request_meta["response_time"] = (finished - started) * 1000.0
            response.request_meta["response_length"] = len(arrivals)
            if error:
                response.failure(error)
                return
            if not done:
                response.failure("the stream ended without 'data: [DONE]'")
                return
            if not arrivals:
                response.failure("the stream carried no content event")
                return

        self.report(FIRST_TOKEN, arrivals[0] - started, 1)
        if len(arrivals) > 1:
            per_token = (arrivals[-1] - arrivals[0]) / (len(arrivals) - 1)
            self.report(TIME_PER_TOKEN, per_token, len(arrivals))


def _chunks(response: Any) -> Iterator[bytes]:
    """Yield body bytes as soon as they arrive.

    geventhttpclient's ``read(n)``, behind locust's ``iter_content``, waits
    until n bytes have arrived, which would time a streamed event only when
    later events had filled the buffer. So this reads what the socket has,
    through the response's parser, and falls back to ``iter_content`` when
    geventhttpclient's internals differ from version 2.6.
    """
    raw = getattr(response, "_response", None)
    if not all(hasattr(raw, name) for name in ("_body_buffer", "_sock", "feed")):
        yield from response.iter_content(4096, decode_content=False)
        return

    while True:
        if raw._body_buffer:
            chunk = bytes(raw._body_buffer)
            del raw._body_buffer[:]
            yield chunk
            continue
        if raw.message_complete or raw._sock is None:
            return
        data = raw._sock.recv(raw.block_size)
        if not data:
            return
        raw.feed(data)


def _read_events(chunks: Iterable[bytes]) -> tuple[list[float], bool, str]:
    """Read server-sent events and time each content event.

    Returns the arrival times, whether ``data: [DONE]`` came, and an error
    message that is empty when the stream was well formed.
    """
    arrivals: list[float] = []
    buffer = b""
    for chunk in chunks:
        now = time.perf_counter()
        buffer += chunk
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            data = event.removeprefix(b"data: ")
            if data == b"[DONE]":
                return arrivals, True, ""
            try:
                delta = json.loads(data)["choices"][0]["delta"]
            except (ValueError, KeyError, IndexError, TypeError):
                return arrivals, False, f"malformed event {event[:80]!r}"
            if delta.get("content"):
                arrivals.append(now)
    return arrivals, False, ""
