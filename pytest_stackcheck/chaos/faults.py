"""Faults made through service control, each with a rollback registered first.

``ChaosSession`` is the only way the suites make a fault. For every fault it

1. writes the rollback to the journal and to its own stack of rollbacks,
2. makes the fault through the ``ServiceControl``,
3. verifies that the fault took effect (the process is gone, stopped or
   paused) and raises ``FaultNotApplied`` otherwise, so no outcome is judged
   on a fault that never happened,

and on leaving the ``with`` block (pass, failure, error or KeyboardInterrupt)
it runs the rollbacks, newest first, and removes them from the journal.
"""

from __future__ import annotations

import enum
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

from pytest_stackcheck.chaos.journal import Journal, JournalEntry
from pytest_stackcheck.chaos.policy import require_chaos_allowed
from pytest_stackcheck.control import proc
from pytest_stackcheck.control.base import ServiceControl
from pytest_stackcheck.control.proc import ProcessRef
from pytest_stackcheck.errors import StackcheckError
from pytest_stackcheck.profile import Profile

log = logging.getLogger("pytest_stackcheck")

VERIFY_TIMEOUT_S = 10.0
VERIFY_INTERVAL_S = 0.01
ENSURE_RUNNING_S = 20.0


class FaultKind(enum.Enum):
    """Kind of death or stall made on a service."""

    KILL = "kill"
    TERM = "term"
    EXIT_ZERO = "exit-zero"
    STOP_START = "stop-start"
    PAUSE = "pause"
    RESTART = "restart"


# Deaths the manager did not cause, so its restart policy decides what follows.
UNMANAGED_DEATHS = (FaultKind.KILL, FaultKind.TERM, FaultKind.EXIT_ZERO)


class FaultNotApplied(StackcheckError):
    """A fault was made but did not take effect, so nothing can be judged."""


@dataclass(frozen=True, slots=True)
class Injection:
    """A fault that took effect: what, on which service, and when.

    ``at`` is ``time.monotonic()`` just before the fault was made, the zero
    of every recovery time measured after it.
    """

    kind: FaultKind
    service: str
    at: float
    wall_at: float
    process: ProcessRef | None
    restart_count_before: int
    entry_id: str


