"""Backup archives: integrity, retention and freshness, and failing runs.

Retention and failure handling are judged on the job itself, run against a
sandbox directory seeded with aged copies of this run's archives, so the
deployment's real archives are never deleted by a check. A failing run is
made by pointing the job at a closed loopback port.
"""

from __future__ import annotations

import time

import pytest

from pytest_stackcheck.backup import archives, job
from pytest_stackcheck.provision.local import free_ports

FAILING_RUNS = 3
GOOD_ARCHIVES = 7


def _names(stack) -> list[tuple[str, str, str]]:
    """Return (label, pattern, trailer) for each database and the globals."""
    backup = stack.profile.doc.backup
    entries = [
        (
            database,
            archives.database_pattern(backup.archive_glob, database),
            archives.DATABASE_TRAILER,
        )
        for database in stack.profile.doc.postgres.databases
    ]
    entries.append(("globals", backup.globals_glob, archives.CLUSTER_TRAILER))
    return entries


def _seed(
    stack, source_dir, sandbox, ages_days: list[float]
) -> dict[str, dict[str, float]]:
    """Copy the newest good archive of each kind into ``sandbox`` at each age.

    Returns the copies' names and ages in days, per kind.
    """
    now = time.time()
    seeded: dict[str, dict[str, float]] = {}
    for label, pattern, trailer in _names(stack):
        newest = archives.newest_good(
            archives.find_archives(source_dir, pattern, trailer)
        )
        if newest is None:
            pytest.fail(f"no good {label} archive to seed the sandbox from")
        copies: dict[str, float] = {}
        try:
            for age in ages_days:
                copies[archives.aged_copy(newest.path, sandbox, age, now).name] = age
        except ValueError as exc:
            pytest.skip(f"cannot seed aged archives: {exc}")
        seeded[label] = copies
    return seeded


def _verified(directory, names) -> list[str]:
    """Return which of the files ``names`` verify as a database or globals dump."""
    return [
        name
        for name in names
        if not archives.verify(directory / name, archives.DATABASE_TRAILER)
        or not archives.verify(directory / name, archives.CLUSTER_TRAILER)
    ]


@pytest.mark.gate("backup", item="every stored archive verifies")
def test_archives_intact(stack, backup_target, backup_run, evidence):
    bad: list[str] = []
    for label, pattern, trailer in _names(stack):
        found = archives.find_archives(backup_target.archive_dir, pattern, trailer)
        evidence.record(f"{label}.archives", len(found))
        bad += [f"  {a.name}: {a.problem}" for a in found if not a.ok]
        assert found, (
            f"no {label} archive matching {pattern!r} in {backup_target.archive_dir}"
        )
    assert not bad, "archives that fail verification:\n" + "\n".join(bad)

    leftovers = archives.leftover_files(backup_target.archive_dir)
    assert not leftovers, f"temporary files in {backup_target.archive_dir}: {leftovers}"


@pytest.mark.gate("backup", item="archives readable only by their owner and group")
def test_archives_private(stack, backup_target, backup_run, evidence):
    names: list[str] = []
    for _, pattern, trailer in _names(stack):
        found = archives.find_archives(backup_target.archive_dir, pattern, trailer)
        names += [archive.name for archive in found]
    evidence.record("archives.checked", len(names))

    problems = archives.open_modes(backup_target.archive_dir, names)
    shown = "\n".join(f"  {problem}" for problem in problems)
    assert not problems, (
        f"archives in {backup_target.archive_dir} are open to every user on the "
        f"host; they contain every row and the roles' password hashes:\n{shown}"
    )


@pytest.mark.gate("backup", item="retention window applied")
def test_retention_applied(stack, backup_target, backup_run, evidence):
    assert backup_run.ok, "the backup job failed, so it applied no retention"
    days = stack.profile.doc.backup.retention_days
    for label, pattern, trailer in _names(stack):
        found = archives.find_archives(backup_target.archive_dir, pattern, trailer)
        finding = archives.judge_retention(found, days)
        evidence.record(f"{label}.good_archives", finding.kept_good)
        evidence.record(f"{label}.oldest_good_age", finding.oldest_good_days, "days")
        assert not finding.expired, (
            f"{label}: archives older than backup.retention_days = {days} plus "
            f"{archives.RETENTION_GRACE_DAYS:g} day remain after a successful "
            f"run: {list(finding.expired)}"
        )


