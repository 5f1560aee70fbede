"""The nightly chaos schedule: random faults from a seed, steady state between.

Hypothesis stateful testing draws the schedule: each rule is one fault on one
target, and the invariant is the steady state, checked after every fault. The
seed given with ``--chaos-seed`` fixes the draw, so a failing night is
replayed with the same seed. Shrinking is off, because every step costs real
seconds of outage and a failure report already lists the steps taken.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import httpx

from pytest_stackcheck.chaos.faults import ChaosSession, FaultKind, Injection
from pytest_stackcheck.chaos.recovery import (
    PROBE_TIMEOUT_S,
    Recovery,
    measure_recovery,
    probes_for,
)
from pytest_stackcheck.chaos.steady import INFRASTRUCTURE, wait_steady
from pytest_stackcheck.errors import MissingDependency
from pytest_stackcheck.provision.base import LiveStack

log = logging.getLogger("pytest_stackcheck")

APP_FAULTS = tuple(FaultKind)
INFRASTRUCTURE_FAULTS = (FaultKind.KILL, FaultKind.RESTART, FaultKind.PAUSE)
# How long a pause or a stop lasts before its rollback.
HOLD_S = 0.5


@dataclass(frozen=True, slots=True)
class Step:
    """One fault of the schedule and how the stack recovered from it."""

    number: int
    kind: FaultKind
    target: str
    recovery: Recovery

    def describe(self) -> str:
        """Return the step as one line."""
        return f"step {self.number}: {self.kind.value} on {self.target}: " + (
            self.recovery.describe()
        )


@dataclass
class Schedule:
    """The faults a seeded run made, in order."""

    seed: int
    steps: list[Step] = field(default_factory=list)
    failure: str = ""


def choices(
    stack: LiveStack, controlled: list[str] | None = None
) -> list[tuple[FaultKind, str]]:
    """Return every (fault, target) pair the schedule draws from.

    With ``controlled`` given, servers outside it (a systemd stack whose
    profile names no unit for them) are left out.
    """
    servers = [
        name for name in INFRASTRUCTURE if controlled is None or name in controlled
    ]
    pairs = [(kind, name) for name in stack.profile.doc.services for kind in APP_FAULTS]
    pairs += [(kind, name) for name in servers for kind in INFRASTRUCTURE_FAULTS]
    return pairs


def dependents(stack: LiveStack, target: str) -> list[str]:
    """Return the services whose health depends on ``target``."""
    services = stack.profile.doc.services
    if target == "postgresql":
        return [name for name, spec in services.items() if spec.database]
    if target == "nats":
        return [name for name, spec in services.items() if spec.nats]
    return []


def run_schedule(stack: LiveStack, session: ChaosSession, seed: int) -> Schedule:
    """Run a random schedule of at most ``chaos.max_faults`` faults from ``seed``.

    Raises AssertionError (with the steps so far) when a target does not
    recover within its budget or the stack is not steady after a fault. The
    failure is kept outside Hypothesis and raised after the run, because
    Hypothesis would otherwise replay the schedule to confirm it, and a
    replay against a real stack is neither cheap nor repeatable.
    """
    try:
        import hypothesis
        from hypothesis import strategies
        from hypothesis.stateful import (
            RuleBasedStateMachine,
            invariant,
            rule,
            run_state_machine_as_test,
        )
    except ImportError as exc:
        raise MissingDependency("hypothesis", "chaos") from exc

    schedule = Schedule(seed)
    settings = stack.profile.doc.chaos
    examples = [0]

    class FaultSchedule(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            examples[0] += 1

        @rule(pair=strategies.sampled_from(choices(stack, session.control.names())))
        def fault(self, pair: tuple[FaultKind, str]) -> None:
            # Hypothesis always runs the simplest example first, in which
            # every draw is the first choice, so only the second one acts.
            if schedule.failure or examples[0] < 2:
                return
            kind, target = pair
            step = _apply(stack, session, kind, target, len(schedule.steps) + 1)
            schedule.steps.append(step)
            if not step.recovery.within_budget:
                schedule.failure = step.describe()

        @invariant()
        def steady(self) -> None:
            if schedule.failure or examples[0] < 2:
                return
            state = wait_steady(
                stack, session.control, session.journal, settings.recovery_s
            )
            if not state.steady:
                schedule.failure = f"not steady after the last step: {state.describe()}"

    hypothesis.seed(seed)(FaultSchedule)
    run_state_machine_as_test(
        FaultSchedule,
        settings=hypothesis.settings(
            max_examples=2,
            stateful_step_count=settings.max_faults,
            phases=[hypothesis.Phase.generate],
            database=None,
            deadline=None,
            suppress_health_check=list(hypothesis.HealthCheck),
            print_blob=False,
        ),
    )
    if schedule.failure:
        raise AssertionError(_failure(schedule, schedule.failure))
    return schedule


def _apply(
    stack: LiveStack, session: ChaosSession, kind: FaultKind, target: str, number: int
) -> Step:
    injection: Injection = session.inject(kind, target)
    if kind in (FaultKind.PAUSE, FaultKind.STOP_START):
        time.sleep(HOLD_S)
        session.undo(injection)

    budget = stack.profile.doc.chaos.budget_s(target)
    with httpx.Client(timeout=PROBE_TIMEOUT_S) as client:
        recovery = measure_recovery(
            f"step {number} {target} after {kind.value}",
            probes_for(stack, client, [target, *dependents(stack, target)]),
            injection.at,
            budget,
        )
    # A recovered death leaves nothing to undo, and its pending rollback (a
    # start, a no-op now) would read as a fault left behind.
    session.undo(injection)
    step = Step(number, kind, target, recovery)
    log.info("chaos schedule: %s", step.describe())
    return step


def _failure(schedule: Schedule, reason: str) -> str:
    steps = "; ".join(step.describe() for step in schedule.steps)
    return (
        f"chaos schedule with --chaos-seed {schedule.seed} failed: {reason}; "
        f"steps so far: {steps}"
    )
