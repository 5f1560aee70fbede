"""Fault library: faults take effect, roll back on every exit, and are refused.

These run against a real local stack (PostgreSQL, NATS, nginx and the
reference services under supervisord); nothing is faked.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import SUITES, local_profile

from pytest_stackcheck.chaos.faults import (
    ChaosSession,
    FaultKind,
    FaultNotApplied,
    replay,
)
from pytest_stackcheck.chaos.journal import Journal
from pytest_stackcheck.chaos.policy import ChaosRefused
from pytest_stackcheck.chaos.steady import wait_steady
from pytest_stackcheck.control.supervisor import SupervisorControl
from pytest_stackcheck.profile import load_profile
from pytest_stackcheck.provision.base import LiveStack
from pytest_stackcheck.provision.local import LocalProvisioner


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    """A local stack shared by the tests of this module."""
    profile = load_profile(local_profile(tmp_path_factory.mktemp("profile")))
    provisioner = LocalProvisioner()
    stack = provisioner.up(profile)
    yield stack
    provisioner.down(stack)


@pytest.fixture
def control(live: LiveStack) -> SupervisorControl:
    """supervisord control of the shared stack."""
    assert live.supervisor_socket is not None
    return SupervisorControl(live.supervisor_socket)


def _session(live: LiveStack, control: SupervisorControl, path: Path) -> ChaosSession:
    return ChaosSession(live.profile, control, Journal(path), live.supervisor_socket)


def _steady(live: LiveStack, control: SupervisorControl, journal: Path) -> str:
    return wait_steady(live, control, Journal(journal), 15.0).describe()


def test_pause_rolled_back_on_interrupt(live, control, tmp_path):
    journal = tmp_path / "journal.json"
    session = _session(live, control, journal)

    seen: list[tuple[str, int]] = []

    def interrupted_run() -> None:
        with session:
            injection = session.inject(FaultKind.PAUSE, "genesis")
            assert injection.process is not None
            seen.append((injection.process.state(), len(Journal(journal).entries())))
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted_run()

    injection = session.injections[0]
    assert seen == [("T", 1)]

    assert injection.process.state() in ("S", "R")
    assert Journal(journal).entries() == []
    assert _steady(live, control, journal) == "steady"


def test_stop_rolled_back_on_failure(live, control, tmp_path):
    journal = tmp_path / "journal.json"
    session = _session(live, control, journal)

    running_during: list[bool] = []

    def failing_check() -> None:
        with session:
            session.inject(FaultKind.STOP_START, "centralcloud")
            running_during.append(control.is_running("centralcloud"))
            raise AssertionError("the check failed")

    with pytest.raises(AssertionError, match="the check failed"):
        failing_check()

    assert running_during == [False]
    assert control.is_running("centralcloud")
    assert _steady(live, control, journal) == "steady"


def test_journal_replay_undoes_killed_run(live, control, tmp_path):
    journal = tmp_path / "journal.json"
    session = _session(live, control, journal)
    paused = session.inject(FaultKind.PAUSE, "llm-server")
    stopped = session.inject(FaultKind.STOP_START, "genesis")
    # The run "dies" here: the session's own rollbacks never run.

    done = replay(Journal(journal))

    assert paused.process is not None
    assert paused.process.state() in ("S", "R")
    assert control.is_running(stopped.service)
    assert len(done) == 3
    assert _steady(live, control, journal) == "steady"


def test_fault_on_stopped_service_rejected(live, control, tmp_path):
    journal = tmp_path / "journal.json"
    control.stop("genesis")
    try:
        session = _session(live, control, journal)
        with session, pytest.raises(FaultNotApplied, match="does not run"):
            session.inject(FaultKind.KILL, "genesis")
    finally:
        control.start("genesis")
    assert Journal(journal).entries() == []


def test_kill_verified_and_counted(live, control, tmp_path):
    journal = tmp_path / "journal.json"
    before = control.restart_count("nginx")
    with _session(live, control, journal) as session:
        injection = session.inject(FaultKind.KILL, "nginx")
        assert injection.process is not None
        assert not injection.process.matches()
    assert _steady(live, control, journal) == "steady"
    assert control.restart_count("nginx") == before + 1


def test_exit_zero_signal_from_profile(live, control, tmp_path):
    session = _session(live, control, tmp_path / "journal.json")
    assert session.exit_zero_signal() is signal.SIGUSR2


def test_session_refused_without_destructive(live, control, tmp_path):
    profile = load_profile(
        local_profile(tmp_path, {"destructive = true": "destructive = false"})
    )
    with pytest.raises(ChaosRefused, match=r"policy\.destructive"):
        ChaosSession(profile, control, Journal(tmp_path / "journal.json"))


def test_chaos_run_refused_before_any_fault(run_suite, tmp_path):
    profile = local_profile(tmp_path, {"destructive = true": "destructive = false"})

    result = run_suite(profile, str(SUITES / "chaos"), "-m", "chaos")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*policy.destructive = false*destructive = true*"])


def test_plain_run_skips_chaos_with_reason(run_suite, tmp_path):
    profile = local_profile(tmp_path, {"destructive = true": "destructive = false"})

    result = run_suite(
        profile, str(SUITES / "chaos" / "test_restart.py"), "-rs", "-k", "genesis"
    )

    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines(["*policy.destructive = false*"])
