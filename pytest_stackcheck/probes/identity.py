"""Which service served a route: compare nginx's response with the service's own.

A wrong upstream, or nginx itself with a static ``return 200``, can return
healthy-looking JSON on a route. The reference services name themselves
in ``X-Stackcheck-Service``; a real service usually does not, so the route
check also asks the service directly, twice, and keeps what did not change
between the two responses: the status and every JSON field with the same
value (an uptime or a timestamp drops out). The response through nginx
must agree with all of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

SERVICE_HEADER = "x-stackcheck-service"
# Characters of a body read for the comparison; health bodies are far smaller.
MAX_BODY_CHARS = 65536
# Differences named in one failure message; the rest are counted.
SHOWN_DIFFERENCES = 3
# A service bound to a wildcard address is asked on loopback, so that no
# request goes to the wildcard address itself.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """A service's direct response, reduced to the parts that stay the same."""

    url: str
    status: int
    fields: dict[str, Any] = field(default_factory=dict)
    service: str | None = None


def flatten(document: Any, prefix: str = "") -> dict[str, Any]:
    """Return the leaves of a JSON document by dotted path."""
    if isinstance(document, dict):
        leaves: dict[str, Any] = {}
        for key, value in document.items():
            leaves.update(flatten(value, f"{prefix}{key}."))
        return leaves
    if isinstance(document, list):
        return {prefix.rstrip("."): json.dumps(document, sort_keys=True)}
    return {prefix.rstrip("."): document}


def json_leaves(body: str) -> dict[str, Any] | None:
    """Return the leaves of ``body`` if it is a JSON object, else None."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return flatten(document) if isinstance(document, dict) else None


def direct_url(url: str) -> str:
    """Return ``url`` with a wildcard host replaced by loopback."""
    parts = urlsplit(url)
    local = _WILDCARDS.get(parts.hostname or "")
    if local is None:
        return url
    netloc = f"{local}:{parts.port}" if parts.port else local
    return urlunsplit(parts._replace(netloc=netloc))


def read_fingerprint(url: str, timeout_s: float) -> Fingerprint:
    """Request ``url`` twice and keep the status and the JSON fields both share.

    Raises ``httpx.HTTPError`` when the service cannot be reached.
    """
    url = direct_url(url)
    with httpx.Client(timeout=timeout_s) as client:
        first = client.get(url)
        second = client.get(url)

    first_leaves = json_leaves(first.text[:MAX_BODY_CHARS]) or {}
    second_leaves = json_leaves(second.text[:MAX_BODY_CHARS]) or {}
    stable = {
        key: value
        for key, value in first_leaves.items()
        if second_leaves.get(key, ...) == value
    }
    return Fingerprint(
        url=url,
        status=first.status_code,
        fields=stable,
        service=first.headers.get(SERVICE_HEADER),
    )


def differences(expected: Fingerprint, status: int, body: str) -> list[str]:
    """List how a response differs from the service's direct response."""
    found: list[str] = []
    if status != expected.status:
        found.append(f"status {status}, the service returns {expected.status}")

    leaves = json_leaves(body[:MAX_BODY_CHARS])
    if expected.fields and leaves is None:
        found.append("body is not JSON, the service returns a JSON object")
        return found

    for key, value in expected.fields.items():
        actual = (leaves or {}).get(key, ...)
        if actual is ...:
            found.append(f"field {key} missing, the service has {value!r}")
        elif actual != value:
            found.append(f"field {key} = {actual!r}, the service has {value!r}")
    if len(found) > SHOWN_DIFFERENCES:
        hidden = len(found) - SHOWN_DIFFERENCES
        found = [*found[:SHOWN_DIFFERENCES], f"{hidden} more differences"]
    return found
