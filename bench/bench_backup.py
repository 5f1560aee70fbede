"""Benchmark the backup round trip at growing database sizes.

Starts the embedded local stack, tops each database up to ROWS rows (split
between ``documents`` and ``events``), then times the parts of one round
trip: the live fingerprint taken before the job, the backup job for all
databases, and per database the restore into a scratch server and the
comparison with live. Writes a Markdown table to stdout.

    python bench/bench_backup.py --rows 10000 100000 1000000
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pytest_stackcheck.backup import archives, job, restore  # noqa: E402
from pytest_stackcheck.backup.roundtrip import (  # noqa: E402
    live_fingerprint,
    round_trip,
)
from pytest_stackcheck.backup.scratch import (  # noqa: E402
    ScratchServer,
    scratch_bindir,
    unprivileged_user,
)
from pytest_stackcheck.profile import SHIPPED_STACKS, load_profile  # noqa: E402
from pytest_stackcheck.provision.base import LiveStack  # noqa: E402
from pytest_stackcheck.provision.local import LocalProvisioner  # noqa: E402

log = logging.getLogger("pytest_stackcheck")


@dataclass(frozen=True, slots=True)
class Measurement:
    """Seconds spent in each part of one round trip of every database."""

    rows_per_database: int
    archive_bytes: int
    before_s: float
    job_s: float
    restore_s: float
    compare_s: float

    @property
    def total_s(self) -> float:
        return self.before_s + self.job_s + self.restore_s + self.compare_s


def top_up(stack: LiveStack, database: str, rows: int) -> None:
    """Insert rows until ``documents`` and ``events`` contain ``rows`` together."""
    import psycopg

    with psycopg.connect(**dict(stack.conninfo(database)), autocommit=True) as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM events)"
        ).fetchone()
        assert counts is not None
        documents, events = int(counts[0]), int(counts[1])
        missing_documents = max(0, rows // 2 - documents)
        missing_events = max(0, rows - rows // 2 - events)
        conn.execute(
            "INSERT INTO documents (title, body) "
            "SELECT 'document ' || n, repeat(md5(n::text), 4) "
            "FROM generate_series(1, %s) AS n",
            (missing_documents,),
        )
        conn.execute(
            "INSERT INTO events (kind, payload) "
            "SELECT 'bench', jsonb_build_object('n', n, 'tag', md5(n::text)) "
            "FROM generate_series(1, %s) AS n",
            (missing_events,),
        )
        conn.execute("VACUUM ANALYZE documents")
        conn.execute("VACUUM ANALYZE events")


def measure(
    stack: LiveStack, server: ScratchServer, target: job.JobTarget, rows: int
) -> Measurement:
    """Run and time one round trip of every database at ``rows`` rows each."""
    doc = stack.profile.doc
    for database in doc.postgres.databases:
        top_up(stack, database, rows)

    started = time.monotonic()
    before = {name: live_fingerprint(stack, name) for name in doc.postgres.databases}
    before_s = time.monotonic() - started

    run = job.run_job(target)
    if not run.ok:
        raise RuntimeError(f"backup job failed:\n{run.output_tail()}")

    globals_archive = archives.newest_good(
        archives.find_archives(
            target.archive_dir, doc.backup.globals_glob, archives.CLUSTER_TRAILER
        )
    )
    assert globals_archive is not None
    restore.apply_globals(server, globals_archive.path, doc.backup.restore_timeout_s)

    restore_s = compare_s = 0.0
    archive_bytes = 0
    for database in doc.postgres.databases:
        pattern = archives.database_pattern(doc.backup.archive_glob, database)
        newest = archives.newest_good(
            archives.find_archives(
                target.archive_dir, pattern, archives.DATABASE_TRAILER
            )
        )
        assert newest is not None
        archive_bytes += newest.size_bytes
        trip = round_trip(
            stack, server, newest.path, database, before[database], ["pg_trgm"]
        )
        if trip.differences or trip.failed_probes:
            raise RuntimeError(f"round trip of {database} differs: {trip}")
        restore_s += trip.restore_s
        compare_s += trip.compare_s

    for path in target.archive_dir.iterdir():
        path.unlink()
    return Measurement(
        rows, archive_bytes, before_s, run.duration_s, restore_s, compare_s
    )


def render(results: list[Measurement]) -> str:
    """Return the measurements as a Markdown table."""
    lines = [
        "| rows per database | archives (MB) | fingerprint before (s) | job (s) "
        "| restore (s) | compare (s) | total (s) | total vs previous size |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    previous: Measurement | None = None
    for result in results:
        ratio = ""
        if previous is not None:
            growth = result.rows_per_database / previous.rows_per_database
            ratio = f"{result.total_s / previous.total_s:.1f}x for {growth:.0f}x rows"
        lines.append(
            f"| {result.rows_per_database:,} | {result.archive_bytes / 1e6:.1f} "
            f"| {result.before_s:.2f} | {result.job_s:.2f} | {result.restore_s:.2f} "
            f"| {result.compare_s:.2f} | {result.total_s:.2f} | {ratio} |"
        )
        previous = result
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows",
        type=int,
        nargs="+",
        default=[10_000, 100_000, 1_000_000],
        help="rows per database for each measurement (default: %(default)s)",
    )
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    provisioner = LocalProvisioner()
    stack = provisioner.up(load_profile(SHIPPED_STACKS / "local.toml"))
    doc = stack.profile.doc
    server = ScratchServer(
        scratch_bindir(doc.backup.scratch_bindir), unprivileged_user(doc.local.run_as)
    )
    results: list[Measurement] = []
    try:
        server.start()
        target = job.job_target(stack)
        for rows in sorted(arguments.rows):
            results.append(measure(stack, server, target, rows))
            sys.stderr.write(
                f"{rows:,} rows per database: {results[-1].total_s:.2f} s\n"
            )
    finally:
        server.stop()
        provisioner.down(stack)

    sys.stdout.write(f"machine: {platform.node()}, {platform.platform()}\n\n")
    sys.stdout.write(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
