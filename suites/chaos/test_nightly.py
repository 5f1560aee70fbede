"""The nightly schedule: random faults from ``--chaos-seed N``, steady between."""

from __future__ import annotations

import pytest

from pytest_stackcheck.chaos.nightly import run_schedule


@pytest.mark.gate("chaos", item="random fault schedule keeps the steady state")
def test_random_fault_schedule(request, stack, chaos, evidence):
    seed = request.config.getoption("stackcheck_chaos_seed")
    if seed is None:
        pytest.skip("the nightly schedule runs only with --chaos-seed N")
    evidence.record("chaos_seed", seed)

    schedule = run_schedule(stack, chaos, seed)

    for step in schedule.steps:
        evidence.record(f"step_{step.number}", step.describe())
    # A step that did not recover is drawn at its budget.
    points = [
        (step.number, step.recovery.seconds or step.recovery.budget_s)
        for step in schedule.steps
    ]
    evidence.plot(
        f"chaos schedule, seed {seed}",
        {"recovery time": points},
        "step",
        "seconds from fault to healthy",
    )
    assert schedule.steps, f"seed {seed} drew no fault"
