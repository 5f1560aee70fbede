"""Network faults between the services and PostgreSQL or NATS.

The local stack routes service traffic to each server through a fault proxy
when the profile sets ``chaos.network_proxy = true``. Each fault is verified
by a round trip through the link before anything is judged. Services must
stay healthy under added latency and under packet loss, report a partition
in their health body, and recover within the budget once the partition heals
or after their connections are reset.
"""

from __future__ import annotations

import time

import httpx
import pytest

from pytest_stackcheck.chaos.network import ProxyControl, inject_network
from pytest_stackcheck.chaos.nightly import dependents
from pytest_stackcheck.chaos.recovery import (
    POLL_INTERVAL_S,
    PROBE_TIMEOUT_S,
    measure_recovery,
    probes_for,
)

LINKS = ["postgresql", "nats"]
LATENCY_HOLD_S = 2.0
LOSS_HOLD_S = 4.0
# Three losses in a row stall a chunk 0.2 + 0.4 + 0.8 s; a service may read
# unhealthy through that, but not much longer.
LOSS_MAX_OUTAGE_S = 2.0


@pytest.fixture
def fault_proxy(stack) -> ProxyControl:
    """Control of the local stack's fault proxy; skips when it is off."""
    socket = stack.workdir / "faultproxy.sock" if stack.workdir else None
    if socket is None or not socket.exists():
        pytest.skip(
            "no fault proxy on this stack: set chaos.network_proxy = true in a "
            "local stack's profile"
        )
    return ProxyControl(socket)


def _unhealthy(stack, client, targets: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, probe in probes_for(stack, client, targets).items():
        try:
            healthy, seen = probe()
        except Exception as exc:
            healthy, seen = False, f"{type(exc).__name__}: {exc}"
        if not healthy:
            found[name] = seen
    return found


@pytest.mark.gate("chaos", item="services stay healthy with added latency")
@pytest.mark.parametrize("link", LINKS)
def test_services_tolerate_latency(stack, chaos, fault_proxy, evidence, link):
    latency = stack.profile.doc.chaos.network_latency_ms
    targets = dependents(stack, link)

    injection = inject_network(chaos, fault_proxy, link, "latency", latency)
    evidence.record(f"{link}.latency_round_trip", injection.round_trip)
    unhealthy: dict[str, str] = {}
    with httpx.Client(timeout=PROBE_TIMEOUT_S * 4) as client:
        deadline = time.monotonic() + LATENCY_HOLD_S
        while time.monotonic() < deadline and not unhealthy:
            unhealthy = _unhealthy(stack, client, targets)
            time.sleep(POLL_INTERVAL_S)

    assert not unhealthy, (
        f"with {latency} ms added each way on the link to {link}, services "
        f"turned unhealthy: {unhealthy}"
    )


@pytest.mark.gate("chaos", item="services stay healthy with packet loss")
@pytest.mark.parametrize("link", LINKS)
def test_services_tolerate_loss(stack, chaos, fault_proxy, evidence, link):
    percent = stack.profile.doc.chaos.network_loss_percent
    targets = dependents(stack, link)

    injection = inject_network(chaos, fault_proxy, link, "loss", loss_percent=percent)
    evidence.record(f"{link}.loss_round_trip", injection.round_trip)
    # A lost chunk stalls the stream, so a single health probe may time out;
    # only an outage that outlasts a few retransmissions counts.
    down_since: dict[str, float] = {}
    longest: dict[str, tuple[float, str]] = {}
    with httpx.Client(timeout=PROBE_TIMEOUT_S * 4) as client:
        deadline = time.monotonic() + LOSS_HOLD_S
        while time.monotonic() < deadline:
            now = time.monotonic()
            unhealthy = _unhealthy(stack, client, targets)
            for name in targets:
                if name not in unhealthy:
                    down_since.pop(name, None)
                    continue
                outage = now - down_since.setdefault(name, now)
                if outage >= longest.get(name, (0.0, ""))[0]:
                    longest[name] = (outage, unhealthy[name])
            time.sleep(POLL_INTERVAL_S)
    lost = fault_proxy.links()[link]["losses"]
    evidence.record(f"{link}.loss_chunks_lost", lost)
    worst = max((outage for outage, _ in longest.values()), default=0.0)
    evidence.record(f"{link}.loss_longest_outage", worst, "s")

    outages = {
        name: f"unhealthy for {outage:.1f} s: {seen}"
        for name, (outage, seen) in longest.items()
        if outage > LOSS_MAX_OUTAGE_S
    }
    assert not outages, (
        f"with {percent} % of the chunks on the link to {link} lost and "
        f"retransmitted, services stayed unhealthy longer than "
        f"{LOSS_MAX_OUTAGE_S} s: {outages}"
    )


@pytest.mark.gate("chaos", item="health reports a partition and recovers after")
@pytest.mark.parametrize("link", LINKS)
def test_partition_reported_then_healed(stack, chaos, fault_proxy, evidence, link):
    budget = stack.profile.doc.chaos.budget_s(link)
    targets = dependents(stack, link)

    injection = inject_network(chaos, fault_proxy, link, "partition")
    evidence.record(f"{link}.partition_round_trip", injection.round_trip)
    missing = set(targets)
    with httpx.Client(timeout=PROBE_TIMEOUT_S * 4) as client:
        deadline = time.monotonic() + budget
        while missing and time.monotonic() < deadline:
            missing -= set(_unhealthy(stack, client, targets))
            time.sleep(POLL_INTERVAL_S)
    detected_s = time.monotonic() - injection.at
    evidence.record(f"{link}.partition_detected", detected_s, "s")

    chaos.undo_entry(injection.entry_id)
    healed_at = time.monotonic()
    with httpx.Client(timeout=PROBE_TIMEOUT_S) as client:
        recovery = measure_recovery(
            f"{link} partition healed",
            probes_for(stack, client, targets),
            healed_at,
            budget,
        )
    recovery.record(evidence)

    assert not missing, (
        f"health of {sorted(missing)} stayed green for {budget} s while the link "
        f"to {link} was partitioned; the health endpoint must check {link} "
        "with a round trip, not report a stale connection state"
    )
    assert recovery.within_budget, recovery.describe()


@pytest.mark.gate("chaos", item="services reconnect after connection resets")
@pytest.mark.parametrize("link", LINKS)
def test_services_reconnect_after_reset(stack, chaos, fault_proxy, evidence, link):
    budget = stack.profile.doc.chaos.budget_s(link)
    targets = dependents(stack, link)

    injection = inject_network(chaos, fault_proxy, link, "reset")
    evidence.record(f"{link}.reset_round_trip", injection.round_trip)
    chaos.undo_entry(injection.entry_id)
    with httpx.Client(timeout=PROBE_TIMEOUT_S) as client:
        recovery = measure_recovery(
            f"{link} connections reset",
            probes_for(stack, client, targets),
            injection.at,
            budget,
        )
    recovery.record(evidence)

    assert recovery.within_budget, recovery.describe()
