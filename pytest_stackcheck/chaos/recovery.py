"""Time from a fault to healthy, judged on health bodies, at 50 ms polling.

After a fault, each target is probed in its own thread every 50 ms until it
reads healthy. Each probe has a short timeout, so a dead service reads down
at once and a paused one reads down after the timeout. A target recovered
between its last down reading and its first healthy one. The report gives
the time of the first healthy reading and, as ``resolution_s``, the gap
between the two.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

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
        from psycopg.conninfo import make_conninfo

        conninfo = make_conninfo(
            "", **{**stack.conninfo(database), "connect_timeout": 1}
        )
        with psycopg.connect(conninfo) as connection:
            connection.execute("SELECT 1")
        return True, "ok"

    return probe


def measure_recovery(
    label: str, probes: dict[str, Probe], since: float, budget_s: float
) -> Recovery:
    """Probe each target in its own thread until it reads healthy.

    ``since`` is the ``time.monotonic()`` of the fault and the wait ends at
    ``since + budget_s``. The recovery time is that of the slowest target,
    and the resolution the gap between its last down and first healthy
    reading. A final round then checks that all targets are healthy together.
    """
    deadline = since + budget_s
    results: dict[str, _TargetWatch] = {name: _TargetWatch() for name in probes}
    threads = [
        threading.Thread(
            target=_watch,
            args=(probes[name], results[name], since, deadline),
            name=f"recovery-{name}",
        )
        for name in probes
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=budget_s + PROBE_TIMEOUT_S * 4)

    timeline = {name: watch.points for name, watch in results.items()}
    last_seen = {name: watch.last_seen for name, watch in results.items()}
    seconds: float | None = None
    resolution = POLL_INTERVAL_S
    if all(watch.healthy_at is not None for watch in results.values()):
        slowest = max(results.values(), key=lambda watch: watch.healthy_at or 0.0)
        seconds = slowest.healthy_at
        resolution = (slowest.healthy_at or 0.0) - slowest.down_at
        for name, probe in probes.items():
            healthy, seen = _read(probe)
            last_seen[name] = seen
            if not healthy:
                seconds = None

    result = Recovery(label, seconds, budget_s, resolution, timeline, last_seen)
    log.info("%s", result.describe())
    return result


@dataclass
class _TargetWatch:
    points: list[tuple[float, float]] = field(default_factory=list)
    last_seen: str = ""
    down_at: float = 0.0
    healthy_at: float | None = None


def _read(probe: Probe) -> tuple[bool, str]:
    try:
        return probe()
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"


def _watch(probe: Probe, watch: _TargetWatch, since: float, deadline: float) -> None:
    while True:
        healthy, watch.last_seen = _read(probe)
        now = time.monotonic() - since
        if len(watch.points) < MAX_POINTS:
            watch.points.append((now, 1.0 if healthy else 0.0))
        if healthy:
            watch.healthy_at = now
            return
        watch.down_at = now
        if time.monotonic() + POLL_INTERVAL_S > deadline:
            return
        time.sleep(POLL_INTERVAL_S)
