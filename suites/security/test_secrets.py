"""Security: no secret of the stack appears in its logs or its HTTP answers.

The secrets are the values of the environment variables the profile names in
its ``*_env`` keys. A database password in a startup log line or a token in
an error body is readable by everyone who reads logs or sends a request.
"""

from __future__ import annotations

import pytest

from pytest_stackcheck.probes import secrets as probe

FIX = (
    "stop the service from printing its settings or connection string; mask "
    "secrets before they are logged or returned, then rotate the leaked ones"
)


@pytest.fixture
def stack_secrets(stack, evidence) -> list[probe.Secret]:
    """The stack's secrets to search for; skips when there is none."""
    found, unsearched = probe.known_secrets(stack)
    evidence.record("secrets_searched", ", ".join(s.env_name for s in found) or "none")
    if unsearched:
        evidence.record("secrets_not_searched", ", ".join(unsearched))
    if not found:
        pytest.skip(
            "no secret to search for: the profile's *_env variables are "
            f"{', '.join(unsearched) or 'none'}"
        )
    return found


@pytest.mark.gate("security", item="no secret printed in logs")
def test_no_secret_in_logs(stack, stack_secrets, evidence):
    texts = probe.log_texts(stack)
    evidence.record("log_sources", len(texts))

    leaks = [
        leak
        for source, text in texts.items()
        for leak in probe.find_leaks(source, text, stack_secrets)
    ]

    assert texts, "no log of the stack could be read, so no log was searched"
    assert not leaks, (
        "secrets printed in logs:\n"
        + "\n".join(leak.describe() for leak in leaks)
        + f"\nFix: {FIX}"
    )


@pytest.mark.gate("security", item="no secret in HTTP answers")
def test_no_secret_in_http_answers(stack, stack_secrets, evidence):
    texts = probe.http_texts(stack)
    evidence.record("http_sources", ", ".join(texts))

    leaks = [
        leak
        for source, text in texts.items()
        for leak in probe.find_leaks(source, text, stack_secrets)
    ]

    assert texts, "no HTTP endpoint of the stack answered, so none was searched"
    assert not leaks, (
        "secrets sent in HTTP answers:\n"
        + "\n".join(leak.describe() for leak in leaks)
        + f"\nFix: {FIX}"
    )
