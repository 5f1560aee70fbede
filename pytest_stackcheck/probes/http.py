"""HTTP probes: health endpoints judged on their body, not only their status."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

from pytest_stackcheck.profile import HealthSpec, HealthValue

_ABSENT = object()


@dataclass(frozen=True, slots=True)
class HealthReading:
    """What one request to a health endpoint returned, and how it compares."""

    url: str
    status: int
    body: str
    mismatches: tuple[str, ...] = field(default_factory=tuple)
    latency_s: float = 0.0

    @property
    def healthy(self) -> bool:
        return not self.mismatches

    def describe(self) -> str:
        """Return the reading as one line for failure messages."""
        shown = self.body if len(self.body) <= 300 else self.body[:297] + "..."
        problems = "; ".join(self.mismatches) or "healthy"
        return f"GET {self.url} -> {self.status} {shown!r} ({problems})"


def lookup(document: Any, dotted: str) -> Any:
    """Return the value at a dotted path such as ``services.database``."""
    current = document
    for part in dotted.split("."):
        if not isinstance(current, dict) or part not in current:
            return _ABSENT
        current = current[part]
    return current


def compare_health(status: int, body: str, spec: HealthSpec) -> tuple[str, ...]:
    """List every way a health response differs from the healthy contract."""
    problems: list[str] = []
    if status != spec.status:
        problems.append(f"status {status}, expected {spec.status}")
    if not spec.fields:
        return tuple(problems)

    try:
        document = json.loads(body)
    except ValueError:
        problems.append("body is not JSON")
        return tuple(problems)

    for key, expected in spec.fields.items():
        actual = lookup(document, key)
        if actual is _ABSENT:
            problems.append(f"field {key} missing, expected {expected!r}")
        elif not _equal(actual, expected):
            problems.append(f"field {key} = {actual!r}, expected {expected!r}")
    return tuple(problems)


def _equal(actual: Any, expected: HealthValue) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected
    return bool(actual == expected)


def read_health(client: httpx.Client, base_url: str, spec: HealthSpec) -> HealthReading:
    """Request a health endpoint once and compare it with ``spec``."""
    url = base_url.rstrip("/") + spec.path
    response = client.get(url)
    body = response.text
    return HealthReading(
        url=url,
        status=response.status_code,
        body=body,
        mismatches=compare_health(response.status_code, body, spec),
        latency_s=response.elapsed.total_seconds(),
    )
