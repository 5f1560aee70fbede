"""PostgreSQL for the local stack: a cached initdb template and the app schema.

``initdb`` is the slowest step of a cold start, so its output is kept once per
PostgreSQL version in the user's cache directory and copied for each stack.
The copy is owned by the unprivileged user that runs the server, because
PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pytest_stackcheck.errors import ProvisionError
from pytest_stackcheck.profile import PostgresSpec

log = logging.getLogger("pytest_stackcheck")

SUPERUSER = "postgres"
TEMPLATE_TIMEOUT_S = 60.0

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


def template_key(version: str, spec: PostgresSpec) -> str:
    """Return the cache key of a ready cluster: everything that shapes its content."""
    shape = {
        "version": version,
        "databases": spec.databases,
        "owner": spec.owner,
        "user": spec.user,
        "extensions": spec.extensions,
        "migrations_table": spec.migrations_table,
        "schema": SCHEMA_SQL,
        "migrations": MIGRATIONS,
    }
    digest = hashlib.sha256(json.dumps(shape, sort_keys=True).encode())
    return f"cluster-{version}-{digest.hexdigest()[:16]}"


def make_data_dir(
    bindir: Path, target: Path, run_as: str | None, spec: PostgresSpec
) -> float:
    """Create a ready cluster at ``target``; return the seconds spent building one.

    The cached template already contains the roles, databases, extensions, schema
    and seed rows, so a stack only copies it and sets fresh passwords with
    ``set_passwords``. The template is built once per PostgreSQL version and
    database shape; the returned time is 0.0 when the cache had it.
    """
    template = cache_dir() / template_key(server_version(bindir), spec)
    elapsed = 0.0

    if not (template / "PG_VERSION").exists():
        elapsed = _build_template(bindir, template, run_as, spec)

    _copy_tree(template, target)
    if run_as and target.stat().st_uid != pwd.getpwnam(run_as).pw_uid:
        chown_tree(target, run_as)
    target.chmod(0o700)
    return elapsed


def _copy_tree(source: Path, target: Path) -> None:
    # cp keeps owners and is about twice as fast as shutil.copytree here.
    if shutil.which("cp"):
        subprocess.run(["cp", "-a", str(source), str(target)], check=True)
    else:
        shutil.copytree(source, target, symlinks=True)


def _build_template(
    bindir: Path, template: Path, run_as: str | None, spec: PostgresSpec
) -> float:
    started = time.monotonic()
    # The server runs as the unprivileged user, who cannot enter root's cache
    # directory, so the cluster is built in a private temporary directory.
    scratch = Path(tempfile.mkdtemp(prefix="stackcheck-initdb-"))
    scratch.chmod(0o755)
    staging = scratch / "data"
    staging.mkdir()
    if run_as:
        chown_tree(scratch, run_as)

    try:
        _run(
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
                # 1 MiB WAL segments instead of 16 keep every copy small.
                "--wal-segsize=1",
            ],
            run_as,
            "initdb",
        )
        _fill_cluster(bindir, scratch, staging, run_as, spec)

        # Another process may have filled the cache meanwhile; either copy is
        # good, so losing the rename race is not an error.
        template.parent.mkdir(parents=True, exist_ok=True)
        partial = template.with_name(f"{template.name}.{os.getpid()}.partial")
        _copy_tree(staging, partial)
        try:
            partial.rename(template)
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    elapsed = time.monotonic() - started
    log.info("PostgreSQL template cluster created at %s in %.2f s", template, elapsed)
    return elapsed


def _run(command: list[str], run_as: str | None, what: str) -> None:
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        user=run_as,
        cwd="/",
        timeout=TEMPLATE_TIMEOUT_S,
    )
    if result.returncode != 0:
        raise ProvisionError(
            f"{what} failed with exit status {result.returncode}: "
            f"{(result.stderr or result.stdout).strip()[-500:]}"
        )


def _fill_cluster(
    bindir: Path, socket_dir: Path, data: Path, run_as: str | None, spec: PostgresSpec
) -> None:
    """Start the fresh cluster on a private socket, create the schema, stop it."""
    # With listen_addresses empty the port only names the socket file.
    port = 5432
    _run(
        [
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-t",
            str(int(TEMPLATE_TIMEOUT_S)),
            "-l",
            str(socket_dir / "template.log"),
            "-o",
            f"-k {socket_dir} -p {port} -c listen_addresses= -c fsync=off",
            "start",
        ],
        run_as,
        "starting PostgreSQL to build the template cluster",
    )
    try:
        create_schema(socket_dir, port, spec)
    finally:
        _run(
            [str(bindir / "pg_ctl"), "-D", str(data), "-w", "-m", "fast", "stop"],
            run_as,
            "stopping the template cluster",
        )


def _connect(socket_dir: Path, port: int, dbname: str) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=str(socket_dir),
        port=port,
        user=SUPERUSER,
        dbname=dbname,
        autocommit=True,
        connect_timeout=10,
    )


def chown_tree(root: Path, user: str) -> None:
    """Give ``root`` and everything below it to ``user`` and their group."""
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


def create_schema(socket_dir: Path, port: int, spec: PostgresSpec) -> None:
    """Create the roles (without passwords), databases, extensions and schema."""
    with _connect(socket_dir, port, "postgres") as conn:
        for role in dict.fromkeys((spec.owner, spec.user)):
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        for database in spec.databases:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(database), sql.Identifier(spec.owner)
                )
            )

    for database in spec.databases:
        with _connect(socket_dir, port, database) as conn:
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


def set_passwords(
    socket_dir: Path, port: int, spec: PostgresSpec, password: str
) -> None:
    """Give the owner and check roles this stack's password.

    Until this runs no role can log in over TCP, because TCP connections
    require a SCRAM password and the template's roles have none.
    """
    with _connect(socket_dir, port, "postgres") as conn:
        for role in dict.fromkeys((spec.owner, spec.user)):
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )
