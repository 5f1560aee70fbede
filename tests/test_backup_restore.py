"""Restores into a scratch server, the guard, and the content comparison.

These run against a real local stack and a real scratch PostgreSQL server, and
break the restored copy on purpose to show that each kind of loss is found.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from helpers import REPO, local_profile

from pytest_stackcheck.backup import archives, job, restore
from pytest_stackcheck.backup.compare import compare, restore_bounds
from pytest_stackcheck.backup.fingerprint import take
from pytest_stackcheck.backup.probe import probe_inserts
from pytest_stackcheck.backup.roundtrip import live_fingerprint, round_trip
from pytest_stackcheck.backup.scratch import (
    ScratchServer,
    scratch_bindir,
    unprivileged_user,
)
from pytest_stackcheck.profile import load_profile
from pytest_stackcheck.provision.base import LiveStack
from pytest_stackcheck.provision.local import LocalProvisioner

DATABASE = "singularity"
CASES = REPO / "fixtures" / "backup" / "cases"
OWNER_ACL = "stackcheck_app=arwdDxt/stackcheck_app"
LIVE = ("singularity", "centralcloud", "genesis")


@pytest.fixture(scope="module")
def live_stack(tmp_path_factory) -> Iterator[LiveStack]:
    """A local stack for this module's restores."""
    provisioner = LocalProvisioner()
    profile = load_profile(local_profile(tmp_path_factory.mktemp("profile")))
    stack = provisioner.up(profile)
    try:
        yield stack
    finally:
        provisioner.down(stack)


@pytest.fixture(scope="module")
def backup(live_stack) -> Iterator[tuple[dict[str, object], Path]]:
    """Live fingerprints taken before one job run, and the run's directory."""
    directory = Path(tempfile.mkdtemp(prefix="stackcheck-backup-test-"))
    try:
        before = {name: live_fingerprint(live_stack, name) for name in LIVE}
        run = job.run_job(job.job_target(live_stack).elsewhere(directory))
        assert run.ok, run.output_tail()
        yield before, directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _archive(directory: Path, name: str) -> Path:
    trailer = archives.CLUSTER_TRAILER if name == "globals" else None
    found = archives.find_archives(
        directory, f"{name}-*.sql.gz", trailer or archives.DATABASE_TRAILER
    )
    assert found, f"no {name} archive in {directory}"
    return found[0].path


def _server() -> ScratchServer:
    return ScratchServer(scratch_bindir(""), unprivileged_user("nobody"))


@pytest.fixture
def server(backup) -> Iterator[ScratchServer]:
    """A scratch server holding the roles of the backup's globals dump."""
    _, directory = backup
    scratch = _server()
    scratch.start()
    try:
        restore.apply_globals(scratch, _archive(directory, "globals"), 60.0)
        yield scratch
    finally:
        scratch.stop()


@pytest.fixture
def restored(server, backup) -> Iterator[psycopg.Connection]:
    """A connection to a restored scratch copy of singularity, dropped after."""
    _, directory = backup
    result = restore.restore_database(
        server,
        _archive(directory, DATABASE),
        DATABASE,
        owner="stackcheck_app",
        live_databases=LIVE,
        timeout_s=60.0,
    )
    try:
        with psycopg.connect(**server.conninfo(result.target)) as conn:
            yield conn
    finally:
        restore.drop_database(server, result.target)


@pytest.mark.parametrize("target", LIVE)
def test_guard_rejects_live_name(target):
    with pytest.raises(restore.RestoreRefused, match="is a live database"):
        restore.guard_target(target, LIVE, set())


def test_guard_rejects_unprefixed_name():
    with pytest.raises(restore.RestoreRefused, match="does not start with"):
        restore.guard_target("copy_of_genesis", LIVE, set())


def test_guard_accepts_new_scratch_name():
    restore.guard_target(restore.scratch_name("genesis"), LIVE, {"postgres"})


def test_drop_rejects_live_name():
    with pytest.raises(restore.RestoreRefused, match="refusing to drop"):
        restore.drop_database(_server(), "singularity")


def test_restore_rejects_existing_target(server, backup):
    _, directory = backup
    target = restore.scratch_name(DATABASE)
    with psycopg.connect(**server.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {target}")
    with psycopg.connect(**server.conninfo(target), autocommit=True) as conn:
        conn.execute("CREATE TABLE marker (note text)")

    with pytest.raises(restore.RestoreRefused, match="already exists"):
        restore.restore_database(
            server,
            _archive(directory, DATABASE),
            DATABASE,
            owner="stackcheck_app",
            live_databases=LIVE,
            timeout_s=60.0,
        )

    with psycopg.connect(**server.conninfo(target)) as conn:
        tables = conn.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'r' "
            "AND relnamespace = 'public'::regnamespace"
        ).fetchall()
    assert tables == [("marker",)]


def test_round_trip_with_live_writes(live_stack, server, backup):
    before, directory = backup
    with psycopg.connect(**live_stack.conninfo(DATABASE), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO events (kind) SELECT 'after the dump' "
            "FROM generate_series(1, 5)"
        )

    trip = round_trip(
        live_stack,
        server,
        _archive(directory, DATABASE),
        DATABASE,
        before[DATABASE],
        ["pg_trgm"],
    )

    assert trip.differences == ()
    assert trip.failed_probes == []
    assert len(trip.probes) == 3
    events = trip.live.tables["public.events"]
    assert events.bound == trip.restored.tables["public.events"].max_key
    assert "pg_trgm" in trip.restored.extensions
    assert trip.restored.extensions == trip.live.extensions
    assert restore.existing_databases(server) == {"postgres", "template0", "template1"}