@pytest.mark.gate("backup", item="retention deletes only expired archives")
def test_retention_policy(stack, backup_target, backup_run, sandbox_dir, evidence):
    assert backup_run.ok, "the backup job failed, so there is nothing to seed"
    days = stack.profile.doc.backup.retention_days
    # One archive a day, and a second one on each day inside the window, as
    # after manual runs. A job that keeps the newest N archives instead of N
    # days then deletes archives that are still inside the window.
    ages = [age + 0.5 for age in range(days + 3)]
    ages += [age + 0.25 for age in range(days)]
    seeded = _seed(stack, backup_target.archive_dir, sandbox_dir, ages)

    run = job.run_job(backup_target.elsewhere(sandbox_dir))
    assert run.ok, (
        f"the job failed in the sandbox {sandbox_dir} (exit status "
        f"{run.exit_status}):\n{run.output_tail()}"
    )
    expected_kept = sum(1 for age in ages if age < days)
    for label, pattern, trailer in _names(stack):
        found = archives.find_archives(sandbox_dir, pattern, trailer)
        good = [a for a in found if a.ok]
        evidence.record(f"{label}.kept", len(good))
        finding = archives.judge_retention(found, days)
        assert not finding.expired, (
            f"{label}: archives older than {days} days plus "
            f"{archives.RETENTION_GRACE_DAYS:g} day were kept: "
            f"{list(finding.expired)}"
        )
        young = {name for name, age in seeded[label].items() if age < days}
        deleted = sorted(young - job.list_files(sandbox_dir))
        assert not deleted, (
            f"{label}: the job deleted {len(deleted)} archive(s) younger than "
            f"backup.retention_days = {days}: {deleted}; rotate by age (as find "
            "-mtime does), not by keeping a count of files, because extra runs "
            "then push archives out of the window early"
        )
        # Archives within the grace day may go or stay.
        assert len(good) >= expected_kept + 1, (
            f"{label}: expected the {expected_kept} archives younger than {days} "
            f"days plus the new one, found {len(good)}: {[a.name for a in found]}"
        )


@pytest.mark.gate("backup", item="failing job keeps good backups and writes nothing")
def test_failing_job_keeps_backups(
    stack, backup_target, backup_run, sandbox_dir, evidence
):
    assert backup_run.ok, "the backup job failed, so there is nothing to seed"
    # Ages straddle the retention window, so a job that rotates before it
    # has verified its new dump deletes the oldest ones.
    days = stack.profile.doc.backup.retention_days
    ages = [days * (index + 1) / GOOD_ARCHIVES + 0.5 for index in range(GOOD_ARCHIVES)]
    _seed(stack, backup_target.archive_dir, sandbox_dir, ages)
    seeded = job.list_files(sandbox_dir)

    closed_port = free_ports(1)[0]
    failing = backup_target.elsewhere(sandbox_dir, host="127.0.0.1", port=closed_port)
    for attempt in range(1, FAILING_RUNS + 1):
        run = job.run_job(failing)
        evidence.record(f"failing_run_{attempt}.exit_status", run.exit_status)
        written = _verified(sandbox_dir, run.new_files) if run.ok else []
        assert not written, (
            f"run {attempt} of the job was aimed at a closed port (PGHOST="
            f"127.0.0.1, PGPORT={closed_port}) yet wrote verified archives "
            f"{written}: the job ignores PGHOST and PGPORT and connects to a "
            "server of its own choosing, so the gate can neither aim it at the "
            "profile's server nor see it fail; take the server from the libpq "
            "variables"
        )
        assert not run.ok, (
            f"run {attempt} of the job against a closed port (127.0.0.1:"
            f"{closed_port}) exited 0; a failed dump must fail the job. Its "
            f"output ends with:\n{run.output_tail()}"
        )
        assert not run.new_files, (
            f"run {attempt} failed but left new files {list(run.new_files)}; the "
            "job must write under a temporary name and rename only a verified "
            "archive"
        )
        assert not run.removed_files, (
            f"run {attempt} failed but deleted {list(run.removed_files)}; a "
            "failing job must not rotate good backups away"
        )

    remaining = job.list_files(sandbox_dir)
    assert remaining == seeded, (
        f"after {FAILING_RUNS} failing runs, files changed: missing "
        f"{sorted(seeded - remaining)}, new {sorted(remaining - seeded)}"
    )
    for label, pattern, trailer in _names(stack):
        good = [
            a for a in archives.find_archives(sandbox_dir, pattern, trailer) if a.ok
        ]
        evidence.record(f"{label}.good_after_failures", len(good))
        assert len(good) == GOOD_ARCHIVES, (
            f"{label}: {len(good)} good archives after {FAILING_RUNS} failing "
            f"runs, expected {GOOD_ARCHIVES}"
        )


@pytest.mark.gate("backup", item="newest backup younger than the maximum age")
def test_backup_fresh(
    stack, backup_target, backup_before, backup_run, database_name, evidence
):
    backup = stack.profile.doc.backup
    if job.local_workdir(stack) is not None:
        # A stack this run started has only the archives of this run's job.
        assert backup_run.ok, "the backup job failed on a fresh stack"
        pattern = archives.database_pattern(backup.archive_glob, database_name)
        found = archives.find_archives(
            backup_target.archive_dir, pattern, archives.DATABASE_TRAILER
        )
        evidence.record(f"{database_name}.judged", "after this run's job")
    else:
        # Under pytest-xdist another worker's job may already have run, so
        # only archives older than this run count.
        found = [
            archive
            for archive in backup_before.archives[database_name]
            if archive.mtime < stack.started_at
        ]
        evidence.record(f"{database_name}.judged", "archives from before this run")

    newest = archives.newest_good(found)
    assert newest is not None, (
        f"database {database_name} has no archive that verifies in "
        f"{backup_target.archive_dir}"
    )
    age = newest.age_hours(time.time())
    evidence.record(f"{database_name}.newest_backup_age", age, "h")
    assert age <= backup.max_age_hours, (
        f"database {database_name}: the newest good archive {newest.name} is "
        f"{age:.1f} h old, older than backup.max_age_hours = "
        f"{backup.max_age_hours}; check that the backup job runs and succeeds"
    )
