"""Wait until a condition holds, keeping what was last seen for the report."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Waited(Generic[T]):
    """The outcome of a wait: whether it held, the last reading and its cost."""

    ok: bool
    last: T | None
    attempts: int
    elapsed_s: float
    error: str = ""


def wait_until(
    read: Callable[[], T],
    holds: Callable[[T], bool],
    timeout_s: float,
    interval_s: float,
    abort: Callable[[], str] | None = None,
) -> Waited[T]:
    """Call ``read`` until ``holds`` accepts its value or ``timeout_s`` passes.

    Exceptions from ``read`` count as a failed attempt; the last one is kept
    in ``error`` so that a timeout reports what went wrong, not only that it
    did. ``read`` runs at least once, however small the timeout. ``abort``,
    called after each failed attempt, ends the wait early when it returns a
    non-empty reason, which becomes ``error``.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    attempts = 0
    last: T | None = None
    error = ""

    while True:
        attempts += 1
        try:
            last = read()
            error = ""
            if holds(last):
                return Waited(True, last, attempts, time.monotonic() - started)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"

        reason = abort() if abort is not None else ""
        if reason:
            return Waited(False, last, attempts, time.monotonic() - started, reason)
        if time.monotonic() + interval_s > deadline:
            return Waited(False, last, attempts, time.monotonic() - started, error)
        time.sleep(interval_s)


def require(waited: Waited[T], what: str, describe: Callable[[T], str]) -> T:
    """Return the last reading if the wait held, else fail with what was seen.

    The failure names the condition, how long and how often it was tried, and
    the last reading (or the last error), so the operator sees the symptom.
    """
    if waited.ok and waited.last is not None:
        return waited.last
    seen = describe(waited.last) if waited.last is not None else "nothing"
    error = f"; last error: {waited.error}" if waited.error else ""
    raise AssertionError(
        f"{what}: did not hold after {waited.elapsed_s:.1f} s and "
        f"{waited.attempts} tries; last seen: {seen}{error}"
    )
