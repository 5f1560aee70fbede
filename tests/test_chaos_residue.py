"""Interrupted chaos runs leave no fault, process or journal entry behind.

Each trial starts a drill (faults in a child process) against a real local
stack, interrupts it at a random point with SIGINT (Ctrl-C) or SIGKILL,
replays the journal as the next run would, and then requires the steady
state: every program running, nothing paused, no pending rollback, no fault
on a link of the fault proxy, every health endpoint healthy, and the drill
process gone.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from helpers import local_profile

from pytest_stackcheck.chaos.faults import replay
from pytest_stackcheck.chaos.journal import Journal
from pytest_stackcheck.chaos.steady import wait_steady
from pytest_stackcheck.control.supervisor import SupervisorControl
from pytest_stackcheck.profile import load_profile
from pytest_stackcheck.provision.base import LiveStack
from pytest_stackcheck.provision.local import LocalProvisioner

TRIALS = 20
MAX_TOTAL_S = 400.0
DRILL_EXIT_TIMEOUT_S = 20.0
STEADY_TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    """A local stack, with the fault proxy, for the interruption trials."""
    path = local_profile(
        tmp_path_factory.mktemp("profile"),
        {"[policy]\n": "[chaos]\nnetwork_proxy = true\n\n[policy]\n"},
    )
    profile = load_profile(path)
    provisioner = LocalProvisioner()
    stack = provisioner.up(profile)
    yield stack
    provisioner.down(stack)


def _interrupt_drill(
    state_file, journal, seed: int, chooser: random.Random
) -> tuple[str, str]:
    drill = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest_stackcheck.chaos.drill",
            state_file,
            journal,
            str(seed),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Python starts in about 0.5 s here, so waits up to 3 s cover the drill's
    # start, its faults and its holds.
    time.sleep(chooser.uniform(0.3, 3.0))
    signum = chooser.choice([signal.SIGINT, signal.SIGKILL])
    drill.send_signal(signum)
    try:
        _, errors = drill.communicate(timeout=DRILL_EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        drill.kill()
        _, errors = drill.communicate()
        raise AssertionError(
            f"drill ignored {signum.name} for {DRILL_EXIT_TIMEOUT_S} s: {errors}"
        ) from None
    return signum.name, errors


def test_interrupted_drills_leave_no_residue(live, tmp_path):
    assert live.supervisor_socket is not None
    control = SupervisorControl(live.supervisor_socket)
    state_file = tmp_path / "stack.json"
    live.save(state_file)
    journal_path = tmp_path / "journal.json"
    journal = Journal(journal_path)
    chooser = random.Random(20)
    started = time.monotonic()
    faults_seen = 0
    network_faults_seen = 0

    for trial in range(TRIALS):
        assert time.monotonic() - started < MAX_TOTAL_S, f"trial {trial}: over time"
        signame, errors = _interrupt_drill(
            str(state_file), str(journal_path), trial, chooser
        )
        faults_seen += errors.count("drill: ")
        network_faults_seen += errors.count(" on link ")

        replay(journal)
        state = wait_steady(live, control, journal, STEADY_TIMEOUT_S)

        context = (
            f"trial {trial} ({signame}); drill output: {errors[-2000:]}; "
            f"supervisord log: {_tail(live, 'supervisord.log')}"
        )
        assert state.steady, f"{state.describe()}; {context}"
        assert journal.entries() == [], context

    children = [
        entry.name
        for entry in os.scandir("/proc")
        if entry.name.isdigit() and _is_drill(int(entry.name))
    ]
    assert children == []
    assert faults_seen >= TRIALS
    assert network_faults_seen >= 1


def _is_drill(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"pytest_stackcheck.chaos.drill" in handle.read()
    except OSError:
        return False


def _tail(stack: LiveStack, name: str) -> str:
    assert stack.log_dir is not None
    lines = (stack.log_dir / name).read_text(errors="replace").splitlines()
    return "\n".join(lines[-15:])
