"""Gates, checks and evidence: the model every report is built from.

A test joins a gate with ``@pytest.mark.gate("day1", item="...")``. Each test
run becomes a ``CheckResult`` carrying the evidence the test recorded; a
``GateResult`` groups the checks of one gate and derives its verdict.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

EvidenceValue = str | int | float | bool | None


class Outcome(enum.Enum):
    """The outcome of one check."""

    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    SKIPPED = "skipped"


class Verdict(enum.Enum):
    """The verdict of one gate."""

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    WAIVED = "waived"
    NOT_RUN = "not run"


@dataclass(frozen=True, slots=True)
class Evidence:
    """One measured fact: a name, its value and, where it has one, a unit."""

    name: str
    value: EvidenceValue
    unit: str = ""

    def render(self) -> str:
        """Return the fact as ``name = value unit`` for reports."""
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.name} = {self.value}{unit}"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One test of one gate, with what it measured."""

    nodeid: str
    gate: str
    item: str
    outcome: Outcome
    duration_s: float
    evidence: tuple[Evidence, ...] = ()
    message: str = ""


@dataclass(frozen=True, slots=True)
class Attestation:
    """A checklist item no machine can check, vouched for by a person."""

    item: str
    note: str
    operator: str
    at: str


@dataclass(slots=True)
class GateResult:
    """The checks of one gate and the verdict they add up to."""

    name: str
    blocking: bool
    checks: list[CheckResult] = field(default_factory=list)
    waived: bool = False

    def count(self, outcome: Outcome) -> int:
        """Return how many checks ended with ``outcome``."""
        return sum(1 for check in self.checks if check.outcome is outcome)

    @property
    def verdict(self) -> Verdict:
        outcomes = {check.outcome for check in self.checks}
        if Outcome.ERROR in outcomes:
            return Verdict.ERROR
        if Outcome.FAILED in outcomes:
            return Verdict.FAIL
        if self.waived:
            return Verdict.WAIVED
        if Outcome.PASSED in outcomes:
            return Verdict.PASS
        return Verdict.NOT_RUN

    @property
    def slowest(self) -> CheckResult | None:
        """The check that ran longest, or None when every check was skipped."""
        ran = [check for check in self.checks if check.outcome is not Outcome.SKIPPED]
        if not ran:
            return None
        return max(ran, key=lambda check: check.duration_s)

    @property
    def blocks(self) -> bool:
        """Return whether this gate should stop the deploy."""
        return self.blocking and self.verdict in (Verdict.FAIL, Verdict.ERROR)


def group_checks(
    checks: Iterable[CheckResult], blocking: Iterable[str]
) -> dict[str, GateResult]:
    """Group checks by gate, in the order gates first appear."""
    blocking_set = set(blocking)
    gates: dict[str, GateResult] = {}
    for check in checks:
        gate = gates.get(check.gate)
        if gate is None:
            gate = GateResult(check.gate, blocking=check.gate in blocking_set)
            gates[check.gate] = gate
        gate.checks.append(check)
    return gates


def evidence_from(values: Mapping[str, EvidenceValue]) -> tuple[Evidence, ...]:
    """Turn a plain mapping into evidence records without units."""
    return tuple(Evidence(name, value) for name, value in values.items())


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What a sign-off names besides the checks: stack, people and versions."""

    stack: str
    profile_path: str
    provisioner: str
    operator: str
    started_at: str
    finished_at: str
    attestations: tuple[Attestation, ...] = ()
    versions: tuple[Evidence, ...] = ()
    exit_status: int = 0
