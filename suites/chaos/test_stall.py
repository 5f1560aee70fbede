"""Services come back from pauses, manager stops and restarts within budget.

A pause (SIGSTOP, then SIGCONT after a hold) stands for a stalled process or
a frozen VM; a stop then start and a restart through the manager stand for
an operator's intervention. nginx is killed too, because every route goes
through it.
"""

from __future__ import annotations

import time

import httpx
import pytest

from pytest_stackcheck.chaos.faults import FaultKind
from pytest_stackcheck.chaos.nightly import dependents
from pytest_stackcheck.chaos.policy import require_controlled
from pytest_stackcheck.chaos.recovery import (
    PROBE_TIMEOUT_S,
    measure_recovery,
    probes_for,
)

STALLS = [FaultKind.PAUSE, FaultKind.STOP_START, FaultKind.RESTART]
HOLD_S = 1.0


def _recover(stack, chaos, evidence, kind: FaultKind, target: str) -> None:
    injection = chaos.inject(kind, target)
    if kind in (FaultKind.PAUSE, FaultKind.STOP_START):
        time.sleep(HOLD_S)
        chaos.undo(injection)

    with httpx.Client(timeout=PROBE_TIMEOUT_S) as client:
        recovery = measure_recovery(
            f"{target} after {kind.value}",
            probes_for(stack, client, [target, *dependents(stack, target)]),
            injection.at,
            stack.profile.doc.chaos.budget_s(target),
        )
    recovery.record(evidence)
    assert recovery.within_budget, recovery.describe()


@pytest.mark.gate("chaos", item="service recovers from a stall or manager stop")
@pytest.mark.parametrize("fault", STALLS, ids=[kind.value for kind in STALLS])
def test_service_recovers_from_stall(stack, chaos, evidence, service_name, fault):
    _recover(stack, chaos, evidence, fault, service_name)


@pytest.mark.gate("chaos", item="nginx restarts after kill -9")
def test_nginx_restarts_after_kill(stack, chaos, evidence):
    require_controlled(chaos.control, "nginx")
    _recover(stack, chaos, evidence, FaultKind.KILL, "nginx")
