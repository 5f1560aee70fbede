"""Network faults through the local stack's fault proxy, on real servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import SUITES, local_profile

from pytest_stackcheck.chaos.faults import ChaosSession, FaultNotApplied, replay
from pytest_stackcheck.chaos.journal import Journal
from pytest_stackcheck.chaos.network import (
    ROUND_TRIP_TIMEOUT_S,
    ProxyControl,
    inject_network,
    round_trip,
)
from pytest_stackcheck.chaos.steady import wait_steady
from pytest_stackcheck.control.supervisor import SupervisorControl
from pytest_stackcheck.errors import StackcheckError
from pytest_stackcheck.profile import load_profile
from pytest_stackcheck.provision.base import LiveStack
from pytest_stackcheck.provision.local import LocalProvisioner

NETWORK_SUITE = str(SUITES / "chaos" / "test_network.py")
WITH_PROXY = {"[policy]\n": "[chaos]\nnetwork_proxy = true\n\n[policy]\n"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    """A local stack whose services reach the servers through the proxy."""
    path = local_profile(tmp_path_factory.mktemp("profile"), WITH_PROXY)
    provisioner = LocalProvisioner()
    stack = provisioner.up(load_profile(path))
    yield stack
    provisioner.down(stack)


@pytest.fixture
def proxy(live: LiveStack) -> ProxyControl:
    """Control of the shared stack's fault proxy."""
    assert live.workdir is not None
    return ProxyControl(live.workdir / "faultproxy.sock")


def _session(live: LiveStack, journal: Journal) -> ChaosSession:
    assert live.supervisor_socket is not None
    control = SupervisorControl(live.supervisor_socket)
    return ChaosSession(live.profile, control, journal, live.supervisor_socket)


def test_proxy_links_both_servers(live, proxy):
    links = proxy.links()

    assert sorted(links) == ["nats", "postgresql"]
    assert links["postgresql"]["target"].endswith(f":{live.ports['postgres.port']}")
    assert all(link["fault"] == "none" for link in links.values())
    assert all(link["connections"] >= 1 for link in links.values())


def test_latency_measured_through_link(live, proxy, tmp_path):
    port = int(proxy.links()["postgresql"]["listen_port"])
    before = round_trip("postgresql", port)

    with _session(live, Journal(tmp_path / "journal.json")) as session:
        injection = inject_network(session, proxy, "postgresql", "latency", 150)
        during = round_trip("postgresql", port)

    assert before < 0.15
    assert during >= 0.3
    assert injection.round_trip.startswith("round trip")
    assert proxy.links()["postgresql"]["fault"] == "none"


def _stall(link: str, port: int) -> float:
    # Three losses in a row (0.2 + 0.4 + 0.8 s) outlast the round trip timeout.
    try:
        return round_trip(link, port)
    except TimeoutError:
        return ROUND_TRIP_TIMEOUT_S


def test_loss_stalls_round_trips(live, proxy, tmp_path):
    port = int(proxy.links()["nats"]["listen_port"])

    with _session(live, Journal(tmp_path / "journal.json")) as session:
        injection = inject_network(session, proxy, "nats", "loss", loss_percent=30)
        status = proxy.links()["nats"]
        stalls = [_stall("nats", port) for _ in range(20)]

    assert injection.round_trip.startswith("round trip")
    assert status["fault"] == "loss"
    assert status["loss_percent"] == 30
    assert status["losses"] >= 1
    assert max(stalls) >= 0.2
    assert proxy.links()["nats"]["fault"] == "none"
    assert round_trip("nats", port) < 0.2


def test_loss_percent_out_of_range_rejected(proxy):
    with pytest.raises(StackcheckError, match="use 0 to 50"):
        proxy.set_fault("nats", "loss", loss_percent=80)
    with pytest.raises(StackcheckError, match="percent of 1 or more"):
        proxy.set_fault("nats", "loss")


def test_unknown_link_rejected(live, proxy, tmp_path):
    journal = Journal(tmp_path / "journal.json")
    session = _session(live, journal)
    with session, pytest.raises(FaultNotApplied, match="no such link"):
        inject_network(session, proxy, "redis", "partition")
    assert journal.entries() == []


def test_replay_clears_partition_of_killed_run(live, proxy, tmp_path):
    journal = Journal(tmp_path / "journal.json")
    session = _session(live, journal)
    inject_network(session, proxy, "nats", "partition")
    # The run "dies" here: the session's own rollbacks never run.

    done = replay(journal)

    assert done == ["cleared partition on link nats"]
    assert proxy.links()["nats"]["fault"] == "none"
    assert journal.entries() == []
    assert wait_steady(live, session.control, journal, 15.0).describe() == "steady"


def test_network_suite_passes(run_suite, tmp_path):
    result = run_suite(local_profile(tmp_path, WITH_PROXY), NETWORK_SUITE)

    result.assert_outcomes(passed=8)


def test_network_suite_skips_without_proxy(run_suite, tmp_path):
    result = run_suite(local_profile(tmp_path), NETWORK_SUITE, "-rs", "-k", "nats")

    result.assert_outcomes(skipped=4)
    result.stdout.fnmatch_lines(["*set chaos.network_proxy = true*"])
