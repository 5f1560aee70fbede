"""The database roles (singularity, genesis) against real PostgreSQL and NATS."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from reference_harness import (
    PG_PASSWORD,
    NatsServer,
    Postgres,
    RunningService,
    error_lines,
    start_refservice,
    stop_process,
    wait_healthy,
    wait_until,
)


@pytest.fixture(scope="module")
def singularity(
    postgres: Postgres,
    nats_server: NatsServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningService]:
    log_path = tmp_path_factory.mktemp("singularity") / "singularity.log"
    args = ["--nats-url", nats_server.url, "--heartbeat-s", "0.3"]
    env = {"STACKCHECK_REF_DSN": postgres.dsn("singularity")}
    service = start_refservice("singularity", log_path, args, env)
    try:
        wait_healthy(service)
        yield service
    finally:
        stop_process(service.process)


def collect_events(url: str, action: Callable[[], Any], count: int) -> list[Any]:
    """Subscribe to singularity.events, run action, return the first count messages."""

    async def collect() -> list[Any]:
        client = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def on_message(msg: Any) -> None:
            await queue.put(json.loads(msg.data))

        try:
            await client.subscribe("singularity.events", cb=on_message)
            await client.flush()
            await asyncio.to_thread(action)
            async with asyncio.timeout(10):
                return [await queue.get() for _ in range(count)]
        finally:
            await client.close()

    return asyncio.run(collect())


def test_singularity_health(singularity: RunningService) -> None:
    response = singularity.health()

    assert response.status_code == 200
    assert response.headers["X-Stackcheck-Service"] == "singularity"
    assert response.json()["services"] == {"database": "ok", "nats": "ok"}


def test_heartbeat_stored_and_published(
    singularity: RunningService, postgres: Postgres, nats_server: NatsServer
) -> None:
    messages = collect_events(nats_server.url, lambda: None, 2)
    heartbeats = [m for m in messages if m["kind"] == "heartbeat"]
    rows = postgres.execute(
        "singularity",
        f"SELECT kind, payload FROM events WHERE id = {int(heartbeats[0]['id'])}",
    )

    assert heartbeats[0] == {"kind": "heartbeat", "id": heartbeats[0]["id"]}
    assert rows == [("heartbeat", {})]


def test_post_event_stored_and_published(
    singularity: RunningService, postgres: Postgres, nats_server: NatsServer
) -> None:
    event = {"kind": "deploy", "payload": {"version": "1.2.3", "nested": [1, None]}}
    responses: list[httpx.Response] = []

    def post() -> None:
        responses.append(httpx.post(singularity.base_url + "/api/events", json=event))

    messages = collect_events(nats_server.url, post, 3)
    event_id = responses[0].json()["id"]
    published = [m for m in messages if m["kind"] == "deploy"]
    rows = postgres.execute(
        "singularity", f"SELECT kind, payload FROM events WHERE id = {int(event_id)}"
    )

    assert responses[0].status_code == 201
    assert responses[0].json()["published"] is True
    assert published == [
        {"kind": "deploy", "id": event_id, "payload": event["payload"]}
    ]
    assert rows == [("deploy", event["payload"])]


@pytest.mark.parametrize(
    ("body", "expected_status"),
    [
        (b"{", 400),
        (b'{"kind": "x", "payload": {"n": NaN}}', 400),
        (b'{"kind": "x", "payload": {"s": "\\ud800"}}', 400),
        (b'{"payload": {}}', 422),
        (b'{"kind": "", "payload": {}}', 422),
        (b'{"kind": 5, "payload": {}}', 422),
        (b'{"kind": "x", "payload": []}', 422),
        (b'{"kind": "x", "payload": {"s": "a\\u0000b"}}', 422),
        (b'{"kind": "x\\u0000", "payload": {}}', 422),
        (b'{"kind": "' + b"k" * 300 + b'", "payload": {}}', 422),
    ],
)
def test_bad_event_is_4xx(
    singularity: RunningService, body: bytes, expected_status: int
) -> None:
    response = httpx.post(singularity.base_url + "/api/events", content=body)

    assert response.status_code == expected_status, response.text
    assert "error" in response.json()


def test_singularity_logs_clean(singularity: RunningService) -> None:
    log = singularity.log()

    assert error_lines(log) == []
    assert PG_PASSWORD not in log
    assert "connected to database" in log


def test_genesis_waits_for_database(
    postgres: Postgres, nats_server: NatsServer, tmp_path: Path
) -> None:
    """genesis starts before its database exists, then recovers from a lost link."""
    env = {"STACKCHECK_REF_DSN": postgres.dsn("genesis")}
    args = ["--nats-url", nats_server.url]
    service = start_refservice("genesis", tmp_path / "genesis.log", args, env)
    try:
        wait_until(
            lambda: "database unavailable (attempt 1)" in service.log(),
            5,
            "the first database retry warning",
        )
        early_health = service.health()
        early_stats = httpx.get(service.base_url + "/api/stats", timeout=5)

        postgres.execute("postgres", "CREATE DATABASE genesis")
        postgres.execute("genesis", "CREATE TABLE one (id int)")
        postgres.execute("genesis", "CREATE TABLE two (id int)")
        wait_healthy(service)
        stats = httpx.get(service.base_url + "/api/stats", timeout=5)
        log_before_loss = service.log()

        postgres.execute(
            "postgres",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = 'genesis'",
        )
        wait_until(
            lambda: "lost connection to database" in service.log(),
            10,
            "the lost-connection error",
        )
        wait_healthy(service)
    finally:
        stop_process(service.process)

    assert early_health.status_code == 503
    assert early_health.json()["services"] == {"database": "error", "nats": "ok"}
    assert early_stats.status_code == 503
    assert stats.json() == {"tables": 2}
    assert error_lines(log_before_loss) == []
    assert len(error_lines(service.log())) == 1
    assert PG_PASSWORD not in service.log()
