"""The steady state chaos starts from and must return to.

Steady means that every program the manager controls runs and that no
process of the stack is stopped by SIGSTOP. No rollback may be pending in
the journal, no link of the fault proxy may carry a fault, and every
service, PostgreSQL, NATS and nginx must read healthy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from pytest_stackcheck.chaos.journal import Journal
from pytest_stackcheck.chaos.recovery import (
    POLL_INTERVAL_S,
    PROBE_TIMEOUT_S,
    probes_for,
)
from pytest_stackcheck.control.base import ServiceControl
from pytest_stackcheck.errors import StackcheckError
from pytest_stackcheck.provision.base import LiveStack

INFRASTRUCTURE = ("postgresql", "nats", "nginx")


@dataclass(frozen=True, slots=True)
class SteadyState:
    """Deviations from the steady state; empty lists mean steady."""

    not_running: list[str]
    paused: list[str]
    pending_rollbacks: list[str]
    unhealthy: dict[str, str]
    network_faults: list[str]

    @property
    def steady(self) -> bool:
        return not (
            self.not_running
            or self.paused
            or self.pending_rollbacks
            or self.unhealthy
            or self.network_faults
        )

    def describe(self) -> str:
        """Return the deviations as one line, or 'steady'."""
        if self.steady:
            return "steady"
        parts = [
            f"not running: {self.not_running}" if self.not_running else "",
            f"paused processes: {self.paused}" if self.paused else "",
            f"pending rollbacks: {self.pending_rollbacks}"
            if self.pending_rollbacks
            else "",
            f"unhealthy: {self.unhealthy}" if self.unhealthy else "",
            f"network faults: {self.network_faults}" if self.network_faults else "",
        ]
        return "; ".join(part for part in parts if part)


def read_steady_state(
    stack: LiveStack, control: ServiceControl, journal: Journal, client: httpx.Client
) -> SteadyState:
    """Read every part of the steady state once."""
    names = control.names()
    not_running = [name for name in names if not control.is_running(name)]
    paused = [name for name in names if control.is_paused(name)]
    pending = [f"{e.action} {e.service}" for e in journal.entries()]

    targets = [*stack.profile.doc.services, *INFRASTRUCTURE]
    unhealthy: dict[str, str] = {}
    for target, probe in probes_for(stack, client, targets).items():
        try:
            healthy, seen = probe()
        except Exception as exc:
            healthy, seen = False, f"{type(exc).__name__}: {exc}"
        if not healthy:
            unhealthy[target] = seen
    return SteadyState(not_running, paused, pending, unhealthy, _network_faults(stack))


def _network_faults(stack: LiveStack) -> list[str]:
    """List the links of the stack's fault proxy that carry a fault."""
    from pytest_stackcheck.chaos.network import ProxyControl

    if stack.workdir is None:
        return []
    socket = stack.workdir / "faultproxy.sock"
    if not socket.exists():
        return []
    try:
        links = ProxyControl(socket).links()
    except StackcheckError as exc:
        return [f"fault proxy unreadable: {exc}"]
    return [
        f"{name}: {link['fault']}"
        for name, link in links.items()
        if link["fault"] != "none"
    ]


def wait_steady(
    stack: LiveStack, control: ServiceControl, journal: Journal, timeout_s: float
) -> SteadyState:
    """Read the steady state until it is steady or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=PROBE_TIMEOUT_S) as client:
        while True:
            state = read_steady_state(stack, control, journal, client)
            if state.steady or time.monotonic() + POLL_INTERVAL_S > deadline:
                return state
            time.sleep(POLL_INTERVAL_S * 4)
