"""Real servers and reference services started on free loopback ports for tests.

Each helper starts a real nats-server, PostgreSQL or refservice.py process and
the fixtures kill it in their finalisers. Every wait is bounded. The PostgreSQL
fixture skips where PostgreSQL 15 is not installed.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

REPO = Path(__file__).resolve().parents[1]
REFSERVICE = REPO / "fixtures" / "reference" / "refservice.py"
VENV_BIN = Path(sys.executable).parent
PG_BIN = Path("/usr/lib/postgresql/15/bin")
API_TOKEN = "test-token-4f1c"
PG_PASSWORD = "pg-secret-9d2e"
START_TIMEOUT_S = 15.0
LOG_FORMAT_PREFIX = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    condition: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@dataclass
class RunningService:
    """A refservice.py process and where to reach it."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def health(self) -> httpx.Response:
        return httpx.get(f"{self.base_url}/health", timeout=5)


def start_refservice(
    role: str, log_path: Path, args: list[str], env: dict[str, str] | None = None
) -> RunningService:
    port = free_port()
    command = [sys.executable, str(REFSERVICE), "--role", role, "--port", str(port)]
    full_env = {
        key: value for key, value in os.environ.items() if key.startswith("PATH")
    }
    full_env.update(env or {})
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [*command, *args], stdout=log_file, stderr=subprocess.STDOUT, env=full_env
        )
    service = RunningService(process, port, log_path)
    wait_until(
        lambda: port_open(port) or process.poll() is not None,
        START_TIMEOUT_S,
        f"{role} to listen on port {port}",
    )
    assert process.poll() is None, service.log()
    return service


def wait_healthy(service: RunningService, timeout_s: float = START_TIMEOUT_S) -> None:
    wait_until(
        lambda: (
            service.health().status_code == 200
            and service.health().json()["status"] == "ok"
        ),
        timeout_s,
        f"{service.base_url}/health to report ok",
    )


def raw_get(port: int, target: str) -> tuple[int, dict[str, str], bytes]:
    """Send a GET request whose target http.client passes on byte for byte."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def error_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if " ERROR " in line]


@dataclass
class NatsServer:
    url: str
    monitor_port: int


def nats_server_command(
    store: Path, port: int, monitor_port: int | None = None
) -> list[str]:
    """Return the nats-server command line with JetStream on ``store``."""
    binary = shutil.which("nats-server", path=str(VENV_BIN)) or shutil.which(
        "nats-server"
    )
    if binary is None:
        pytest.skip("nats-server is not installed")
    command = [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)]
    if monitor_port is not None:
        command += ["-m", str(monitor_port)]
    return command


def start_nats_server(
    store: Path, port: int, monitor_port: int | None = None
) -> subprocess.Popen[bytes]:
    command = nats_server_command(store, port, monitor_port)
    with (store / "nats.log").open("ab") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: port_open(port), START_TIMEOUT_S, "nats-server to listen")
    except BaseException:
        stop_process(process)
        raise
    return process


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    port = free_port()
    monitor_port = free_port()
    process = start_nats_server(tmp_path_factory.mktemp("nats"), port, monitor_port)
    try:
        yield NatsServer(f"nats://127.0.0.1:{port}", monitor_port)
    finally:
        stop_process(process)


@dataclass
class Postgres:
    socket_dir: Path
    port: int

    def dsn(self, dbname: str) -> str:
        return (
            f"host={self.socket_dir} port={self.port} dbname={dbname} "
            f"user=postgres password={PG_PASSWORD}"
        )

    def execute(self, dbname: str, query: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(
            self.dsn(dbname), autocommit=True, connect_timeout=5
        ) as conn:
            cursor = conn.execute(query)
            return cursor.fetchall() if cursor.description else []


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """Start PostgreSQL 15 on a unix socket in a temporary directory.

    PostgreSQL refuses to run as root, so under root the server runs as nobody,
    which owns the directory. Trust authentication lets the DSN carry a password
    that the tests then look for in the logs.
    """
    if not (PG_BIN / "postgres").exists():
        pytest.skip(f"PostgreSQL 15 is not installed in {PG_BIN}")
    as_root = os.geteuid() == 0
    user = "nobody" if as_root else None
    base = Path(tempfile.mkdtemp(prefix="refservice-pg-"))
    os.chmod(base, 0o755)
    if as_root:
        shutil.chown(base, user="nobody")
    data_dir = base / "data"
    port = free_port()
    initdb = [str(PG_BIN / "initdb"), "-D", str(data_dir), "-U", "postgres"]
    initdb += ["--auth=trust", "--no-sync", "--encoding=UTF8", "--locale=C"]
    subprocess.run(initdb, check=True, capture_output=True, timeout=60, user=user)
    server = [str(PG_BIN / "postgres"), "-D", str(data_dir), "-p", str(port)]
    server += ["-k", str(base), "-c", "listen_addresses=", "-c", "fsync=off"]
    with (base / "postgres.log").open("wb") as log_file:
        process = subprocess.Popen(
            server, stdout=log_file, stderr=subprocess.STDOUT, user=user
        )
    try:
        wait_until(
            lambda: (base / f".s.PGSQL.{port}").exists() or process.poll() is not None,
            START_TIMEOUT_S,
            "PostgreSQL to open its socket",
        )
        assert process.poll() is None, (base / "postgres.log").read_text()
        instance = Postgres(base, port)
        wait_until(lambda: _accepts_queries(instance), START_TIMEOUT_S, "PostgreSQL")
        instance.execute("postgres", "CREATE DATABASE singularity")
        instance.execute(
            "singularity",
            "CREATE TABLE events (id bigserial PRIMARY KEY, kind text NOT NULL, "
            "payload jsonb NOT NULL DEFAULT '{}', "
            "created_at timestamptz NOT NULL DEFAULT now())",
        )
        yield instance
    finally:
        stop_process(process)
        shutil.rmtree(base, ignore_errors=True)


def _accepts_queries(instance: Postgres) -> bool:
    try:
        instance.execute("postgres", "SELECT 1")
    except psycopg.OperationalError:
        return False
    return True
