"""nginx in front of the LLM gateway: streams, slow answers and large bodies."""

from __future__ import annotations

import pytest

from pytest_stackcheck.load.proxy import (
    check_body_limit,
    check_slow_answer,
    check_stream,
)


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
