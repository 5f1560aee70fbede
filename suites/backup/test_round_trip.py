"""Backup round trip: the job succeeds, and every archive restores to live's content.

Each database's newest archive is restored into a scratch database on a
private scratch server with errors stopping the restore, then compared with
the live database: extensions and versions, owners, per-table row counts and
content checksums, and sequence positions. One insert per table, rolled back,
must succeed. The scratch database is dropped afterwards.
"""

from __future__ import annotations

import fnmatch

import pytest

from pytest_stackcheck.backup import archives, restore
from pytest_stackcheck.backup.restore import RestoreFailed
from pytest_stackcheck.backup.roundtrip import missing_extensions, round_trip


@pytest.mark.gate("backup", item="backup job writes a verified archive per database")
def test_backup_job_succeeds(stack, backup_target, backup_run, evidence):
    evidence.record("job.duration", backup_run.duration_s, "s")
    evidence.record("job.exit_status", backup_run.exit_status)
    evidence.record("job.script", str(backup_target.script))
    assert backup_run.ok, (
        f"backup job {backup_target.script} exited with {backup_run.exit_status}; "
        f"its output ends with:\n{backup_run.output_tail()}"
    )

    backup = stack.profile.doc.backup
    for database in stack.profile.doc.postgres.databases:
        pattern = archives.database_pattern(backup.archive_glob, database)
        written = [
            name for name in backup_run.new_files if fnmatch.fnmatchcase(name, pattern)
        ]
        assert written, (
            f"the job exited 0 but wrote no archive matching {pattern!r} for "
            f"database {database}; new files: {list(backup_run.new_files)}"
        )
        for name in written:
            path = backup_target.archive_dir / name
            problem = archives.verify(path, archives.DATABASE_TRAILER)
            assert not problem, f"new archive {path} is not good: {problem}"
            evidence.record(f"{database}.archive_size", path.stat().st_size, "bytes")

    for name in backup_run.new_files:
        problem = archives.stamp_problem(
            name, backup_run.started_at, backup_run.finished_at
        )
        assert not problem, problem

    leftovers = archives.leftover_files(backup_target.archive_dir)
    assert not leftovers, (
        f"the job left temporary files in {backup_target.archive_dir}: {leftovers}"
    )


@pytest.mark.gate("backup", item="roles restored from the globals-only dump")
def test_globals_restore_roles(stack, restore_server, evidence):
    assert not restore_server.globals_error, restore_server.globals_error
    evidence.record("globals.roles", len(restore_server.roles))

    owners = {stack.profile.doc.postgres.owner}
    for database in stack.profile.doc.postgres.databases:
        owners.add(_database_owner(stack, database))
    archive = restore_server.globals_archive.name
    missing = sorted(owners - set(restore_server.roles))
    assert not missing, (
        f"the globals dump {archive} does not create roles {missing}, which own "
        "live databases; restored objects would lose their owners"
    )

    postgres = stack.profile.doc.postgres
    if postgres.password_env:
        bare = restore.roles_without_password(restore_server.server, [postgres.user])
        assert not bare, (
            f"the globals dump {archive} creates role(s) {bare} without a "
            f"password, but the stack logs in as {postgres.user} with the "
            f"password in {postgres.password_env}, so after a restore onto a new "
            "server it cannot log in; run pg_dumpall --globals-only as a "
            "superuser and without --no-role-passwords"
        )


@pytest.mark.gate("backup", item="archive restores and matches the live database")
def test_round_trip(
    stack,
    backup_target,
    backup_before,
    backup_run,
    restore_server,
    database_name,
    evidence,
):
    assert backup_run.ok, (
        f"the backup job failed (exit status {backup_run.exit_status}), so "
        f"{database_name} has no archive of this run to restore"
    )
    assert not restore_server.globals_error, restore_server.globals_error

    doc = stack.profile.doc
    required = doc.backup.required_extensions or doc.postgres.extensions
    before = backup_before.fingerprints[database_name]
    lacking = missing_extensions(
        restore_server.server, set(required) | set(before.extensions)
    )
    assert not lacking, (
        f"the restore server ({restore_server.server.bindir}) lacks extension(s) "
        f"{', '.join(lacking)} that {database_name} needs; install them there "
        "(for example the postgresql-contrib package) before relying on restores"
    )

    pattern = archives.database_pattern(doc.backup.archive_glob, database_name)
    found = archives.find_archives(
        backup_target.archive_dir, pattern, archives.DATABASE_TRAILER
    )
    newest = archives.newest_good(found)
    assert newest is not None, (
        f"no archive matching {pattern!r} verifies in {backup_target.archive_dir}"
    )
    evidence.record(f"{database_name}.archive", newest.name)

    failure = ""
    try:
        trip = round_trip(
            stack, restore_server.server, newest.path, database_name, before, required
        )
    except RestoreFailed as exc:
        failure = str(exc)
    # Failing outside the except clause keeps the message from being shown
    # twice, as the exception's context and as the failure.
    if failure:
        pytest.fail(f"database {database_name}: {failure}", pytrace=False)

    matched = [
        name
        for name, table in trip.restored.tables.items()
        if name in trip.live.tables
        and table.rows == trip.live.tables[name].rows
        and table.checksum == trip.live.tables[name].checksum
    ]
    evidence.record(f"{database_name}.restore_time", trip.restore_s, "s")
    evidence.record(f"{database_name}.rows_restored", trip.restored.total_rows)
    evidence.record(f"{database_name}.tables", len(trip.restored.tables))
    evidence.record(f"{database_name}.row_counts_and_checksums_matched", len(matched))
    evidence.record(f"{database_name}.sequences", len(trip.restored.sequences))
    for name, version in sorted(trip.restored.extensions.items()):
        evidence.record(f"{database_name}.extension.{name}", version)

    shown = "\n".join(f"  {d.render()}" for d in trip.differences)
    assert not trip.differences, (
        f"database {database_name}: the restore of {newest.name} differs from "
        f"live:\n{shown}"
    )
    failed = "\n".join(f"  {p.table}: {p.error}" for p in trip.failed_probes)
    assert not trip.failed_probes, (
        f"database {database_name}: after the restore, inserting one row "
        f"failed:\n{failed}"
    )


def _database_owner(stack, database: str) -> str:
    from pytest_stackcheck.backup.roundtrip import database_owner

    return database_owner(stack, database)
