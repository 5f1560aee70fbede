"""Day-1 sign-off of a host: everything started, talks, and stays quiet.

Each test proves one machine-checkable item of the deployment checklist and
records what it measured. Every check waits until its condition holds or the
profile's ``timeouts.check_s`` expires, then reports what it last saw.
"""

from __future__ import annotations

import httpx
import pytest

from pytest_stackcheck.probes import host, nats
from pytest_stackcheck.probes.http import read_health
from pytest_stackcheck.probes.wait import require, wait_until


@pytest.mark.gate("day1", item="all services started")
def test_all_services_started(stack, evidence):
    timeouts = stack.profile.doc.timeouts
    try:
        host.manager_of(stack)
    except host.NoServiceManager as exc:
        pytest.skip(str(exc))

    def all_running(states: dict[str, str]) -> bool:
        return bool(states) and all(s in ("RUNNING", "ACTIVE") for s in states.values())

    waited = wait_until(
        lambda: host.process_states(stack),
        all_running,
        timeouts.check_s,
        timeouts.poll_s,
    )
    states = require(waited, "every service is running", repr)
    for name, state in states.items():
        evidence.record(f"{name}.state", state)
    missing = set(stack.profile.doc.services) - set(states)
    assert not missing, f"services without a process: {sorted(missing)}"


@pytest.mark.gate("day1", item="NATS pub/sub round trip")
def test_nats_pubsub_round_trip(stack, evidence):
    timeouts = stack.profile.doc.timeouts
    waited = wait_until(
        lambda: nats.pubsub_round_trip(stack.nats_url, timeouts.check_s),
        lambda trip: trip.payload_ok,
        timeouts.check_s,
        timeouts.poll_s,
    )
    trip = require(waited, f"a message published on {stack.nats_url} comes back", repr)
    evidence.record("round_trip_latency", trip.latency_s * 1000, "ms")


@pytest.mark.gate("day1", item="JetStream enabled")
@pytest.mark.gate("preprod", item="JetStream enabled")
def test_jetstream_enabled(stack, evidence):
    timeouts = stack.profile.doc.timeouts
    if not stack.profile.doc.nats.jetstream:
        pytest.skip("the profile says this stack does not use JetStream")

    with httpx.Client(timeout=timeouts.check_s) as client:
        url = f"{stack.nats_monitor_url}/healthz?js-enabled-only=true"
        waited = wait_until(
            lambda: client.get(url),
            lambda r: r.status_code == 200,
            timeouts.check_s,
            timeouts.poll_s,
        )
        require(waited, f"{url} returns 200", lambda r: f"{r.status_code} {r.text!r}")
        varz = nats.monitor(client, stack.nats_monitor_url, "/varz")
        # Plain /healthz also checks that JetStream serves (a meta leader,
        # streams caught up), while js-enabled-only checks only that it is on.
        serving = wait_until(
            lambda: client.get(f"{stack.nats_monitor_url}/healthz"),
            lambda r: r.status_code == 200,
            timeouts.check_s,
            timeouts.poll_s,
        )

    config = varz.get("jetstream", {}).get("config", {})
    evidence.version("nats-server", str(varz.get("version", "unknown")))
    evidence.record("jetstream.store_dir", str(config.get("store_dir", "")))
    evidence.record("jetstream.max_file_store", config.get("max_storage", 0), "bytes")
    # nats-server 2.15 returns 200 to js-enabled-only=true when JetStream was
    # never configured, so /varz is the check that proves it is on.
    assert config, (
        f"/varz has no jetstream.config, so JetStream is off "
        f"({varz.get('jetstream')!r}); add a jetstream {{ store_dir: ... }} block "
        "to nats.conf"
    )
    require(
        serving,
        f"{stack.nats_monitor_url}/healthz returns 200 (JetStream serving)",
        lambda r: f"{r.status_code} {r.text!r}",
    )


@pytest.mark.gate("day1", item="database reachable")
def test_database_reachable(stack, evidence, database_name):
    import psycopg

    timeouts = stack.profile.doc.timeouts

    def read() -> tuple[str, int]:
        with psycopg.connect(**stack.conninfo(database_name)) as conn:
            row = conn.execute(
                "SELECT version(), current_setting('server_version_num')"
            ).fetchone()
            assert row is not None
            return str(row[0]), int(row[1])

    waited = wait_until(read, lambda _: True, timeouts.check_s, timeouts.poll_s)
    version, number = require(
        waited, f"database {database_name} accepts a connection", repr
    )
    evidence.version("postgresql", version.split(" on ")[0])
    evidence.record(f"{database_name}.server_version_num", number)
    minimum = stack.profile.doc.postgres.min_version
    assert number // 10000 >= minimum, (
        f"database {database_name}: server {version} is older than "
        f"postgres.min_version = {minimum}"
    )


@pytest.mark.gate("day1", item="health check passing on its body")
def test_health_passing(stack, evidence, service_name):
    service = stack.profile.doc.services[service_name]
    timeouts = stack.profile.doc.timeouts
    with httpx.Client(timeout=timeouts.check_s) as client:
        waited = wait_until(
            lambda: read_health(
                client, stack.service_url(service_name), service.health
            ),
            lambda reading: reading.healthy,
            timeouts.check_s,
            timeouts.poll_s,
        )
    reading = require(
        waited, f"service {service_name} is healthy", lambda r: r.describe()
    )
    evidence.record(f"{service_name}.health_status", reading.status)
    evidence.record(f"{service_name}.health_latency", reading.latency_s * 1000, "ms")


@pytest.mark.gate("day1", item="logs captured and free of error lines")
def test_logs_free_of_errors(stack, evidence):
    try:
        host.manager_of(stack)
    except host.NoServiceManager as exc:
        pytest.skip(str(exc))

    counts, findings = host.error_lines(stack)
    for source, count in counts.items():
        evidence.record(f"{source}.log_lines", count)
    evidence.record("error_lines", len(findings))

    silent = [name for name in stack.profile.doc.services if counts.get(name, 0) == 0]
    assert not silent, f"no log lines captured for services {silent}"
    shown = "\n".join(f"  {f.source}: {f.line}" for f in findings)
    assert not findings, f"error lines in the logs since the stack started:\n{shown}"