class ChaosSession:
    """Make faults on one stack and undo every one of them on exit."""

    def __init__(
        self,
        profile: Profile,
        control: ServiceControl,
        journal: Journal,
        socket: Path | None = None,
    ) -> None:
        require_chaos_allowed(profile)
        self.profile = profile
        self.control = control
        self.journal = journal
        self.socket = str(socket) if socket else ""
        self.injections: list[Injection] = []
        self._rollbacks: list[tuple[str, str, Callable[[], None]]] = []

    def __enter__(self) -> ChaosSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.rollback()

    def inject(self, kind: FaultKind, service: str) -> Injection:
        """Make fault ``kind`` on ``service`` and return it once it took effect."""
        process = self.control.process(service)
        if process is None:
            raise FaultNotApplied(
                f"{kind.value} on {service}: the service does not run (no main "
                "process), so the fault would prove nothing; start it first"
            )
        pid = process.pid
        restarts = self.control.restart_count(service)

        if kind is FaultKind.PAUSE:
            entry_id = self._register_resume(service, self.control.processes(service))
        else:
            entry_id = self._register_start(service, kind)

        at = time.monotonic()
        wall_at = time.time()
        log.info("chaos: %s on %s (pid %d)", kind.value, service, pid)
        self._make(kind, service, entry_id)
        self._verify(kind, service, process)
        injection = Injection(kind, service, at, wall_at, process, restarts, entry_id)
        self.injections.append(injection)
        return injection

    def _make(self, kind: FaultKind, service: str, entry_id: str) -> None:
        if kind is FaultKind.KILL:
            self.control.signal(service, signal.SIGKILL)
        elif kind is FaultKind.TERM:
            self.control.signal(service, signal.SIGTERM)
        elif kind is FaultKind.EXIT_ZERO:
            self.control.signal(service, self.exit_zero_signal())
        elif kind is FaultKind.STOP_START:
            self.control.stop(service)
        elif kind is FaultKind.RESTART:
            self.control.restart(service)
        elif kind is FaultKind.PAUSE:
            paused = self.control.pause(service)
            self._replace_resume(entry_id, service, paused)

    def exit_zero_signal(self) -> signal.Signals:
        """Return the profile's ``chaos.exit_zero_signal`` as a signal."""
        name = self.profile.doc.chaos.exit_zero_signal
        try:
            return signal.Signals[name if name.startswith("SIG") else "SIG" + name]
        except KeyError:
            raise StackcheckError(
                f"chaos.exit_zero_signal = {name!r} is not a signal name; use "
                "one such as 'SIGUSR2'"
            ) from None

    def _verify(self, kind: FaultKind, service: str, process: ProcessRef) -> None:
        deadline = time.monotonic() + VERIFY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._took_effect(kind, service, process):
                return
            time.sleep(VERIFY_INTERVAL_S)
        state = self.control.process_state(process)
        raise FaultNotApplied(
            f"{kind.value} on {service}: pid {process.pid} still in state "
            f"{state or 'gone'!r} after {VERIFY_TIMEOUT_S} s, so the "
            "fault did not take effect"
        )

    def _took_effect(self, kind: FaultKind, service: str, process: ProcessRef) -> bool:
        state = self.control.process_state(process)
        if kind is FaultKind.PAUSE:
            return state == "T"
        gone = state in ("", "Z")
        if kind is FaultKind.STOP_START:
            return gone and not self.control.is_running(service)
        return gone

    def undo(self, injection: Injection) -> None:
        """Run the rollback of ``injection`` now (resume a pause, start a stop)."""
        self.undo_entry(injection.entry_id)

    def undo_entry(self, entry_id: str) -> None:
        """Run the rollback registered under journal entry ``entry_id`` now."""
        for index, (registered_id, service, action) in enumerate(self._rollbacks):
            if registered_id == entry_id:
                del self._rollbacks[index]
                self._run(entry_id, service, action)
                return

    def rollback(self) -> None:
        """Run every pending rollback, newest first, even if some fail."""
        failures: list[str] = []
        while self._rollbacks:
            entry_id, service, action = self._rollbacks.pop()
            try:
                self._run(entry_id, service, action)
            except Exception as exc:
                failures.append(f"{service}: {exc}")
        if failures:
            raise StackcheckError(
                "chaos rollback failed, the stack may still carry a fault: "
                + "; ".join(failures)
                + f"; the journal {self.journal.path} keeps them for the next run"
            )

    def _run(self, entry_id: str, service: str, action: Callable[[], None]) -> None:
        action()
        self.journal.remove(entry_id)
        log.info("chaos: rolled back the fault on %s", service)

    def register(self, entry: JournalEntry, action: Callable[[], None]) -> None:
        """Register a rollback for a fault made outside this class, before it."""
        self.journal.add(entry)
        self._rollbacks.append((entry.id, entry.service, action))

    def _register_start(self, service: str, kind: FaultKind) -> str:
        entry = JournalEntry(
            action="start", service=service, socket=self.socket, fault=kind.value
        )
        self.journal.add(entry)
        self._rollbacks.append(
            (entry.id, service, lambda: ensure_running(self.control, service))
        )
        return entry.id

    def _register_resume(self, service: str, processes: list[ProcessRef]) -> str:
        entry = _resume_entry(service, processes, self.socket)
        self.journal.add(entry)
        self._rollbacks.append(
            (entry.id, service, lambda: self._resume_and_start(service, entry.id))
        )
        return entry.id

    def _replace_resume(
        self, entry_id: str, service: str, processes: list[ProcessRef]
    ) -> None:
        # The tree paused may differ from the one listed before the pause (a
        # child forked in between), so the entry is rewritten to the final list.
        self.journal.replace(_resume_entry(service, processes, self.socket, entry_id))

    def _resume_and_start(self, service: str, entry_id: str) -> None:
        for entry in self.journal.entries():
            if entry.id == entry_id:
                self.control.resume(_refs(entry))
        ensure_running(self.control, service)


