"""Run locust headless in subprocesses and read back its CSV statistics.

With ``workers`` of 0 one locust process generates the load. With N workers
the runner starts locust's own distributed mode on loopback: a master that
waits for N ``--worker`` processes, merges their statistics and writes the
CSV and HTML files. Workers on other machines join the same way by hand::

    locust -f load/gateway.py --worker --master-host MASTER --master-port PORT

(the master must then listen on a reachable address, which this runner does
not do: it binds the master to 127.0.0.1 only).
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pytest_stackcheck.errors import MissingDependency, StackcheckError

log = logging.getLogger("pytest_stackcheck")

REPO = Path(__file__).resolve().parent.parent.parent
LOCUSTFILES = REPO / "load"
# Seconds allowed beyond the requested run for start-up, ramp-up, the stop
# timeout and writing the reports.
GRACE_S = 60.0
STOP_TIMEOUT_S = 5
WORKER_WAIT_S = 30
CSV_PREFIX = "locust"
_WORKERS_CONNECTED = re.compile(rb"(\d+) workers connected")


class LoadRunError(StackcheckError):
    """locust could not run, or wrote no statistics to judge."""


@dataclass(frozen=True, slots=True)
class LocustRun:
    """A locust run: the locustfile, its target and the shape of the load."""

    locustfile: Path
    host: str
    users: int
    spawn_rate: float
    duration_s: float
    out_dir: Path
    workers: int = 0
    environment: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class EntryStats:
    """One row of locust's ``_stats.csv``: a request name or a derived measure."""

    type: str
    name: str
    requests: int
    failures: int
    median_ms: float
    average_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    rps: float

    @property
    def label(self) -> str:
        return f"{self.type} {self.name}".strip()


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """One second of ``_stats_history.csv`` for one entry."""

    elapsed_s: float
    users: int
    type: str
    name: str
    rps: float
    p50_ms: float
    p95_ms: float


@dataclass(frozen=True, slots=True)
class LocustResult:
    """Statistics of a finished run and where its files are."""

    entries: tuple[EntryStats, ...]
    history: tuple[HistoryPoint, ...]
    peak_users: int
    workers_connected: int
    elapsed_s: float
    csv_prefix: Path
    html_path: Path

    def entry(self, type_: str, name: str) -> EntryStats | None:
        """Return the row for ``type_`` and ``name``, or None if never reported."""
        for entry in self.entries:
            if entry.type == type_ and entry.name == name:
                return entry
        return None


def _locust_available() -> None:
    # Importing locust here would monkey-patch this process with gevent, so
    # only its presence is checked; it runs in its own processes.
    if importlib.util.find_spec("locust") is None:
        raise MissingDependency("locust", "load")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _command(run: LocustRun, *extra: str) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", str(run.locustfile), *extra]


def run_locust(run: LocustRun) -> LocustResult:
    """Run locust as ``run`` describes and return its statistics.

    Raises LoadRunError when locust fails to start, runs far past its
    duration, or leaves no statistics; the message carries its log's end.
    """
    _locust_available()
    run.out_dir.mkdir(parents=True, exist_ok=True)
    prefix = run.out_dir / CSV_PREFIX
    html = run.out_dir / "locust.html"
    master_log = run.out_dir / "locust.log"
    environment = {**os.environ, **run.environment, "PYTHONUNBUFFERED": "1"}

    master_args = [
        "--headless",
        "--host",
        run.host,
        "--users",
        str(run.users),
        "--spawn-rate",
        str(run.spawn_rate),
        "--run-time",
        f"{math.ceil(run.duration_s)}s",
        "--stop-timeout",
        str(STOP_TIMEOUT_S),
        "--csv",
        str(prefix),
        "--csv-full-history",
        "--html",
        str(html),
        "--only-summary",
        "--exit-code-on-error",
        "0",
    ]
    worker_commands: list[list[str]] = []
    if run.workers:
        port = _free_port()
        master_args += [
            "--master",
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            str(port),
            "--expect-workers",
            str(run.workers),
            "--expect-workers-max-wait",
            str(WORKER_WAIT_S),
        ]
        worker_args = ["--worker", "--master-host", "127.0.0.1"]
        worker_args += ["--master-port", str(port)]
        worker_commands = [_command(run, *worker_args) for _ in range(run.workers)]

    limit_s = run.duration_s + run.users / run.spawn_rate + GRACE_S
    if run.workers:
        limit_s += WORKER_WAIT_S
    started = time.monotonic()
    log.info(
        "locust: %d users for %.0f s against %s, %d workers; files in %s",
        run.users,
        run.duration_s,
        run.host,
        run.workers,
        run.out_dir,
    )
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(_start(_command(run, *master_args), master_log, environment))
        for index, command in enumerate(worker_commands):
            worker_log = run.out_dir / f"locust-worker-{index}.log"
            processes.append(_start(command, worker_log, environment))
        _wait(processes, limit_s, master_log)
    finally:
        for process in processes:
            _stop(process)
    elapsed = time.monotonic() - started

    return _read_result(run, prefix, html, master_log, elapsed)


