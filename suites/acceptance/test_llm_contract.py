"""Day-1 sign-off: llm-server honours its contract over NATS and through nginx.

The checks find the gateway from the profile: the service with role
``llm-server``, the NATS subject ``load.nats.request_subject`` and the nginx
route ``load.gateway.route``.
"""

from __future__ import annotations

import httpx
import pytest

from pytest_stackcheck.load.gateway import gateway_token
from pytest_stackcheck.probes import llm_contract
from pytest_stackcheck.probes.routes import client_front


def _gateway(stack) -> str:
    doc = stack.profile.doc
    for name, service in doc.services.items():
        if service.role == "llm-server" or name == "llm-server":
            return name
    pytest.skip("the profile has no llm-server service (role = 'llm-server')")


def _report(evidence, result: llm_contract.ContractResult, what: str) -> None:
    for key, value in result.evidence.items():
        evidence.record(key, value)
    assert not result.problems, f"{what}:\n" + "\n".join(result.problems)


@pytest.mark.gate("day1", item="LLM gateway answers NATS requests per contract")
def test_llm_nats_contract(stack, evidence):
    name = _gateway(stack)
    doc = stack.profile.doc
    if not doc.services[name].nats:
        pytest.skip(f"service {name} does not use NATS (nats = false)")

    subject = doc.load.nats.request_subject
    result = llm_contract.check_nats(stack.nats_url, subject, doc.timeouts.check_s)

    _report(evidence, result, f"llm-server's request/reply on {subject}")


@pytest.mark.gate("day1", item="LLM gateway answers HTTP requests per contract")
def test_llm_http_contract(stack, evidence):
    name = _gateway(stack)
    doc = stack.profile.doc
    spec = doc.load.gateway
    front = client_front(stack)
    base = front.base_url + spec.route.rstrip("/")
    token = gateway_token(stack, spec)
    if not token:
        pytest.skip(
            f"no bearer token for {name}: set services.{name}.token_env and the "
            "variable it names"
        )

    headers = {"Host": front.host}
    # TLS is judged by the security gate; here only the contract counts.
    with httpx.Client(
        timeout=doc.timeouts.check_s, headers=headers, verify=False
    ) as client:
        polled = llm_contract.check_submit_poll(client, base, doc.timeouts.check_s)
        chat = llm_contract.check_chat(client, base, token, doc.timeouts.check_s)

    combined = llm_contract.ContractResult(
        polled.problems + chat.problems, {**polled.evidence, **chat.evidence}
    )
    _report(evidence, combined, f"llm-server's routes through nginx at {base}")