def test_restore_error_rolls_back_and_drops(server, tmp_path):
    archive = tmp_path / "broken.sql.gz"
    with gzip.open(archive, "wt") as stream:
        stream.write("CREATE TABLE kept_if_no_stop (x int);\n")
        stream.write("SELECT no_such_function();\n")
        stream.write("--\n" + archives.DATABASE_TRAILER + "\n--\n")

    with pytest.raises(restore.RestoreFailed, match="no_such_function"):
        restore.restore_database(
            server,
            archive,
            DATABASE,
            owner="stackcheck_app",
            live_databases=LIVE,
            timeout_s=60.0,
        )
    assert restore.scratch_name(DATABASE) not in restore.existing_databases(server)


def test_restore_without_roles_fails(live_stack, backup):
    before, directory = backup
    bare = _server()
    bare.start()
    try:
        with pytest.raises(restore.RestoreFailed, match="stackcheck_app"):
            round_trip(
                live_stack,
                bare,
                _archive(directory, DATABASE),
                DATABASE,
                before[DATABASE],
                ["pg_trgm"],
            )
    finally:
        bare.stop()


def test_sequence_behind_table_found(live_stack, backup, restored):
    before, _ = backup
    restored.execute("SELECT setval('public.events_id_seq', 1)")
    restored.commit()
    fingerprint = take(restored, DATABASE)
    probes = {
        probe.table: probe for probe in probe_inserts(restored, ["public.events"])
    }
    live = live_fingerprint(live_stack, DATABASE, restore_bounds(fingerprint))

    found = compare(before[DATABASE], fingerprint, live)

    assert not probes["public.events"].ok
    assert "duplicate key" in probes["public.events"].error
    rendered = [difference.render() for difference in found]
    assert any("public.events_id_seq" in line and "behind" in line for line in rendered)


def test_changed_row_found(live_stack, backup, restored):
    before, _ = backup
    restored.execute("UPDATE documents SET title = 'changed' WHERE id = 1")
    restored.commit()
    fingerprint = take(restored, DATABASE)
    live = live_fingerprint(live_stack, DATABASE, restore_bounds(fingerprint))

    rendered = [d.render() for d in compare(before[DATABASE], fingerprint, live)]

    assert rendered == [
        "table public.documents: same row count (200) but the content checksum "
        "differs (rows with id <= 200)"
    ]


def test_missing_tail_found(live_stack, restored):
    restored.execute("DELETE FROM documents WHERE id > 190")
    restored.commit()
    fingerprint = take(restored, DATABASE)
    before = live_fingerprint(live_stack, DATABASE)
    live = live_fingerprint(live_stack, DATABASE, restore_bounds(fingerprint))

    rendered = [d.render() for d in compare(before, fingerprint, live)]

    assert (
        "table public.documents: the restore ends at id = 190, but 200 existed "
        "before the backup started"
    ) in rendered


def test_missing_extension_found(live_stack, backup, restored):
    before, _ = backup
    restored.execute("DROP INDEX documents_title_trgm")
    restored.execute("DROP EXTENSION pg_trgm")
    restored.commit()
    fingerprint = take(restored, DATABASE)
    live = live_fingerprint(live_stack, DATABASE, restore_bounds(fingerprint))

    rendered = [d.render() for d in compare(before[DATABASE], fingerprint, live)]

    assert any(line.startswith("extension pg_trgm: version") for line in rendered)


def test_lost_grant_found(live_stack, server):
    """A dump made with pg_dump --no-acl drops a live GRANT; the compare names it."""
    directory = Path(tempfile.mkdtemp(prefix="stackcheck-backup-test-"))
    with psycopg.connect(**live_stack.conninfo(DATABASE), autocommit=True) as conn:
        conn.execute("GRANT SELECT ON documents TO PUBLIC")
        try:
            before = live_fingerprint(live_stack, DATABASE)
            target = job.job_target(live_stack).elsewhere(directory)
            run = job.run_job(replace(target, script=CASES / "no-acl.sh"))
            assert run.ok, run.output_tail()
            trip = round_trip(
                live_stack,
                server,
                _archive(directory, DATABASE),
                DATABASE,
                before,
                ["pg_trgm"],
            )
        finally:
            conn.execute("REVOKE SELECT ON documents FROM PUBLIC")
            shutil.rmtree(directory, ignore_errors=True)

    rendered = [difference.render() for difference in trip.differences]
    assert rendered == [
        f"privileges table public.documents: live grants =r/stackcheck_app, "
        f"{OWNER_ACL}, restored grants {OWNER_ACL}; a dump made with --no-acl "
        "(-x) leaves out GRANT and REVOKE"
    ]


def test_default_acl_read_as_explicit(live_stack):
    """An ACL left explicit by GRANT then REVOKE reads as the NULL default."""
    with psycopg.connect(**live_stack.conninfo(DATABASE), autocommit=True) as conn:
        conn.execute("GRANT SELECT ON events TO PUBLIC")
        conn.execute("REVOKE SELECT ON events FROM PUBLIC")
        explicit = conn.execute(
            "SELECT relacl IS NOT NULL FROM pg_class WHERE relname = 'events'"
        ).fetchone()
    fingerprint = live_fingerprint(live_stack, DATABASE)

    assert explicit == (True,)
    assert fingerprint.privileges["table public.events"] == OWNER_ACL
    assert fingerprint.privileges["table public.documents"] == OWNER_ACL
