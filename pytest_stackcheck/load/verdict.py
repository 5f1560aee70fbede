"""SLO verdicts: every threshold with its measured value, and why a run is void.

A verdict passes only when each threshold is met and the run itself was
valid: a run that never reached the requested users or rate, or completed
no request at all, fails with that reason instead of being judged on the
little it measured.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass


class Bound(enum.Enum):
    """The side of its limit that a measured value must stay on."""

    AT_MOST = "<="
    AT_LEAST = ">="


@dataclass(frozen=True, slots=True)
class Threshold:
    """One SLO: the profile key, what was measured, and the limit it must meet."""

    key: str
    label: str
    measured: float
    limit: float
    unit: str
    bound: Bound

    @property
    def ok(self) -> bool:
        if math.isnan(self.measured):
            return False
        if self.bound is Bound.AT_MOST:
            return self.measured <= self.limit
        return self.measured >= self.limit

    def describe(self) -> str:
        """Return one line such as ``FAIL load.gateway.p95_ms: ... 12 ms <= 10 ms``."""
        state = "pass" if self.ok else "FAIL"
        return (
            f"{state} {self.key}: {self.label} = {_number(self.measured)}"
            f"{self.unit}, required {self.bound.value} {_number(self.limit)}"
            f"{self.unit}"
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """The judgement of one load run."""

    title: str
    thresholds: tuple[Threshold, ...]
    invalid: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.invalid and all(t.ok for t in self.thresholds)

    @property
    def missed(self) -> tuple[Threshold, ...]:
        return tuple(t for t in self.thresholds if not t.ok)

    def message(self) -> str:
        """Return the verdict: a summary line, the run's faults, every threshold."""
        if self.ok:
            head = f"{self.title}: all {len(self.thresholds)} SLOs met"
        else:
            parts = [f"{len(self.missed)} of {len(self.thresholds)} SLOs missed"]
            if self.invalid:
                parts.insert(0, "the run did not produce the requested load")
            head = f"{self.title}: " + "; ".join(parts)
        lines = [head]
        lines += [f"  INVALID RUN: {reason}" for reason in self.invalid]
        lines += [f"  {threshold.describe()}" for threshold in self.thresholds]
        return "\n".join(lines)


def _number(value: float) -> str:
    if math.isnan(value):
        return "not measured"
    if math.isinf(value):
        return "unbounded"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def percentile(values: Iterable[float], share: float) -> float:
    """Return the ``share`` percentile (0 to 1) of ``values`` by nearest rank.

    NaN stands for "no sample", which a threshold treats as missed.
    """
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]
