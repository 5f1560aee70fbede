"""nginx in front of the gateway and NATS: streams, slow replies, bodies, idling."""

from __future__ import annotations

import pytest

from pytest_stackcheck.load.proxy import (
    check_body_limit,
    check_slow_answer,
    check_stream,
)
from pytest_stackcheck.load.websocket_idle import check_websocket_idle


@pytest.mark.usefixtures("load_exclusive")
@pytest.mark.gate("load", item="streamed answers arrive event by event")
def test_stream_not_buffered(stack, evidence):
    doc = stack.profile.doc
    result = check_stream(stack, doc.load.gateway, doc.load.proxy)

    for name, value in result.evidence.items():
        evidence.record(name, value)
    assert result.ok, result.message


@pytest.mark.usefixtures("load_exclusive")
@pytest.mark.gate("load", item="slow answers outlast the proxy read timeout")
def test_slow_answer_arrives(stack, evidence):
    doc = stack.profile.doc
    if not doc.load.proxy.slow_answer_s:
        pytest.skip("load.proxy.slow_answer_s is 0, so no slow answer is expected")
    result = check_slow_answer(stack, doc.load.gateway, doc.load.proxy)

    for name, value in result.evidence.items():
        evidence.record(name, value)
    assert result.ok, result.message


@pytest.mark.usefixtures("load_exclusive")
@pytest.mark.gate("load", item="large requests reach the gateway")
def test_body_limit(stack, evidence):
    doc = stack.profile.doc
    if not doc.load.proxy.max_body_bytes:
        pytest.skip("load.proxy.max_body_bytes is 0, so no body limit is declared")
    result = check_body_limit(stack, doc.load.gateway, doc.load.proxy)

    for name, value in result.evidence.items():
        evidence.record(name, value)
    assert result.ok, result.message


@pytest.mark.usefixtures("load_exclusive")
@pytest.mark.gate("load", item="idle websockets stay open")
def test_websocket_stays_open_idle(stack, evidence):
    doc = stack.profile.doc
    idle_s = doc.load.proxy.websocket_idle_s
    if not idle_s:
        pytest.skip("load.proxy.websocket_idle_s is 0, so no idle hold is expected")
    routes = [route for route in doc.nginx.routes if route.websocket]
    if not routes:
        pytest.skip("the profile lists no websocket route under nginx.routes")

    for route in routes:
        result = check_websocket_idle(stack, route, idle_s, doc.timeouts.check_s)
        for name, value in result.evidence.items():
            evidence.record(f"route {route.prefix} {name}", value)
        assert result.ok, result.message
