"""Fixtures of the chaos suite: service control, the journal and fault sessions.

Chaos tests take a file lock per stack for their whole duration, so under
pytest-xdist (or with two runs against one stack) they run one at a time:
two faults at once would make each recovery time measure the other's
outage. The journal is replayed under that lock, so a replay never undoes
the fault of a test that is still running.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from filelock import FileLock

from pytest_stackcheck.chaos.faults import ChaosSession, replay
from pytest_stackcheck.chaos.journal import Journal, default_path
from pytest_stackcheck.chaos.policy import require_chaos_allowed
from pytest_stackcheck.chaos.steady import wait_steady
from pytest_stackcheck.control.base import ServiceControl
from pytest_stackcheck.control.supervisor import SupervisorControl
from pytest_stackcheck.control.systemd import SystemdControl

log = logging.getLogger("pytest_stackcheck")

# One fault at a time per stack: the lock waits at most this long for the
# chaos test another xdist worker is running.
CHAOS_LOCK_TIMEOUT_S = 600.0


@pytest.fixture(scope="session")
def service_control(stack) -> ServiceControl:
    """The stack's service manager; chaos makes every fault through it.

    supervisord for the local stack, systemd (on this machine or on
    ``stack.host`` over ssh) for a deployed one whose profile allows chaos.
    """
    require_chaos_allowed(stack.profile)
    if stack.supervisor_socket is not None:
        return SupervisorControl(stack.supervisor_socket)
    if stack.profile.doc.stack.provisioner == "existing":
        return SystemdControl.for_stack(stack)
    # NOTE: Kubernetes (and Nix) control is not built, so chaos there skips.
    pytest.skip(
        f"stack {stack.name} uses provisioner "
        f"{stack.profile.doc.stack.provisioner!r}; chaos controls services "
        "through supervisord (local) or systemd (existing) only in this version"
    )


@pytest.fixture(scope="session")
def chaos_journal(request: pytest.FixtureRequest, stack) -> Journal:
    """The rollback journal of this stack (``--chaos-journal`` or the default)."""
    option = request.config.getoption("stackcheck_chaos_journal")
    return Journal(Path(option) if option else default_path(stack.name, stack.workdir))


@pytest.fixture
def chaos(stack, service_control, chaos_journal) -> Iterator[ChaosSession]:
    """A fault session: every fault made through it is rolled back afterwards.

    Under the stack's chaos lock, rollbacks an earlier killed run left in the
    journal are replayed first. The stack must then be steady before the test
    starts, and is waited for after the rollbacks, so one test's outage never
    leaks into the next.
    """
    lock_path = chaos_journal.path.with_suffix(".run.lock")
    budget = stack.profile.doc.chaos.recovery_s
    with FileLock(str(lock_path), timeout=CHAOS_LOCK_TIMEOUT_S):
        for line in replay(chaos_journal, service_control):
            log.warning("chaos journal: %s", line)
        before = wait_steady(stack, service_control, chaos_journal, budget)
        if not before.steady:
            pytest.fail(f"stack is not steady before the fault: {before.describe()}")

        session = ChaosSession(
            stack.profile, service_control, chaos_journal, stack.supervisor_socket
        )
        with session:
            yield session
        after = wait_steady(stack, service_control, chaos_journal, budget)
        if not after.steady:
            log.error("stack not steady after rollback: %s", after.describe())
