"""The durability ledger: acknowledged writes under load, checked after a fault.

``WriteLoad`` runs two writers in background threads while a fault happens:
one publishes to a JetStream stream and waits for each ack, the other inserts
rows into PostgreSQL in autocommit mode. Every write carries a unique id. A
write is *acknowledged* when the server confirmed it (a PubAck, a returned
INSERT). A write that raised is *unconfirmed*: it may or may not have been
stored, so it never counts as lost.

``verify`` reads everything back and classifies each acknowledged id as
present (stored once), lost (missing) or duplicated (stored more than once).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType

from pytest_stackcheck.provision.base import LiveStack

log = logging.getLogger("pytest_stackcheck")

LEDGER_TABLE = "stackcheck_ledger"
LEDGER_SUBJECT_PREFIX = "stackcheck.ledger"
WRITE_TIMEOUT_S = 1.0
# Upper bound on one writer's lifetime, whatever the caller does.
MAX_LOAD_S = 300.0
# At most this many acknowledged writes per store, so memory stays bounded.
MAX_WRITES = 200_000
RETRY_PAUSE_S = 0.05
SHOWN_IDS = 10


@dataclass(frozen=True, slots=True)
class LedgerVerdict:
    """Classification of the acknowledged writes of one store."""

    store: str
    acknowledged: int
    unconfirmed: int
    present: int
    lost: tuple[str, ...]
    duplicated: tuple[str, ...]
    acknowledged_after_fault: int

    def describe(self) -> str:
        """Return the classification as one line, with the first lost ids."""
        text = (
            f"{self.store}: {self.acknowledged} acknowledged writes, "
            f"{self.present} present, {len(self.lost)} lost, "
            f"{len(self.duplicated)} duplicated, {self.unconfirmed} unconfirmed"
        )
        if self.lost:
            text += f"; first lost ids: {list(self.lost[:SHOWN_IDS])}"
        if self.duplicated:
            text += f"; first duplicated ids: {list(self.duplicated[:SHOWN_IDS])}"
        return text


@dataclass
class _Writes:
    acknowledged: list[tuple[str, float]] = field(default_factory=list)
    unconfirmed: int = 0
    last_error: str = ""


class WriteLoad:
    """Continuous acknowledged writes to JetStream and PostgreSQL.

    Use it as a context manager: the writers start on entry and stop on exit.
    """

    def __init__(self, stack: LiveStack) -> None:
        chaos = stack.profile.doc.chaos
        self.stack = stack
        self.run_id = uuid.uuid4().hex[:12]
        self.stream = chaos.ledger_stream
        self.subject = f"{LEDGER_SUBJECT_PREFIX}.{self.run_id}"
        self.database = chaos.ledger_database or stack.profile.doc.postgres.databases[0]
        self.jetstream = _Writes()
        self.postgres = _Writes()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> WriteLoad:
        self._prepare()
        self._threads = [
            threading.Thread(target=self._write_postgres, name="ledger-postgres"),
            threading.Thread(target=self._write_jetstream, name="ledger-jetstream"),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop both writers and wait for them (each write times out in 1 s)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=WRITE_TIMEOUT_S * 10)

    def acknowledged_since(self, since: float) -> tuple[int, int]:
        """Return (JetStream, PostgreSQL) acknowledged writes after ``since``."""
        return (
            sum(1 for _, at in self.jetstream.acknowledged if at > since),
            sum(1 for _, at in self.postgres.acknowledged if at > since),
        )

    def wait_for_writes(self, count: int, timeout_s: float) -> bool:
        """Wait until both stores acknowledged ``count`` writes since now."""
        since = time.monotonic()
        deadline = since + timeout_s
        while time.monotonic() < deadline:
            if min(self.acknowledged_since(since)) >= count:
                return True
            time.sleep(RETRY_PAUSE_S)
        return False

    def _conninfo(self, **overrides: str | int) -> str:
        from psycopg.conninfo import make_conninfo

        return make_conninfo("", **{**self.stack.conninfo(self.database), **overrides})

    def _prepare(self) -> None:
        import psycopg

        with psycopg.connect(self._conninfo(), autocommit=True) as connection:
            connection.execute(
                f"CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} "
                "(id text NOT NULL, written_at timestamptz NOT NULL DEFAULT now())"
            )
        asyncio.run(self._create_stream())

    async def _create_stream(self) -> None:
        import nats

        client = await nats.connect(self.stack.nats_url, max_reconnect_attempts=0)
        try:
            await client.jetstream().add_stream(
                name=self.stream, subjects=[f"{LEDGER_SUBJECT_PREFIX}.>"]
            )
        finally:
            await client.close()

    def _write_postgres(self) -> None:
        import psycopg

        conninfo = self._conninfo(connect_timeout=1)
        deadline = time.monotonic() + MAX_LOAD_S
        connection: psycopg.Connection[tuple[object, ...]] | None = None
        number = 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            if len(self.postgres.acknowledged) >= MAX_WRITES:
                break
            number += 1
            write_id = f"{self.run_id}-pg-{number}"
            try:
                if connection is None or connection.closed:
                    connection = psycopg.connect(conninfo, autocommit=True)
                connection.execute(
                    f"INSERT INTO {LEDGER_TABLE} (id) VALUES (%s)", (write_id,)
                )
                self.postgres.acknowledged.append((write_id, time.monotonic()))
            except psycopg.Error as exc:
                self.postgres.unconfirmed += 1
                self.postgres.last_error = str(exc)
                if connection is not None:
                    connection.close()
                connection = None
                time.sleep(RETRY_PAUSE_S)
        if connection is not None:
            connection.close()

    def _write_jetstream(self) -> None:
        asyncio.run(self._publish_loop())

    async def _publish_loop(self) -> None:
        import nats

        async def on_error(error: Exception) -> None:
            # The server is down on purpose; the failed publishes are counted.
            log.debug("ledger: NATS connection error: %r", error)

        client = await nats.connect(
            self.stack.nats_url,
            error_cb=on_error,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.1,
            connect_timeout=1,
        )
        jetstream = client.jetstream()
        deadline = time.monotonic() + MAX_LOAD_S
        number = 0
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                if len(self.jetstream.acknowledged) >= MAX_WRITES:
                    break
                number += 1
                write_id = f"{self.run_id}-js-{number}"
                try:
                    await jetstream.publish(
                        self.subject, write_id.encode(), timeout=WRITE_TIMEOUT_S
                    )
                    self.jetstream.acknowledged.append((write_id, time.monotonic()))
                except (nats.errors.Error, TimeoutError, OSError) as exc:
                    self.jetstream.unconfirmed += 1
                    self.jetstream.last_error = repr(exc)
                    await asyncio.sleep(RETRY_PAUSE_S)
        finally:
            await client.close()

    def verify(self, fault_at: float) -> list[LedgerVerdict]:
        """Read both stores back and classify every acknowledged write."""
        import psycopg

        with psycopg.connect(self._conninfo(), autocommit=True) as connection:
            rows = connection.execute(
                f"SELECT id, count(*) FROM {LEDGER_TABLE} WHERE id LIKE %s GROUP BY id",
                (f"{self.run_id}-pg-%",),
            ).fetchall()
        stored_rows = Counter({str(row[0]): int(row[1]) for row in rows})
        stored_messages = asyncio.run(self._read_stream())
        return [
            _classify("jetstream", self.jetstream, stored_messages, fault_at),
            _classify("postgresql", self.postgres, stored_rows, fault_at),
        ]

    async def _read_stream(self) -> Counter[str]:
        import nats

        client = await nats.connect(self.stack.nats_url, max_reconnect_attempts=0)
        stored: Counter[str] = Counter()
        try:
            jetstream = client.jetstream()
            info = await jetstream.stream_info(
                self.stream, subjects_filter=self.subject
            )
            expected = int((info.state.subjects or {}).get(self.subject, 0))
            subscription = await jetstream.subscribe(
                self.subject, ordered_consumer=True
            )
            deadline = time.monotonic() + 60.0
            while sum(stored.values()) < expected and time.monotonic() < deadline:
                message = await subscription.next_msg(timeout=5.0)
                stored[message.data.decode()] += 1
            await subscription.unsubscribe()
        finally:
            await client.close()
        return stored

    def clean_up(self) -> None:
        """Delete this run's rows and messages, keeping the table and stream."""
        import psycopg

        with psycopg.connect(self._conninfo(), autocommit=True) as connection:
            connection.execute(
                f"DELETE FROM {LEDGER_TABLE} WHERE id LIKE %s", (f"{self.run_id}-%",)
            )
        asyncio.run(self._purge_subject())

    async def _purge_subject(self) -> None:
        import nats

        client = await nats.connect(self.stack.nats_url, max_reconnect_attempts=0)
        try:
            await client.jetstream().purge_stream(self.stream, subject=self.subject)
        finally:
            await client.close()


def _classify(
    store: str, writes: _Writes, stored: Counter[str], fault_at: float
) -> LedgerVerdict:
    acknowledged = [write_id for write_id, _ in writes.acknowledged]
    lost = tuple(i for i in acknowledged if stored.get(i, 0) == 0)
    duplicated = tuple(i for i in acknowledged if stored.get(i, 0) > 1)
    present = len(acknowledged) - len(lost) - len(duplicated)
    after = sum(1 for _, at in writes.acknowledged if at > fault_at)
    verdict = LedgerVerdict(
        store, len(acknowledged), writes.unconfirmed, present, lost, duplicated, after
    )
    log.info("ledger %s", verdict.describe())
    return verdict
