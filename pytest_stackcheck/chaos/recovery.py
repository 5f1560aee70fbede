"""Time from a fault to healthy, judged on health bodies, at 50 ms polling.

After a fault, every target is probed in turn until all of them read healthy
at once. Each probe has a short timeout, so a dead service reads down at once
and a paused one reads down after the timeout. The recovery time lies between
the last round with a target down and the first round with all healthy; the
first is reported as ``seconds`` and the gap between them as ``resolution_s``,
so the report states how exact the figure is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from pytest_stackcheck.evidence import EvidenceRecorder
from pytest_stackcheck.probes.http import read_health
from pytest_stackcheck.provision.base import LiveStack

log = logging.getLogger("pytest_stackcheck")

POLL_INTERVAL_S = 0.05
PROBE_TIMEOUT_S = 0.5
# Timeline points kept per target; at 50 ms polling this covers 100 s.
MAX_POINTS = 2000

Probe = Callable[[], tuple[bool, str]]


@dataclass(frozen=True, slots=True)
class Recovery:
    """How long the targets took to read healthy after a fault.

    ``seconds`` is None when they did not within ``budget_s``. ``timeline``
    maps each target to (seconds since the fault, 1 healthy or 0 down).
    """

    label: str
    seconds: float | None
    budget_s: float
    resolution_s: float
    timeline: dict[str, list[tuple[float, float]]]
    last_seen: dict[str, str]

    @property
    def within_budget(self) -> bool:
        return self.seconds is not None and self.seconds <= self.budget_s

    def describe(self) -> str:
        """Return one line for a failure message."""
        if self.seconds is None:
            down = {t: s for t, s in self.last_seen.items() if not s.startswith("ok")}
            return (
                f"{self.label}: not healthy within the budget of {self.budget_s} s; "
                f"last seen: {down}"
            )
        return (
            f"{self.label}: healthy after {self.seconds:.2f} s "
            f"(±{self.resolution_s:.2f} s, budget {self.budget_s} s)"
        )

    def record(self, evidence: EvidenceRecorder) -> None:
        """Record the recovery time, its budget and a step plot of health."""
        key = self.label.replace(" ", "_")
        if self.seconds is not None:
            evidence.record(f"{key}.recovery", self.seconds, "s")
        else:
            evidence.record(f"{key}.recovery", "not recovered")
        evidence.record(f"{key}.recovery_budget", self.budget_s, "s")
        evidence.record(f"{key}.recovery_resolution", self.resolution_s, "s")
        evidence.plot(
            f"recovery: {self.label}",
            self.timeline,
            "seconds since the fault",
            "healthy (1) or down (0)",
            step=True,
        )


def probes_for(
    stack: LiveStack, client: httpx.Client, targets: list[str]
) -> dict[str, Probe]:
    """Return a health probe for each target: a service, postgresql, nats or nginx."""
    doc = stack.profile.doc
    probes: dict[str, Probe] = {}
    for target in targets:
        if target in doc.services:
            probes[target] = _service_probe(stack, client, target)
        elif target == "postgresql":
            probes[target] = _postgres_probe(stack)
        elif target == "nats":
            probes[target] = _status_probe(
                client, f"{stack.nats_monitor_url}/healthz?js-enabled-only=true"
            )
        elif target == "nginx":
            probes[target] = _status_probe(client, stack.nginx_url + "/", below=500)
        else:
            raise ValueError(f"no health probe for {target!r}")
    return probes


def _service_probe(stack: LiveStack, client: httpx.Client, name: str) -> Probe:
    spec = stack.profile.doc.services[name].health
    url = stack.service_url(name)

    def probe() -> tuple[bool, str]:
        reading = read_health(client, url, spec)
        return reading.healthy, "ok" if reading.healthy else reading.describe()

    return probe


def _status_probe(client: httpx.Client, url: str, below: int = 201) -> Probe:
    def probe() -> tuple[bool, str]:
        response = client.get(url)
        healthy = 200 <= response.status_code < below
        return healthy, "ok" if healthy else f"GET {url} -> {response.status_code}"

    return probe


def _postgres_probe(stack: LiveStack) -> Probe:
    database = stack.profile.doc.postgres.databases[0]

    def probe() -> tuple[bool, str]:
        import psycopg

        arguments = dict(stack.conninfo(database), connect_timeout=1)
        with psycopg.connect(**arguments) as connection:  # type: ignore[arg-type]
            connection.execute("SELECT 1")
        return True, "ok"

    return probe


def measure_recovery(
    label: str,
    probes: dict[str, Probe],
    since: float,
    budget_s: float,
    settle_rounds: int = 1,
) -> Recovery:
    """Probe until every target reads healthy ``settle_rounds`` times in a row.

    ``since`` is the ``time.monotonic()`` of the fault. The wait ends at
    ``since + budget_s``; the loop is bounded by that deadline.
    """
    timeline: dict[str, list[tuple[float, float]]] = {name: [] for name in probes}
    last_seen: dict[str, str] = {}
    last_down = 0.0
    first_healthy: float | None = None
    healthy_rounds = 0
    deadline = since + budget_s

    while True:
        round_started = time.monotonic() - since
        all_healthy = True
        for name, probe in probes.items():
            try:
                healthy, seen = probe()
            except Exception as exc:
                healthy, seen = False, f"{type(exc).__name__}: {exc}"
            last_seen[name] = seen
            points = timeline[name]
            if len(points) < MAX_POINTS:
                points.append((time.monotonic() - since, 1.0 if healthy else 0.0))
            all_healthy = all_healthy and healthy

        if all_healthy:
            if healthy_rounds == 0:
                first_healthy = time.monotonic() - since
            healthy_rounds += 1
            if healthy_rounds >= settle_rounds:
                break
        else:
            healthy_rounds = 0
            first_healthy = None
            last_down = round_started

        if time.monotonic() + POLL_INTERVAL_S > deadline:
            break
        time.sleep(POLL_INTERVAL_S)

    seconds = first_healthy if healthy_rounds >= settle_rounds else None
    resolution = (seconds - last_down) if seconds is not None else POLL_INTERVAL_S
    result = Recovery(label, seconds, budget_s, resolution, timeline, last_seen)
    log.info("%s", result.describe())
    return result
