"""Malformed requests through nginx to the LLM gateway: 4xx, never 5xx or a hang.

Hypothesis generates the requests: bodies that are not JSON or not UTF-8,
JSON of the wrong shape and types, oversized fields, missing or wrong
bearer tokens, and unknown paths. A request that a correct gateway must
reject has to get a 4xx; an oversized but well-formed request may also
succeed. No request may get a 5xx or take longer than the profile's
``timeouts.check_s``. Examples are derived from a fixed seed, so each run
sends the same requests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx
import pytest

hypothesis = pytest.importorskip(
    "hypothesis", reason="install pytest-stackcheck[load] for the bad-input check"
)
st = hypothesis.strategies

from pytest_stackcheck.load.gateway import gateway_token  # noqa: E402
from pytest_stackcheck.probes.routes import client_front  # noqa: E402

CHAT = "/v1/chat/completions"
SUBMIT = "/request"
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


@dataclass(frozen=True)
class BadRequest:
    """One generated request and whether a correct gateway must reject it."""

    kind: str
    method: str
    path: str
    body: bytes
    authorization: str | None
    must_reject: bool


def _valid_chat(content: str = "hello", **fields: object) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": content}], **fields}


@st.composite
def bad_requests(draw: st.DrawFn) -> BadRequest:
    kind = draw(
        st.sampled_from(
            [
                "invalid JSON",
                "invalid UTF-8",
                "wrong types",
                "huge field",
                "missing token",
                "wrong token",
                "unknown path",
            ]
        )
    )
    path = draw(st.sampled_from([CHAT, SUBMIT]))
    token = "VALID"
    body = json.dumps(_valid_chat()).encode()
    must_reject = True

    if kind == "invalid JSON":
        raw = draw(st.binary(max_size=200))
        body = raw if not _parses(raw) else raw + b"{"
    elif kind == "invalid UTF-8":
        text = json.dumps(_valid_chat(draw(st.text(max_size=50)))).encode()
        cut = draw(st.integers(0, len(text)))
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"]))
        body = text[:cut] + bad + text[cut:]
    elif kind == "wrong types":
        field = draw(st.sampled_from(["messages", "max_tokens", "stream", "model"]))
        value = draw(JSON_VALUES)
        document = _valid_chat(**{field: value})
        hypothesis.assume(not _valid_value(field, value))
        body = json.dumps(document).encode()
    elif kind == "huge field":
        size = draw(st.sampled_from([10_000, 100_000, 1_000_000]))
        field = draw(st.sampled_from(["content", "model", "max_tokens"]))
        if field == "content":
            body = json.dumps(_valid_chat("x" * size)).encode()
            must_reject = False
        elif field == "model":
            body = json.dumps(_valid_chat(model="m" * size)).encode()
        else:
            body = json.dumps(_valid_chat(max_tokens=10 ** size_digits(size))).encode()
    elif kind == "missing token":
        path, token = CHAT, ""
    elif kind == "wrong token":
        path = CHAT
        token = draw(st.text("abcdefXYZ0123456789-_", min_size=1, max_size=64))
    else:
        segment = draw(st.from_regex(r"[A-Za-z0-9._~-]{1,30}", fullmatch=True))
        path = draw(st.sampled_from(["/", "/v1/", "/response/x/"])) + segment
        hypothesis.assume(path not in (CHAT, SUBMIT) and segment not in (".", ".."))

    method = "GET" if kind == "unknown path" and draw(st.booleans()) else "POST"
    return BadRequest(kind, method, path, body, token or None, must_reject)


def size_digits(size: int) -> int:
    """Return a digit count for a huge integer, kept under Python's 4300 limit."""
    return min(size, 4000)


def _parses(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True


def _valid_value(field: str, value: object) -> bool:
    if field == "stream":
        return value is None or isinstance(value, bool)
    if field == "max_tokens":
        return value is None or (
            isinstance(value, int) and not isinstance(value, bool) and value >= 1
        )
    if field == "model":
        return value is None or (isinstance(value, str) and 0 < len(value) <= 256)
    return False


@pytest.mark.gate("load", item="malformed requests get 4xx, never 5xx")
@pytest.mark.gate("security", item="malformed requests get 4xx, never 5xx")
def test_bad_input_rejected(stack):
    doc = stack.profile.doc
    gateway = doc.load.gateway
    front = client_front(stack)
    base = front.base_url + gateway.route.rstrip("/")
    token = gateway_token(stack, gateway)
    examples = doc.load.proxy.bad_input_examples
    if not examples:
        pytest.skip("load.proxy.bad_input_examples is 0")

    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(request=bad_requests())
    def check(request: BadRequest) -> None:
        headers = {"Content-Type": "application/json", "Host": front.host}
        if request.authorization is not None:
            value = token if request.authorization == "VALID" else request.authorization
            headers["Authorization"] = f"Bearer {value}"
        try:
            response = client.request(
                request.method,
                base + request.path,
                content=request.body,
                headers=headers,
            )
        except httpx.TimeoutException as exc:
            raise AssertionError(
                f"{request.kind}: {request.method} {request.path} got no answer "
                f"within {doc.timeouts.check_s} s ({exc!r})"
            ) from exc
        status = response.status_code
        shown = f"{request.kind}: {request.method} {request.path} got {status}"
        assert status < 500, f"{shown}, a server error: {response.text[:200]}"
        if request.must_reject:
            assert 400 <= status < 500, f"{shown}, expected a 4xx rejection"

    with httpx.Client(timeout=doc.timeouts.check_s, verify=False) as client:
        check()
