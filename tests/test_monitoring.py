"""Monitoring targets: the day-1 check against a real Prometheus server.

Each Prometheus here scrapes itself, which is a real target, and in the
broken case also a job whose port has nothing listening, as after a deploy
that moved an exporter.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import SUITES, local_profile

from pytest_stackcheck.errors import ProbeError
from pytest_stackcheck.probes.prometheus import Target, read_targets, target_problems
from pytest_stackcheck.profile import MonitoringSpec
from pytest_stackcheck.provision.local import free_ports

MONITORING_SUITE = str(SUITES / "acceptance" / "test_monitoring.py")
READY_TIMEOUT_S = 30.0

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="prometheus is not installed (apt-get install prometheus)",
)


def _start(tmp_path: Path, extra_jobs: dict[str, int]) -> Iterator[str]:
    port, *_ = free_ports(1)
    jobs = {"prometheus": port, **extra_jobs}
    config = "global:\n  scrape_interval: 1s\n  scrape_timeout: 500ms\n"
    config += "scrape_configs:\n"
    for job, target_port in jobs.items():
        config += f"  - job_name: {job}\n"
        config += f"    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
    (tmp_path / "prometheus.yml").write_text(config)
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_scraped(url, len(jobs))
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _wait_scraped(url: str, count: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            targets = read_targets(url, 2.0)
        except Exception:
            targets = []
        if len(targets) == count and all(t.health != "unknown" for t in targets):
            return
        time.sleep(0.2)
    raise AssertionError(f"Prometheus at {url} did not scrape {count} targets")


@pytest.fixture(scope="module")
def healthy_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus whose only target, itself, is up."""
    yield from _start(tmp_path_factory.mktemp("prometheus"), {})


@pytest.fixture(scope="module")
def broken_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus with a job whose port has nothing listening."""
    dead_port, *_ = free_ports(1)
    yield from _start(tmp_path_factory.mktemp("prometheus"), {"exporter": dead_port})


def _monitoring(tmp_path: Path, url: str, jobs: str) -> Path:
    table = f'[monitoring]\nprometheus_url = "{url}"\nrequired_jobs = {jobs}\n\n'
    return local_profile(tmp_path, {"[policy]\n": table + "[policy]\n"})


def test_targets_up_passes(tmp_path, run_suite, healthy_prometheus):
    profile = _monitoring(tmp_path, healthy_prometheus, '["prometheus"]')

    result = run_suite(profile, MONITORING_SUITE)

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["day1 *pass*"])


def test_down_target_fails(tmp_path, run_suite, broken_prometheus):
    profile = _monitoring(tmp_path, broken_prometheus, '["prometheus"]')

    result = run_suite(profile, MONITORING_SUITE)

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*job exporter target 127.0.0.1:* is down: *connection refused*"]
    )


def test_no_prometheus_skips(tmp_path, run_suite):
    result = run_suite(local_profile(tmp_path), MONITORING_SUITE, "-rs")

    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*set monitoring.prometheus_url*"])


def test_missing_required_job_named(healthy_prometheus):
    spec = MonitoringSpec(healthy_prometheus, ("prometheus", "nats"))

    problems = target_problems(read_targets(healthy_prometheus, 5.0), spec)

    assert len(problems) == 1
    assert problems[0].startswith("required job nats has no target")


def _target(**changes: object) -> Target:
    values: dict[str, object] = {
        "job": "node",
        "instance": "db:9100",
        "health": "up",
        "last_error": "",
        "scrape_age_s": 5.0,
    }
    values.update(changes)
    return Target(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (_target(scrape_age_s=900.0), "was last scraped 900 s ago"),
        (_target(health="unknown"), "is unknown: no scrape yet"),
    ],
)
def test_stale_and_unscraped_targets(target: Target, expected: str):
    problems = target_problems([target], MonitoringSpec("http://p:9090"))

    assert len(problems) == 1
    assert expected in problems[0]


def test_no_targets_is_a_problem():
    problems = target_problems([], MonitoringSpec("http://p:9090"))

    assert problems == [
        "Prometheus at http://p:9090 has no active targets; check its scrape_configs"
    ]


def test_unreachable_prometheus_raises():
    port, *_ = free_ports(1)

    with pytest.raises(ProbeError, match=f"GET http://127.0.0.1:{port}/api/v1"):
        read_targets(f"http://127.0.0.1:{port}", 1.0)
