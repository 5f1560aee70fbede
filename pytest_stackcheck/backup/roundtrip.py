"""One database's round trip: restore its archive, fingerprint both sides, probe.

The scratch database is dropped before ``round_trip`` returns, whatever
happened, so a run leaves no restored copy of production data behind.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_stackcheck.backup import restore
from pytest_stackcheck.backup.compare import Difference, compare, restore_bounds
from pytest_stackcheck.backup.fingerprint import Fingerprint, take
from pytest_stackcheck.backup.probe import ProbeResult, probe_inserts
from pytest_stackcheck.backup.scratch import ScratchServer
from pytest_stackcheck.provision.base import LiveStack


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """The outcome of restoring one archive and comparing it with live."""

    database: str
    archive: Path
    restore_s: float
    compare_s: float
    restored: Fingerprint
    live: Fingerprint
    differences: tuple[Difference, ...]
    probes: tuple[ProbeResult, ...]

    @property
    def failed_probes(self) -> list[ProbeResult]:
        return [probe for probe in self.probes if not probe.ok]


def _conninfo(stack: LiveStack, database: str) -> dict[str, Any]:
    return dict(stack.conninfo(database))


def live_fingerprint(
    stack: LiveStack, database: str, bounds: dict[str, int | None] | None = None
) -> Fingerprint:
    """Fingerprint a live database as the profile's check user."""
    import psycopg

    with psycopg.connect(**_conninfo(stack, database)) as conn:
        return take(conn, database, bounds)


def database_owner(stack: LiveStack, database: str) -> str:
    """Return the role that owns live database ``database``."""
    import psycopg

    with psycopg.connect(**_conninfo(stack, database)) as conn:
        row = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database "
            "WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return str(row[0])


def missing_extensions(server: ScratchServer, names: Iterable[str]) -> list[str]:
    """Return which of ``names`` the scratch server cannot create."""
    import psycopg

    with psycopg.connect(**server.conninfo("postgres")) as conn:
        rows = conn.execute("SELECT name FROM pg_available_extensions").fetchall()
    available = {str(row[0]) for row in rows}
    return sorted(set(names) - available)


def round_trip(
    stack: LiveStack,
    server: ScratchServer,
    archive: Path,
    database: str,
    before: Fingerprint,
    required_extensions: Iterable[str],
) -> RoundTrip:
    """Restore ``archive`` into a scratch database and compare it with live."""
    import psycopg

    doc = stack.profile.doc
    owner = database_owner(stack, database)
    try:
        restored_db = restore.restore_database(
            server,
            archive,
            database,
            owner=owner,
            live_databases=doc.postgres.databases,
            timeout_s=doc.backup.restore_timeout_s,
        )
    except psycopg.Error as exc:
        raise restore.RestoreFailed(
            f"creating the scratch database for {database} owned by {owner} "
            f"failed: {exc}; the globals dump must create role {owner}"
        ) from exc

    started = time.monotonic()
    try:
        with psycopg.connect(**server.conninfo(restored_db.target)) as conn:
            restored = take(conn, database)
            probes = probe_inserts(conn, list(restored.tables))
    finally:
        restore.drop_database(server, restored_db.target)

    live = live_fingerprint(stack, database, restore_bounds(restored))
    differences = compare(before, restored, live, required_extensions)
    return RoundTrip(
        database=database,
        archive=archive,
        restore_s=restored_db.duration_s,
        compare_s=time.monotonic() - started,
        restored=restored,
        live=live,
        differences=tuple(differences),
        probes=tuple(probes),
    )
