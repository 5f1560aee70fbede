"""No acknowledged write is lost when PostgreSQL or nats-server is killed.

Under continuous write load (acknowledged JetStream publishes and committed
PostgreSQL rows), the server is killed with SIGKILL and restarted by its
manager. Every acknowledged write must then be present exactly once, the load
must resume, and the services that depend on the server must read healthy
again within the budget. The JetStream sync setting is checked too, because
a kill cannot show what a power cut loses.
"""

from __future__ import annotations

import time

import httpx
import pytest

from pytest_stackcheck.chaos.faults import FaultKind
from pytest_stackcheck.chaos.jetstream import sync_verdict
from pytest_stackcheck.chaos.ledger import WriteLoad
from pytest_stackcheck.chaos.policy import require_controlled
from pytest_stackcheck.chaos.recovery import (
    PROBE_TIMEOUT_S,
    measure_recovery,
    probes_for,
)
from pytest_stackcheck.probes import nats

SERVERS = ["postgresql", "nats"]


def _dependents(stack, server: str) -> list[str]:
    services = stack.profile.doc.services
    if server == "postgresql":
        return [name for name, spec in services.items() if spec.database]
    return [name for name, spec in services.items() if spec.nats]


@pytest.mark.gate("chaos", item="no acknowledged write lost when a server is killed")
@pytest.mark.parametrize("server", SERVERS)
def test_no_acknowledged_write_lost(stack, chaos, evidence, server):
    require_controlled(chaos.control, server)
    settings = stack.profile.doc.chaos
    budget = settings.budget_s(server)
    targets = [server, *_dependents(stack, server)]

    load = WriteLoad(stack)
    with load:
        started = load.wait_for_writes(10, budget)
        assert started, (
            f"write load did not start: JetStream {load.jetstream.last_error!r}, "
            f"PostgreSQL {load.postgres.last_error!r}"
        )
        time.sleep(settings.load_s)
        injection = chaos.inject(FaultKind.KILL, server)
        with httpx.Client(timeout=PROBE_TIMEOUT_S) as client:
            recovery = measure_recovery(
                f"{server} killed under write load",
                probes_for(stack, client, targets),
                injection.at,
                budget,
            )
        resumed = load.wait_for_writes(10, budget)
        time.sleep(settings.load_s)
    verdicts = load.verify(injection.at)
    load.clean_up()

    recovery.record(evidence)
    for verdict in verdicts:
        evidence.record(f"ledger.{server}_kill.{verdict.store}", verdict.describe())
        evidence.record(f"ledger.{server}_kill.{verdict.store}.lost", len(verdict.lost))

    assert recovery.within_budget, recovery.describe()
    for verdict in verdicts:
        assert not verdict.lost, f"acknowledged writes lost: {verdict.describe()}"
    for verdict in verdicts:
        assert not verdict.duplicated, f"writes duplicated: {verdict.describe()}"
    assert resumed, (
        f"write load did not resume after the {server} restart: "
        f"JetStream {load.jetstream.last_error!r}, "
        f"PostgreSQL {load.postgres.last_error!r}"
    )
    for verdict in verdicts:
        assert verdict.acknowledged_after_fault > 0, (
            f"{verdict.store}: no write acknowledged after the fault, so the "
            "ledger proves nothing about the restart"
        )


@pytest.mark.gate("chaos", item="JetStream acknowledged writes survive power loss")
def test_jetstream_syncs_acknowledged_writes(stack, evidence):
    settings = stack.profile.doc.chaos
    with httpx.Client(timeout=stack.profile.doc.timeouts.check_s) as client:
        varz = nats.monitor(client, stack.nats_monitor_url, "/varz")
        jsz = nats.monitor(client, stack.nats_monitor_url, "/jsz")

    verdict = sync_verdict(varz, settings.accepted_loss_window_s, jsz)
    evidence.record("jetstream.sync_always", verdict.sync_always)
    evidence.record("jetstream.sync_interval", verdict.sync_interval_s, "s")
    evidence.record("jetstream.clustered", verdict.clustered)
    evidence.record("jetstream.accepted_loss_window", settings.accepted_loss_window_s)
    assert verdict.ok, verdict.message
