"""Evidence recording: what a check measured, carried on the test report.

Evidence travels in ``item.user_properties`` as ``("evidence.NAME", value)``
pairs, because pytest-xdist sends user properties from workers to the
controller and pytest writes them into JUnit XML as properties.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pytest_stackcheck.gates import Evidence, EvidenceValue

PREFIX = "evidence."
VERSION_PREFIX = "version."
GATE_PROPERTY = "gate"
ITEM_PROPERTY = "checklist_item"


class EvidenceRecorder:
    """Record measured facts on the current test; see ``record``."""

    def __init__(self, user_properties: list[tuple[str, object]]) -> None:
        self._properties = user_properties

    def record(self, name: str, value: EvidenceValue, unit: str = "") -> None:
        """Record one measured fact, such as ``record("latency", 0.12, "s")``."""
        if isinstance(value, float):
            value = round(value, 4)
        payload = json.dumps({"value": value, "unit": unit})
        self._properties.append((PREFIX + name, payload))

    def version(self, component: str, version: str) -> None:
        """Record the version found for a component, shown in the sign-off."""
        self.record(VERSION_PREFIX + component, version)


def parse_evidence(properties: Iterable[tuple[str, Any]]) -> tuple[Evidence, ...]:
    """Return the evidence records stored in a report's user properties."""
    found: list[Evidence] = []
    for name, raw in properties:
        if not name.startswith(PREFIX):
            continue
        try:
            payload = json.loads(raw)
            found.append(
                Evidence(name[len(PREFIX) :], payload["value"], payload["unit"])
            )
        except (TypeError, ValueError, KeyError):
            found.append(Evidence(name[len(PREFIX) :], str(raw)))
    return tuple(found)
