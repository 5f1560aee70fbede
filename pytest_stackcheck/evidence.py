"""Evidence recording: what a check measured, carried on the test report.

Evidence travels in ``item.user_properties`` as ``("evidence.NAME", value)``
pairs, because pytest-xdist sends user properties from workers to the
controller and pytest writes them into JUnit XML as properties.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pytest_stackcheck.gates import Evidence, EvidenceValue
from pytest_stackcheck.report.plots import Plot, Point

PREFIX = "evidence."
PLOT_PREFIX = "plot."
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

    def plot(
        self,
        title: str,
        series: Mapping[str, Sequence[Point]],
        x_label: str,
        y_label: str,
        step: bool = False,
    ) -> None:
        """Record a line plot, drawn in the HTML sign-off after the gates.

        ``series`` maps each line's name to its (x, y) points. ``step`` draws
        each value until the next point, which suits states such as healthy
        or down.
        """
        payload = {
            "x_label": x_label,
            "y_label": y_label,
            "step": step,
            "series": {
                name: [[float(x), float(y)] for x, y in points]
                for name, points in series.items()
            },
        }
        self._properties.append((PLOT_PREFIX + title, json.dumps(payload)))


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


def parse_plots(properties: Iterable[tuple[str, Any]]) -> list[Plot]:
    """Return the plots stored in a report's user properties.

    A payload that does not parse is left out, because a broken plot must not
    stop the sign-off from being written.
    """
    plots: list[Plot] = []
    for name, raw in properties:
        if not name.startswith(PLOT_PREFIX):
            continue
        try:
            payload = json.loads(raw)
            series = {
                str(line): [(float(x), float(y)) for x, y in points]
                for line, points in payload["series"].items()
            }
            plots.append(
                Plot(
                    title=name[len(PLOT_PREFIX) :],
                    x_label=str(payload["x_label"]),
                    y_label=str(payload["y_label"]),
                    series=series,
                    step=bool(payload.get("step", False)),
                )
            )
        except (TypeError, ValueError, KeyError, AttributeError):
            continue
    return plots
