"""PostgreSQL for the local stack: a cached initdb template and the app schema.

``initdb`` is the slowest step of a cold start, so its output is kept once per
PostgreSQL version in the user's cache directory and copied for each stack.
The copy is owned by the unprivileged user that runs the server, because
PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from pytest_stackcheck.errors import ProvisionError
from pytest_stackcheck.profile import PostgresSpec

log = logging.getLogger("pytest_stackcheck")

SUPERUSER = "postgres"

# Migration versions the reference deployment has applied, oldest first.
MIGRATIONS = (20240101000000, 20240215120000, 20240401090000)

# Tables of each database, and the rows seeded into them. Every database gets
# the same shape so the suites can compare them without special cases.
SCHEMA_SQL = """
CREATE TABLE {migrations} (
    version bigint PRIMARY KEY,
    inserted_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE events (
    id bigserial PRIMARY KEY,
    kind text NOT NULL,
    payload jsonb NOT NULL DEFAULT '{{}}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE documents (
    id bigserial PRIMARY KEY,
    title text NOT NULL,
    body text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX documents_title_trgm ON documents USING gin (title gin_trgm_ops);
INSERT INTO documents (title, body)
SELECT 'document ' || n, repeat(md5(n::text), 4) FROM generate_series(1, 200) AS n;
INSERT INTO events (kind, payload)
SELECT 'seed', jsonb_build_object('n', n) FROM generate_series(1, 50) AS n;
"""


def find_bindir() -> Path:
    """Return the directory holding initdb and postgres, or raise."""
    found = shutil.which("pg_config")
    if found:
        result = subprocess.run(
            [found, "--bindir"], capture_output=True, text=True, check=False
        )
        candidate = Path(result.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate

    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    if versions:
        return versions[0].parent
    if shutil.which("initdb"):
        return Path(shutil.which("initdb") or "").resolve().parent
    raise ProvisionError(
        "PostgreSQL server binaries (initdb, postgres) were not found; install "
        "them with: apt-get install postgresql postgresql-contrib"
    )


def server_version(bindir: Path) -> str:
    """Return the server's version string, for example '15.18'."""
    result = subprocess.run(
        [str(bindir / "postgres"), "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"\(PostgreSQL\) (\S+)", result.stdout)
    if match is None:
        raise ProvisionError(
            f"unrecognised postgres --version output: {result.stdout!r}"
        )
    return match.group(1)


def cache_dir() -> Path:
    """Return where initdb templates are kept between runs."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pytest-stackcheck"


def make_data_dir(bindir: Path, target: Path, run_as: str | None) -> float:
    """Create a fresh cluster at ``target``; return the seconds initdb took.

    The cluster trusts local socket connections (the socket directory is
    private to the stack) and requires SCRAM passwords over TCP.
    """
    version = server_version(bindir)
    template = cache_dir() / f"initdb-{version}"
    elapsed = 0.0

    if not (template / "PG_VERSION").exists():
        elapsed = _run_initdb(bindir, template, run_as)

    shutil.copytree(template, target, symlinks=True)
    if run_as:
        _chown_tree(target, run_as)
    target.chmod(0o700)
    return elapsed


def _run_initdb(bindir: Path, template: Path, run_as: str | None) -> float:
    started = time.monotonic()
    # initdb runs as the unprivileged user, who cannot enter root's cache
    # directory, so it writes to a private temporary directory first.
    scratch = Path(tempfile.mkdtemp(prefix="stackcheck-initdb-"))
    scratch.chmod(0o755)
    staging = scratch / "data"
    staging.mkdir()
    if run_as:
        _chown_tree(staging, run_as)

    result = subprocess.run(
        [
            str(bindir / "initdb"),
            "-D",
            str(staging),
            "-U",
            SUPERUSER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ],
        capture_output=True,
        text=True,
        check=False,
        user=run_as,
        cwd="/",
    )
    if result.returncode != 0:
        shutil.rmtree(scratch, ignore_errors=True)
        raise ProvisionError(
            f"initdb failed with exit status {result.returncode}: "
            f"{result.stderr.strip()[-500:]}"
        )

    # Another process may have filled the cache meanwhile; either copy is good.
    template.parent.mkdir(parents=True, exist_ok=True)
    partial = template.with_name(f"{template.name}.{os.getpid()}.partial")
    shutil.copytree(staging, partial, symlinks=True)
    try:
        partial.rename(template)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(scratch, ignore_errors=True)
    elapsed = time.monotonic() - started
    log.info("initdb template created at %s in %.2f s", template, elapsed)
    return elapsed


def _chown_tree(root: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    os.chown(root, entry.pw_uid, entry.pw_gid)
    for directory, subdirs, files in os.walk(root):
        for name in subdirs + files:
            os.chown(
                os.path.join(directory, name),
                entry.pw_uid,
                entry.pw_gid,
                follow_symlinks=False,
            )


def setup_databases(
    socket_dir: Path, port: int, spec: PostgresSpec, password: str
) -> None:
    """Create the owner role, the databases, their extensions and schema."""
    import psycopg
    from psycopg import sql

    def connect(dbname: str) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=str(socket_dir),
            port=port,
            user=SUPERUSER,
            dbname=dbname,
            autocommit=True,
        )

    with connect("postgres") as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(spec.owner), sql.Literal(password)
            )
        )
        if spec.user != spec.owner:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(spec.user), sql.Literal(password)
                )
            )
        for database in spec.databases:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(database), sql.Identifier(spec.owner)
                )
            )

    for database in spec.databases:
        with connect(database) as conn:
            for extension in spec.extensions:
                conn.execute(
                    sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(
                        sql.Identifier(extension)
                    )
                )
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(spec.owner)))
            with conn.transaction():
                schema = SCHEMA_SQL.format(migrations=spec.migrations_table)
                conn.execute(schema.encode())
                for version in MIGRATIONS:
                    conn.execute(
                        sql.SQL("INSERT INTO {} (version) VALUES (%s)").format(
                            sql.Identifier(spec.migrations_table)
                        ),
                        (version,),
                    )
            if spec.user != spec.owner:
                conn.execute(
                    sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(
                        sql.Identifier(spec.user)
                    )
                )
