"""Benchmark the local stack's cold start and the day-1 suite's own cost.

Run from the repository root with the project's virtual environment:

    .venv/bin/python bench/bench_foundation.py --runs 5

It measures, in one run so that the ratios share the machine's state:

1. the servers alone, started one after the other with no supervision
   (initdb, PostgreSQL until it accepts a connection, nats-server until its
   /healthz returns 200, nginx until its port accepts): the floor any stack
   start pays;
2. the local provisioner from nothing to all-healthy, with the cached
   template cluster and with an empty cache;
3. ``pytest --stack=local -m day1`` on the acceptance suite against
   ``pytest --collect-only`` of the same selection, and the sum of the
   checks' own durations from JUnit XML.

Each figure is the median of ``--runs`` runs. The output is Markdown, ready for
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pytest_stackcheck.profile import load_profile  # noqa: E402
from pytest_stackcheck.provision.local import (  # noqa: E402
    LocalProvisioner,
    find_binaries,
    free_ports,
)

LOCAL_PROFILE = REPO / "fixtures" / "stacks" / "local.toml"
DEADLINE_S = 30.0


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not come up within {DEADLINE_S} s")
        time.sleep(0.005)


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def servers_alone() -> dict[str, float]:
    """Start each server by hand, one after the other; return seconds per step."""
    binaries = find_binaries()
    bindir = Path(binaries["pg_bindir"])
    user = "nobody" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="stackcheck-bench-"))
    root.chmod(0o755)
    if user:
        shutil.chown(root, user=user)
    pg_port, nats_port, monitor_port, nginx_port = free_ports(4)
    processes: list[subprocess.Popen[bytes]] = []
    timings: dict[str, float] = {}
    try:
        started = time.perf_counter()
        subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(root / "pg"),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--no-sync",
                "--encoding=UTF8",
                "--locale=C",
            ],
            check=True,
            capture_output=True,
            user=user,
            cwd="/",
        )
        timings["initdb"] = time.perf_counter() - started

        started = time.perf_counter()
        processes.append(
            subprocess.Popen(
                [
                    str(bindir / "postgres"),
                    "-D",
                    str(root / "pg"),
                    "-p",
                    str(pg_port),
                    "-k",
                    str(root),
                    "-c",
                    "fsync=off",
                    "-c",
                    "listen_addresses=127.0.0.1",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                user=user,
                cwd="/",
            )
        )
        _wait(lambda: _port_open(pg_port), "PostgreSQL")
        timings["postgres start"] = time.perf_counter() - started

        started = time.perf_counter()
        processes.append(
            subprocess.Popen(
                [
                    binaries["nats-server"],
                    "-a",
                    "127.0.0.1",
                    "-p",
                    str(nats_port),
                    "-m",
                    str(monitor_port),
                    "-js",
                    "-sd",
                    str(root / "js"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        monitor = f"http://127.0.0.1:{monitor_port}/healthz"
        _wait(lambda: _http_ok(monitor), "nats-server")
        timings["nats-server start"] = time.perf_counter() - started

        conf = root / "nginx.conf"
        conf.write_text(
            f"daemon off; pid {root}/nginx.pid; error_log {root}/error.log;\n"
            f"events {{}} http {{ access_log off; server {{ "
            f"listen 127.0.0.1:{nginx_port}; return 204; }} }}\n"
        )
        started = time.perf_counter()
        processes.append(
            subprocess.Popen(
                [binaries["nginx"], "-c", str(conf), "-p", str(root)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        _wait(lambda: _port_open(nginx_port), "nginx")
        timings["nginx start"] = time.perf_counter() - started
    finally:
        for process in reversed(processes):
            _stop(process)
        shutil.rmtree(root, ignore_errors=True)
    timings["sum"] = sum(timings.values())
    return timings


def provisioner_start(cached: bool) -> tuple[float, float]:
    """Return (seconds to all-healthy, seconds to tear down) for one local stack."""
    saved = os.environ.get("XDG_CACHE_HOME")
    empty_cache = None if cached else tempfile.mkdtemp(prefix="stackcheck-cache-")
    if empty_cache:
        os.environ["XDG_CACHE_HOME"] = empty_cache
    try:
        profile = load_profile(LOCAL_PROFILE)
        provisioner = LocalProvisioner()
        started = time.perf_counter()
        stack = provisioner.up(profile)
        up_s = time.perf_counter() - started
        started = time.perf_counter()
        provisioner.down(stack)
        down_s = time.perf_counter() - started
    finally:
        if empty_cache:
            shutil.rmtree(empty_cache, ignore_errors=True)
        if saved is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = saved
    return up_s, down_s


def _pytest(*args: str) -> float:
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
    started = time.perf_counter()
    result = subprocess.run(
        [*command, *args], cwd=REPO, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"pytest {' '.join(args)} failed:\n{result.stdout[-2000:]}")
    return elapsed


def day1_suite(workdir: Path) -> tuple[float, float, float, int]:
    """Return (run wall s, collect-only wall s, sum of check s, check count)."""
    junit = workdir / "day1.xml"
    selection = ["suites/acceptance", "--stack=local", "-m", "day1"]
    run_s = _pytest(*selection, f"--junitxml={junit}")
    collect_s = _pytest(*selection, "--collect-only")
    cases = ET.parse(junit).getroot().iter("testcase")
    durations = [float(case.get("time", "0")) for case in cases]
    return run_s, collect_s, sum(durations), len(durations)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per figure")
    runs = parser.parse_args().runs
    workdir = Path(tempfile.mkdtemp(prefix="stackcheck-bench-"))

    # One cold start fills the template cache so the cached figures are warm.
    provisioner_start(cached=True)

    alone = [servers_alone() for _ in range(runs)]
    cached = [provisioner_start(cached=True) for _ in range(runs)]
    uncached = [provisioner_start(cached=False) for _ in range(runs)]
    day1 = [day1_suite(workdir) for _ in range(runs)]
    shutil.rmtree(workdir, ignore_errors=True)

    def median(values: list[float]) -> float:
        return statistics.median(values)

    floor = median([timing["sum"] for timing in alone])
    cached_up = median([up for up, _ in cached])
    uncached_up = median([up for up, _ in uncached])
    run_s = median([run for run, _, _, _ in day1])
    collect_s = median([collect for _, collect, _, _ in day1])
    checks_s = median([checks for _, _, checks, _ in day1])
    count = day1[0][3]

    lines = [
        f"Median of {runs} runs; python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs.",
        "",
        "| figure | seconds | ratio |",
        "|---|---|---|",
    ]
    for step in alone[0]:
        if step != "sum":
            value = median([timing[step] for timing in alone])
            lines.append(f"| server alone: {step} | {value:.3f} | |")
    lines += [
        f"| servers alone, sum (floor) | {floor:.3f} | 1.00x |",
        f"| local stack to all-healthy, cached template | {cached_up:.3f} "
        f"| {cached_up / floor:.2f}x floor |",
        f"| local stack to all-healthy, empty cache | {uncached_up:.3f} "
        f"| {uncached_up / floor:.2f}x floor |",
        f"| local stack teardown | {median([down for _, down in cached]):.3f} | |",
        f"| `pytest --stack=local -m day1` ({count} checks), whole run "
        f"| {run_s:.3f} | {run_s / collect_s:.2f}x collect |",
        f"| same selection, `--collect-only` | {collect_s:.3f} | 1.00x |",
        f"| day-1 checks' own time (JUnit sum) | {checks_s:.3f} | |",
        f"| whole run less collect-only and stack start | "
        f"{run_s - collect_s - cached_up:.3f} | |",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