def _start(
    command: list[str], log_path: Path, environment: dict[str, str]
) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as output:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
        )


def _wait(
    processes: list[subprocess.Popen[bytes]], limit_s: float, master_log: Path
) -> None:
    master = processes[0]
    try:
        code = master.wait(timeout=limit_s)
    except subprocess.TimeoutExpired as exc:
        raise LoadRunError(
            f"locust ran past {limit_s:.0f} s (the requested run plus "
            f"{GRACE_S:.0f} s) and was stopped; its log ends with:\n"
            + _tail(master_log)
        ) from exc
    if code != 0:
        raise LoadRunError(
            f"locust exited with status {code}; its log ends with:\n"
            + _tail(master_log)
        )
    for worker in processes[1:]:
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(timeout=STOP_TIMEOUT_S + 5)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a locust process and its children by their own process group."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        content = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return f"({path} is missing)"
    return "\n".join(content[-lines:])


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _read_result(
    run: LocustRun, prefix: Path, html: Path, master_log: Path, elapsed: float
) -> LocustResult:
    stats_path = Path(f"{prefix}_stats.csv")
    history_path = Path(f"{prefix}_stats_history.csv")
    if not stats_path.is_file():
        raise LoadRunError(
            f"locust wrote no statistics to {stats_path}; its log ends with:\n"
            + _tail(master_log)
        )

    with stats_path.open(encoding="utf-8", newline="") as handle:
        entries = tuple(
            EntryStats(
                type=row["Type"],
                name=row["Name"],
                requests=int(row["Request Count"]),
                failures=int(row["Failure Count"]),
                median_ms=_float(row["Median Response Time"]),
                average_ms=_float(row["Average Response Time"]),
                p50_ms=_float(row["50%"]),
                p95_ms=_float(row["95%"]),
                p99_ms=_float(row["99%"]),
                rps=_float(row["Requests/s"]),
            )
            for row in csv.DictReader(handle)
        )

    history: list[HistoryPoint] = []
    if history_path.is_file():
        with history_path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        first = min((int(row["Timestamp"]) for row in rows), default=0)
        history = [
            HistoryPoint(
                elapsed_s=float(int(row["Timestamp"]) - first),
                users=int(row["User Count"]),
                type=row["Type"],
                name=row["Name"],
                rps=_float(row["Requests/s"]),
                p50_ms=_float(row["50%"]),
                p95_ms=_float(row["95%"]),
            )
            for row in rows
        ]

    connected = 0
    if run.workers:
        seen = _WORKERS_CONNECTED.findall(master_log.read_bytes())
        connected = max((int(count) for count in seen), default=0)

    return LocustResult(
        entries=entries,
        history=tuple(history),
        peak_users=max((point.users for point in history), default=0),
        workers_connected=connected,
        elapsed_s=elapsed,
        csv_prefix=prefix,
        html_path=html,
    )
