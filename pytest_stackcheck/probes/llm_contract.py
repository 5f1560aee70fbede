"""Check that llm-server honours its contract over NATS and through nginx.

Over NATS, a request on the gateway's subject (JSON ``messages``, ``model``,
``max_tokens``, ``correlation_id``) gets a reply with ``text``, ``model``,
``tokens_used`` and the same ``correlation_id``, and an invalid request gets
``error`` and ``error_code`` instead of silence. Several requests are sent at
once, so a gateway that mixes up replies under concurrency is caught.

Through nginx's gateway route, ``POST /request`` returns an ``id`` that
``GET /response/ID`` resolves to a finished answer, the OpenAI-compatible
``POST /v1/chat/completions`` rejects a request without a bearer token and
returns a completion to one with it, and its streamed form sends
``chat.completion.chunk`` events ending with ``data: [DONE]``.

Every function returns the problems it found, one line each, and the
evidence it measured; an empty problem list means the contract holds.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

CONCURRENT_REQUESTS = 8
POLL_INTERVAL_S = 0.05
MAX_TOKENS = 8
AUTH_REJECTED = (401, 403)


@dataclass
class ContractResult:
    """The problems found and the evidence measured by one contract check."""

    problems: list[str] = field(default_factory=list)
    evidence: dict[str, float | int | str] = field(default_factory=dict)


def _chat(correlation_id: str, content: str) -> dict[str, Any]:
    return {
        "model": "stackcheck-contract",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": MAX_TOKENS,
        "correlation_id": correlation_id,
    }


def reply_problems(reply: Any, correlation_id: str) -> list[str]:
    """Return how one NATS reply breaks the contract for ``correlation_id``."""
    if not isinstance(reply, dict):
        return [f"reply is not a JSON object: {str(reply)[:200]!r}"]
    if "error" in reply:
        return [
            f"valid request {correlation_id} got an error reply: "
            f"{reply.get('error')!r} ({reply.get('error_code')!r})"
        ]

    problems: list[str] = []
    text = reply.get("text")
    if not isinstance(text, str) or not text:
        problems.append(f"reply to {correlation_id} has no text: {text!r}")
    if not isinstance(reply.get("model"), str):
        problems.append(f"reply to {correlation_id} has no model string")
    tokens = reply.get("tokens_used")
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1:
        problems.append(f"reply to {correlation_id} has tokens_used {tokens!r}")
    if reply.get("correlation_id") != correlation_id:
        problems.append(
            f"request {correlation_id} got the reply of "
            f"{reply.get('correlation_id')!r}: replies are mixed up"
        )
    return problems


def check_nats(url: str, subject: str, timeout_s: float) -> ContractResult:
    """Send concurrent valid requests and one invalid request on ``subject``."""
    return asyncio.run(_check_nats(url, subject, timeout_s))


async def _check_nats(url: str, subject: str, timeout_s: float) -> ContractResult:
    import nats
    from nats.errors import NoRespondersError
    from nats.errors import TimeoutError as NatsTimeout

    result = ContractResult()
    client = await nats.connect(
        url, connect_timeout=timeout_s, max_reconnect_attempts=0
    )

    async def ask(body: dict[str, Any]) -> Any:
        reply = await client.request(
            subject, json.dumps(body).encode(), timeout=timeout_s
        )
        return json.loads(reply.data)

    try:
        prefix = uuid.uuid4().hex[:8]
        ids = [f"stackcheck-{prefix}-{index}" for index in range(CONCURRENT_REQUESTS)]
        started = time.monotonic()
        replies = await asyncio.gather(
            *(ask(_chat(cid, f"contract check {cid}")) for cid in ids),
            return_exceptions=True,
        )
        result.evidence["concurrent_requests"] = len(ids)
        result.evidence["concurrent_s"] = round(time.monotonic() - started, 3)
        for cid, reply in zip(ids, replies, strict=True):
            if isinstance(reply, NoRespondersError):
                result.problems.append(f"no responder on {subject} for {cid}")
            elif isinstance(reply, (NatsTimeout, TimeoutError)):
                result.problems.append(f"no reply to {cid} within {timeout_s} s")
            elif isinstance(reply, BaseException):
                result.problems.append(f"request {cid} failed: {reply!r}")
            else:
                result.problems += reply_problems(reply, cid)

        try:
            invalid = await ask({"correlation_id": f"stackcheck-{prefix}-invalid"})
        except (TimeoutError, NoRespondersError, NatsTimeout) as exc:
            result.problems.append(
                f"a request without messages got no error reply ({exc!r}); "
                "the contract answers it with error and error_code"
            )
        else:
            if not (
                isinstance(invalid, dict)
                and isinstance(invalid.get("error"), str)
                and isinstance(invalid.get("error_code"), str)
            ):
                result.problems.append(
                    "a request without messages got "
                    f"{str(invalid)[:200]!r}, not error and error_code"
                )
    finally:
        await client.close()
    return result


def check_submit_poll(
    client: httpx.Client, base: str, timeout_s: float
) -> ContractResult:
    """Submit with ``POST /request`` and poll ``GET /response/ID`` until done."""
    result = ContractResult()
    started = time.monotonic()
    submitted = client.post(base + "/request", json=_chat("submit", "contract"))
    if submitted.status_code not in (200, 201, 202):
        result.problems.append(
            f"POST {base}/request got {submitted.status_code}: {submitted.text[:200]!r}"
        )
        return result
    answer_id = _json(submitted).get("id")
    if not isinstance(answer_id, str) or not answer_id:
        result.problems.append(
            f"POST {base}/request returned no id: {submitted.text!r}"
        )
        return result

    deadline = started + timeout_s
    answer: dict[str, Any] = {}
    while time.monotonic() < deadline:
        polled = client.get(f"{base}/response/{answer_id}")
        answer = _json(polled)
        if polled.status_code != 200:
            result.problems.append(
                f"GET {base}/response/{answer_id} got {polled.status_code}: "
                f"{polled.text[:200]!r}"
            )
            return result
        if answer.get("status") == "done":
            break
        time.sleep(POLL_INTERVAL_S)

    result.evidence["submit_to_done_s"] = round(time.monotonic() - started, 3)
    if answer.get("status") != "done":
        result.problems.append(
            f"answer {answer_id} was not done within {timeout_s} s: {answer!r}"
        )
    elif not isinstance(answer.get("text"), str) or not answer["text"]:
        result.problems.append(f"answer {answer_id} is done without text: {answer!r}")
    return result


def check_chat(
    client: httpx.Client, base: str, token: str, timeout_s: float
) -> ContractResult:
    """Check bearer auth, a whole chat completion and a streamed one."""
    result = ContractResult()
    url = base + "/v1/chat/completions"
    body = _chat("chat", "contract")

    anonymous = client.post(url, json=body)
    result.evidence["no_token_status"] = anonymous.status_code
    if anonymous.status_code not in AUTH_REJECTED:
        result.problems.append(
            f"POST {url} without a bearer token got {anonymous.status_code}, "
            "not 401: the gateway is open to anyone who can reach it"
        )

    headers = {"Authorization": f"Bearer {token}"}
    whole = client.post(url, json=body, headers=headers)
    content = _chat_content(_json(whole))
    if whole.status_code != 200 or not content:
        result.problems.append(
            f"POST {url} with the token got {whole.status_code} without "
            f"choices[0].message.content: {whole.text[:200]!r}"
        )

    result.problems += _stream_problems(client, url, {**body, "stream": True}, headers)
    return result


def _stream_problems(
    client: httpx.Client, url: str, body: dict[str, Any], headers: dict[str, str]
) -> list[str]:
    chunks = 0
    done = False
    with client.stream("POST", url, json=body, headers=headers) as response:
        kind = response.headers.get("content-type", "")
        if response.status_code != 200 or not kind.startswith("text/event-stream"):
            return [
                f"streamed POST {url} got {response.status_code} with content "
                f"type {kind!r}, not 200 text/event-stream"
            ]
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line.removeprefix("data:").strip()
            if data == "[DONE]":
                done = True
                break
            try:
                event = json.loads(data)
            except ValueError:
                return [f"streamed POST {url} sent an event that is not JSON: {data!r}"]
            if event.get("object") == "chat.completion.chunk":
                chunks += 1

    problems: list[str] = []
    if not chunks:
        problems.append(f"streamed POST {url} sent no chat.completion.chunk event")
    if not done:
        problems.append(
            f"streamed POST {url} ended without data: [DONE] after {chunks} "
            "chunks, so clients cannot tell a finished answer from a cut one"
        )
    return problems


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        document = response.json()
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _chat_content(document: dict[str, Any]) -> str:
    choices = document.get("choices")
    if not isinstance(choices, list) or not choices:
        return ""
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else ""
