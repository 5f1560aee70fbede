"""llm-server, the reference LLM gateway, against a real nats-server.

Covers the health contract, submit-and-poll, the OpenAI-compatible chat route
with bearer auth and SSE, NATS request/reply on llm.request, and malformed
input.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from reference_harness import (
    API_TOKEN,
    LOG_FORMAT_PREFIX,
    REFSERVICE,
    NatsServer,
    RunningService,
    error_lines,
    free_port,
    raw_get,
    start_nats_server,
    start_refservice,
    stop_process,
    wait_healthy,
    wait_until,
)


@pytest.fixture(scope="module")
def llm_server(
    nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningService]:
    log_path = tmp_path_factory.mktemp("llm") / "llm-server.log"
    args = ["--nats-url", nats_server.url, "--token-interval-ms", "100"]
    service = start_refservice(
        "llm-server", log_path, args, {"STACKCHECK_REF_TOKEN": API_TOKEN}
    )
    try:
        wait_healthy(service)
        yield service
    finally:
        stop_process(service.process)


@pytest.fixture(scope="module")
def llm_without_nats(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningService]:
    """An llm-server whose NATS never comes up, with 300 ms latency, and whose
    health route lies with status 200."""
    log_path = tmp_path_factory.mktemp("llm-no-nats") / "llm-server.log"
    args = ["--nats-url", f"nats://127.0.0.1:{free_port()}"]
    args += ["--latency-ms", "300", "--degraded-status", "200"]
    service = start_refservice("llm-server", log_path, args)
    try:
        yield service
    finally:
        stop_process(service.process)


# --- all roles: health, headers, raw paths -------------------------------------


def test_health_ok_with_nats(llm_server: RunningService) -> None:
    response = llm_server.health()
    body = response.json()

    assert response.status_code == 200
    assert response.headers["X-Stackcheck-Service"] == "llm-server"
    assert response.headers["X-Stackcheck-Received-Path"] == "/health"
    assert body["status"] == "ok"
    assert body["service"] == "llm-server"
    assert isinstance(body["version"], str)
    assert isinstance(body["uptime_s"], float)
    assert body["services"] == {"nats": "ok"}


def test_index_names_service(llm_server: RunningService) -> None:
    response = httpx.get(llm_server.base_url + "/", timeout=5)

    assert response.status_code == 200
    assert response.json()["service"] == "llm-server"
    assert response.headers["X-Stackcheck-Received-Path"] == "/"


@pytest.mark.parametrize(
    "target",
    ["//health", "/x?y=1", "/internal/llm/health", "/health/", "/a/../health"],
)
def test_raw_path_reported_verbatim(llm_server: RunningService, target: str) -> None:
    status, headers, body = raw_get(llm_server.port, target)

    assert status == 404
    assert headers["X-Stackcheck-Received-Path"] == target
    assert headers["X-Stackcheck-Service"] == "llm-server"
    assert json.loads(body) == {"error": "not found", "path": target}


def test_health_query_string_kept(llm_server: RunningService) -> None:
    status, headers, _ = raw_get(llm_server.port, "/health?probe=1")

    assert status == 200
    assert headers["X-Stackcheck-Received-Path"] == "/health?probe=1"


def test_wrong_method_is_405(llm_server: RunningService) -> None:
    response = httpx.post(llm_server.base_url + "/health", timeout=5)

    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]
    assert response.headers["X-Stackcheck-Service"] == "llm-server"
    assert response.json() == {"error": "method not allowed"}


def test_health_degraded_without_nats(llm_without_nats: RunningService) -> None:
    response = llm_without_nats.health()
    body = response.json()

    # --degraded-status 200 makes the service hide the outage in the status code.
    assert response.status_code == 200
    assert body["status"] == "degraded"
    assert body["services"] == {"nats": "error"}


def test_nats_retries_logged_as_warnings(llm_without_nats: RunningService) -> None:
    wait_until(
        lambda: "unavailable (attempt 1)" in llm_without_nats.log(),
        5,
        "the first NATS retry warning",
    )
    log = llm_without_nats.log()

    assert "listening on 127.0.0.1:" in log
    assert "WARNING refservice.llm-server NATS at nats://127.0.0.1:" in log
    assert error_lines(log) == []


def test_degraded_status_default_503(tmp_path: Path) -> None:
    args = ["--nats-url", f"nats://127.0.0.1:{free_port()}"]
    service = start_refservice("llm-server", tmp_path / "llm.log", args)
    try:
        response = service.health()
    finally:
        stop_process(service.process)

    assert response.status_code == 503
    assert response.json()["status"] == "degraded"


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_signal_exits_zero(tmp_path: Path, signal_number: signal.Signals) -> None:
    service = start_refservice("llm-server", tmp_path / "llm.log", [])
    try:
        service.process.send_signal(signal_number)
        return_code = service.process.wait(timeout=10)
    finally:
        stop_process(service.process)
    log = service.log()

    assert return_code == 0
    assert re.search(
        LOG_FORMAT_PREFIX + r"INFO refservice.llm-server listening on "
        rf"127\.0\.0\.1:{service.port}$",
        log,
        re.MULTILINE,
    )
    assert f"received {signal_number.name}, shutting down" in log
    assert "INFO refservice.llm-server stopped" in log


def test_database_role_requires_dsn() -> None:
    result = subprocess.run(
        [sys.executable, str(REFSERVICE), "--role", "genesis", "--port", "0"],
        capture_output=True,
        timeout=30,
        env={"PATH": os.environ.get("PATH", "")},
    )

    assert result.returncode == 2
    assert b"STACKCHECK_REF_DSN" in result.stderr


# --- llm-server: submit and poll -------------------------------------------------


def poll_answer(base_url: str, answer_id: str, timeout_s: float = 5) -> dict[str, Any]:
    answer: dict[str, Any] = {}

    def finished() -> bool:
        nonlocal answer
        answer = httpx.get(f"{base_url}/response/{answer_id}", timeout=5).json()
        return bool(answer["status"] == "done")

    wait_until(finished, timeout_s, f"answer {answer_id}")
    return answer


def test_submit_and_poll(llm_server: RunningService) -> None:
    request_body = {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "one two three four five"},
            {"role": "assistant", "content": "ignored"},
            {"role": "user", "content": "alpha beta gamma"},
        ],
        "model": "ref-test",
        "max_tokens": 3,
        "correlation_id": "corr-1",
    }
    submitted = httpx.post(llm_server.base_url + "/request", json=request_body)
    answer_id = submitted.json()["id"]
    answer = poll_answer(llm_server.base_url, answer_id)

    assert submitted.status_code == 202
    assert submitted.json()["status"] == "pending"
    assert answer == {
        "id": answer_id,
        "status": "done",
        "text": "echo: alpha beta",
        "model": "ref-test",
        "tokens_used": 3,
        "correlation_id": "corr-1",
    }


def test_submit_defaults(llm_server: RunningService) -> None:
    content = " ".join(f"w{index}" for index in range(40))
    request_body = {"messages": [{"role": "user", "content": content}]}
    submitted = httpx.post(llm_server.base_url + "/request", json=request_body)
    answer = poll_answer(llm_server.base_url, submitted.json()["id"])

    assert answer["model"] == "ref-echo-1"
    assert answer["tokens_used"] == 16
    assert answer["text"].split() == ["echo:", *content.split()[:15]]
    assert answer["correlation_id"] is None


def test_poll_pending_until_latency(llm_without_nats: RunningService) -> None:
    request_body = {"messages": [{"role": "user", "content": "slow"}]}
    started = time.monotonic()
    submitted = httpx.post(llm_without_nats.base_url + "/request", json=request_body)
    answer_id = submitted.json()["id"]
    first_poll = httpx.get(f"{llm_without_nats.base_url}/response/{answer_id}")
    answer = poll_answer(llm_without_nats.base_url, answer_id)

    assert first_poll.json() == {"id": answer_id, "status": "pending"}
    assert answer["text"] == "echo: slow"
    assert time.monotonic() - started >= 0.3


def test_unknown_answer_is_404(llm_server: RunningService) -> None:
    response = httpx.get(llm_server.base_url + "/response/no-such-id", timeout=5)

    assert response.status_code == 404
    assert response.json()["error"] == "not found"


# --- llm-server: OpenAI chat completions -------------------------------------------

CHAT_BODY = {
    "model": "gpt-test",
    "messages": [{"role": "user", "content": "red green blue"}],
    "max_tokens": 16,
}


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {API_TOKEN}", "Bearer"],
)
def test_chat_rejects_bad_token(
    llm_server: RunningService, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = httpx.post(
        llm_server.base_url + "/v1/chat/completions", json=CHAT_BODY, headers=headers
    )
    error = response.json()["error"]

    assert response.status_code == 401
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_api_key"
    assert isinstance(error["message"], str)


def test_chat_completion(llm_server: RunningService) -> None:
    response = httpx.post(
        llm_server.base_url + "/v1/chat/completions",
        json=CHAT_BODY,
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    )
    body = response.json()

    assert response.status_code == 200
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert isinstance(body["created"], int)
    assert body["model"] == "gpt-test"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": "echo: red green blue",
    }
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 4,
        "total_tokens": 7,
    }


def test_chat_stream_events_spaced(llm_server: RunningService) -> None:
    """With --token-interval-ms 100 each word arrives about 100 ms after the last."""
    arrivals: list[float] = []
    events: list[str] = []
    with httpx.stream(
        "POST",
        llm_server.base_url + "/v1/chat/completions",
        json={**CHAT_BODY, "stream": True},
        headers={"Authorization": f"Bearer {API_TOKEN}"},
        timeout=10,
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic())
                events.append(line.removeprefix("data: "))
    chunks = [json.loads(event) for event in events[:-1]]
    # [DONE] follows the last word at once, so only gaps between words count.
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals[:-1])]

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert "X-Accel-Buffering" not in response.headers
    assert len(events) == 5
    assert events[-1] == "[DONE]"
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == (
        "echo: red green blue"
    )
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert min(gaps) >= 0.05, gaps


# --- llm-server: NATS request/reply -------------------------------------------------


def nats_request(url: str, payload: bytes, subject: str = "llm.request") -> Any:
    async def send() -> Any:
        client = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
        try:
            reply = await client.request(subject, payload, timeout=5)
        finally:
            await client.close()
        return json.loads(reply.data)

    return asyncio.run(send())


def test_nats_request_reply(
    llm_server: RunningService, nats_server: NatsServer
) -> None:
    request_body = {
        "messages": [{"role": "user", "content": "ping over nats"}],
        "model": "nats-model",
        "max_tokens": 2,
        "correlation_id": "nats-1",
    }
    reply = nats_request(nats_server.url, json.dumps(request_body).encode())

    assert reply == {
        "text": "echo: ping",
        "model": "nats-model",
        "tokens_used": 2,
        "correlation_id": "nats-1",
    }


def test_nats_subscription_in_queue_group(
    llm_server: RunningService, nats_server: NatsServer
) -> None:
    url = f"http://127.0.0.1:{nats_server.monitor_port}/subsz?subs=1"
    subscriptions = httpx.get(url, timeout=5).json()["subscriptions_list"]
    matching = [item for item in subscriptions if item["subject"] == "llm.request"]

    assert len(matching) == 1
    assert matching[0]["qgroup"] == "llm-server"


@pytest.mark.parametrize(
    ("payload", "error_code", "correlation_id"),
    [
        (b"{not json", "invalid_json", None),
        (b"\xff\xfe", "invalid_json", None),
        (b'{"messages": [], "correlation_id": "bad-1"}', "invalid_request", "bad-1"),
        (b'{"messages": [{"role": "user", "content": 5}]}', "invalid_request", None),
        (b'["not", "an", "object"]', "invalid_request", None),
    ],
)
def test_nats_error_replies(
    llm_server: RunningService,
    nats_server: NatsServer,
    payload: bytes,
    error_code: str,
    correlation_id: str | None,
) -> None:
    reply = nats_request(nats_server.url, payload)

    assert reply["error_code"] == error_code
    assert isinstance(reply["error"], str)
    assert reply.get("correlation_id") == correlation_id


def test_nats_late_start_and_outage(tmp_path: Path) -> None:
    """llm-server starts before NATS, then survives a NATS restart."""
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    service = start_refservice("llm-server", tmp_path / "llm.log", ["--nats-url", url])
    nats_process: subprocess.Popen[bytes] | None = None
    try:
        wait_until(
            lambda: "unavailable (attempt 1)" in service.log(), 5, "a retry warning"
        )
        nats_process = start_nats_server(tmp_path, port)
        wait_healthy(service)
        log_before_outage = service.log()

        stop_process(nats_process)
        wait_until(
            lambda: service.health().json()["services"]["nats"] == "error",
            5,
            "health to report the NATS outage",
        )
        nats_process = start_nats_server(tmp_path, port)
        wait_healthy(service)
        reply = nats_request(
            url, b'{"messages": [{"role": "user", "content": "back again"}]}'
        )
    finally:
        stop_process(service.process)
        if nats_process is not None:
            stop_process(nats_process)
    log = service.log()

    assert error_lines(log_before_outage) == []
    assert len(error_lines(log)) == 1
    assert "lost connection to NATS" in log
    assert "reconnected to NATS" in log
    assert reply["text"] == "echo: back again"


# --- malformed input never gets a 5xx ---------------------------------------------

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
USER_MESSAGES = '"messages": [{"role": "user", "content": "x"}]'


@pytest.mark.parametrize(
    ("path", "body", "headers", "expected_status"),
    [
        ("/request", b"{", {}, 400),
        ("/request", b"", {}, 400),
        ("/request", b'{"messages": "\xff"}', {}, 400),
        ("/request", b'{"messages": NaN}', {}, 400),
        ("/request", b'{"max_tokens": 1e400}', {}, 400),
        ("/request", b'{"x": "\\ud800"}', {}, 400),
        ("/request", b'{"x": ' + b"9" * 5000 + b"}", {}, 400),
        ("/request", b"[" * 100_000 + b"]" * 100_000, {}, 400),
        ("/request", b'{"a":' * 150 + b"1" + b"}" * 150, {}, 400),
        ("/request", b"[]", {}, 422),
        ("/request", b'{"messages": "hi"}', {}, 422),
        ("/request", b'{"messages": [{"role": "system", "content": "x"}]}', {}, 422),
        ("/request", b'{"messages": [{"role": "user"}]}', {}, 422),
        ("/request", b'{"messages": [7]}', {}, 422),
        ("/request", ("{" + USER_MESSAGES + ', "max_tokens": "5"}').encode(), {}, 422),
        ("/request", ("{" + USER_MESSAGES + ', "max_tokens": true}').encode(), {}, 422),
        ("/request", ("{" + USER_MESSAGES + ', "max_tokens": 0}').encode(), {}, 422),
        ("/request", ("{" + USER_MESSAGES + ', "model": ""}').encode(), {}, 422),
        ("/request", ("{" + USER_MESSAGES + ', "model": 1}').encode(), {}, 422),
        (
            "/request",
            ("{" + USER_MESSAGES + ', "correlation_id": []}').encode(),
            {},
            422,
        ),
        ("/v1/chat/completions", b"{", AUTH, 400),
        ("/v1/chat/completions", b'{"messages": {}}', AUTH, 400),
        (
            "/v1/chat/completions",
            ("{" + USER_MESSAGES + ', "stream": "yes"}').encode(),
            AUTH,
            400,
        ),
    ],
)
def test_malformed_input_is_4xx(
    llm_server: RunningService,
    path: str,
    body: bytes,
    headers: dict[str, str],
    expected_status: int,
) -> None:
    response = httpx.post(
        llm_server.base_url + path, content=body, headers=headers, timeout=10
    )

    assert response.status_code == expected_status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert "error" in response.json()


def test_body_over_64_mib_is_413(llm_server: RunningService) -> None:
    body = b'{"x": "' + b"a" * (64 * 1024 * 1024) + b'"}'
    response = httpx.post(llm_server.base_url + "/request", content=body, timeout=30)

    assert response.status_code == 413
    assert response.headers["X-Stackcheck-Service"] == "llm-server"


def test_body_under_limit_accepted(llm_server: RunningService) -> None:
    content = "big " * (2 * 1024 * 1024)
    request_body = {"messages": [{"role": "user", "content": content}]}
    response = httpx.post(
        llm_server.base_url + "/request", json=request_body, timeout=30
    )

    assert response.status_code == 202


def test_unparseable_request_logged_as_warning(llm_server: RunningService) -> None:
    with socket.create_connection(("127.0.0.1", llm_server.port), timeout=5) as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization Bearer leak-8e1f\r\n\r\n"
        )
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]
    wait_until(
        lambda: "rejected malformed HTTP request (400)" in llm_server.log(),
        5,
        "the malformed-request warning",
    )

    assert status_line.endswith(b" 400 Bad Request")
    assert "leak-8e1f" not in llm_server.log()


def test_bad_inputs_leave_no_errors(llm_server: RunningService) -> None:
    # Run after the malformed-input tests (pytest keeps file order).
    assert error_lines(llm_server.log()) == []
    assert API_TOKEN not in llm_server.log()