def ensure_running(control: ServiceControl, service: str) -> None:
    """Start ``service`` until the manager reports it running, for 20 s at most.

    A stop cut short by an interrupt leaves the program stopping or backing
    off for a moment, and a start then fails, so starts are retried.
    """
    deadline = time.monotonic() + ENSURE_RUNNING_S
    error = ""
    while time.monotonic() < deadline:
        try:
            if control.is_running(service):
                return
            control.start(service)
        except StackcheckError as exc:
            error = str(exc)
        time.sleep(0.2)
    raise StackcheckError(
        f"{service} is not running {ENSURE_RUNNING_S} s after the rollback "
        f"started it (last error: {error or 'none'}); start it by hand"
    )


def _resume_entry(
    service: str,
    processes: list[ProcessRef],
    socket: str,
    entry_id: str | None = None,
) -> JournalEntry:
    entry = JournalEntry(
        action="resume",
        service=service,
        socket=socket,
        processes=tuple((p.pid, p.start_ticks) for p in processes),
        fault=FaultKind.PAUSE.value,
    )
    return entry if entry_id is None else replace(entry, id=entry_id)


def _refs(entry: JournalEntry) -> list[ProcessRef]:
    return [ProcessRef(pid, ticks) for pid, ticks in entry.processes]


def replay(journal: Journal, control: ServiceControl | None = None) -> list[str]:
    """Undo what an earlier, killed run left in ``journal``; return what was done.

    An entry with a supervisord socket belongs to a local stack: a ``resume``
    entry continues each listed process that still exists on this machine,
    and a ``start`` entry starts its service if the socket still exists; an
    entry whose socket is gone belonged to a stack that no longer exists and
    is dropped. An entry without a socket belongs to a stack that outlives
    the run (systemd on a host): ``control``, the manager of that stack,
    continues its processes and starts its service.
    """
    from pytest_stackcheck.control.supervisor import SupervisorControl

    done: list[str] = []
    for entry in journal.entries():
        if entry.action == "clear-link":
            done.append(_clear_link(entry))
            journal.remove(entry.id)
            continue
        manager: ServiceControl | None = control
        if entry.socket:
            manager = None
            if Path(entry.socket).exists():
                manager = SupervisorControl(Path(entry.socket))
        if entry.action == "resume":
            _continue(entry, control if not entry.socket else None)
            done.append(f"continued {entry.service} ({len(entry.processes)} pids)")
        if manager is not None:
            try:
                ensure_running(manager, entry.service)
                done.append(f"started {entry.service}")
            except StackcheckError as exc:
                log.warning("chaos journal: cannot start %s: %s", entry.service, exc)
        journal.remove(entry.id)
    for line in done:
        log.warning("chaos journal %s: %s left by an earlier run", journal.path, line)
    return done


def _continue(entry: JournalEntry, control: ServiceControl | None) -> None:
    if control is not None:
        control.resume(_refs(entry))
        return
    for process in _refs(entry):
        proc.send(process, signal.SIGCONT)


def _clear_link(entry: JournalEntry) -> str:
    from pytest_stackcheck.chaos.network import ProxyControl

    if not Path(entry.socket).exists():
        return f"dropped {entry.fault} on link {entry.service} (proxy gone)"
    try:
        ProxyControl(Path(entry.socket)).set_fault(entry.service, "none")
    except StackcheckError as exc:
        log.warning("chaos journal: cannot clear link %s: %s", entry.service, exc)
        return f"failed to clear link {entry.service}"
    return f"cleared {entry.fault} on link {entry.service}"
