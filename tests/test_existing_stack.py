"""The acceptance gates against an already deployed stack, as ``--stack=prod`` runs.

The stack is a real local stack started by the test, described to the
plugin by an ``existing`` profile with its ports and secrets from the
environment, so the plugin starts nothing and judges what it finds. systemd
cannot run as PID 1 here, so ``systemctl`` and ``journalctl`` are stand-in
scripts on PATH that report each unit's state, restart policy, invocation ID
and journal from files the test writes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import STACKS, SUITES, existing_profile
from reference_harness import start_refservice, stop_process

from pytest_stackcheck.profile import load_profile
from pytest_stackcheck.provision.base import LiveStack
from pytest_stackcheck.provision.local import LocalProvisioner

SYSTEMCTL = """#!/bin/sh
# Stand-in for systemctl: is-active UNIT, show --property=P --value UNIT.
state="$FAKE_SYSTEMD/state"
case "$1" in
  is-active) cat "$state/active" ;;
  show)
    property="${2#--property=}"
    file="$state/$property"
    if [ -f "$file" ]; then cat "$file"; fi
    ;;
esac
"""

JOURNALCTL = """#!/bin/sh
# Stand-in for journalctl: prints the journal only for the current invocation.
case "$1" in
  _SYSTEMD_INVOCATION_ID=*) cat "$FAKE_SYSTEMD/journal" ;;
esac
"""


@pytest.fixture(scope="module")
def deployed() -> Iterator[LiveStack]:
    """A running local stack that the runs below treat as already deployed."""
    provisioner = LocalProvisioner()
    stack = provisioner.up(load_profile(STACKS / "local.toml"))
    try:
        yield stack
    finally:
        provisioner.down(stack)


@pytest.fixture
def systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Stand-in systemctl and journalctl on PATH; returns their state directory."""
    bin_dir = tmp_path / "bin"
    state = tmp_path / "systemd"
    (state / "state").mkdir(parents=True)
    bin_dir.mkdir()
    for name, script in (("systemctl", SYSTEMCTL), ("journalctl", JOURNALCTL)):
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    (state / "state" / "active").write_text("active\n")
    (state / "state" / "Restart").write_text("always\n")
    (state / "state" / "InvocationID").write_text("5f0c0e5d1a2b4c3d\n")
    (state / "journal").write_text("listening on 127.0.0.1\nconnected to NATS\n")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SYSTEMD", str(state))
    return state


@pytest.fixture
def profile(
    deployed: LiveStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The deployed stack's ``existing`` profile, secrets in the environment."""
    for name, value in deployed.secrets.items():
        monkeypatch.setenv(name, value)
    return existing_profile(deployed, tmp_path / "deployed.toml")


def test_healthy_deployment_passes(run_suite, profile, systemd):
    result = run_suite(profile, str(SUITES / "acceptance"))

    result.assert_outcomes(passed=29, skipped=1)
    assert "deployment verdict: OK" in result.stdout.str()


def test_error_in_journal_fails_day1(run_suite, profile, systemd):
    (systemd / "journal").write_text(
        "listening\n** (DBConnection.ConnectionError) ERROR 28P01 password failed\n"
    )

    result = run_suite(profile, str(SUITES / "acceptance"), "-m", "day1")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*error lines in the logs since the stack started:",
            "*singularity: ** (DBConnection.ConnectionError) ERROR 28P01*",
        ]
    )


def test_quiet_unit_since_restart_is_not_silent(run_suite, profile, systemd):
    """The journal is read for the current invocation, not since pytest began."""
    result = run_suite(profile, str(SUITES / "acceptance"), "-k", "logs_free")

    result.assert_outcomes(passed=1)


def test_on_failure_unit_fails_preprod(run_suite, profile, systemd):
    (systemd / "state" / "Restart").write_text("on-failure\n")

    result = run_suite(profile, str(SUITES / "acceptance"), "-m", "preprod")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*restart policy 'on-failure'*restart = 'always'*"])


def test_restart_prevented_on_exit_zero_fails_preprod(run_suite, profile, systemd):
    """Restart=always does not restart a unit after an exit it prevents."""
    (systemd / "state" / "RestartPreventExitStatus").write_text("0 SIGTERM\n")

    result = run_suite(profile, str(SUITES / "acceptance"), "-k", "restart_policy")

    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines(
        [
            "*service singularity: RestartPreventExitStatus=0 SIGTERM, expected "
            "none*remove RestartPreventExitStatus= from the unit*"
        ]
    )


def test_failed_unit_fails_day1(run_suite, profile, systemd):
    (systemd / "state" / "active").write_text("failed\n")

    result = run_suite(profile, str(SUITES / "acceptance"), "-k", "services_started")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*every service is running*FAILED*"])


def test_health_200_with_database_down_fails_day1(
    run_suite, profile, systemd, deployed, tmp_path
):
    """An app that answers 200 while its database is down fails on its body."""
    dsn = "host=127.0.0.1 port=1 dbname=singularity user=x connect_timeout=1"
    args = ["--nats-url", deployed.nats_url, "--degraded-status", "200"]
    service = start_refservice(
        "singularity", tmp_path / "hiding.log", args, {"STACKCHECK_REF_DSN": dsn}
    )
    real_port = deployed.ports["services.singularity.port"]
    text = profile.read_text(encoding="utf-8")
    profile.write_text(
        text.replace(f"port = {real_port}\n", f"port = {service.port}\n", 1),
        encoding="utf-8",
    )
    try:
        result = run_suite(profile, str(SUITES / "acceptance"), "-k", "health_passing")
    finally:
        stop_process(service.process)

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*service singularity is healthy: did not hold*-> 200*"
            "field services.database = 'error', expected 'ok'*"
        ]
    )
