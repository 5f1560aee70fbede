"""The service control contract that chaos faults are made through.

Each substrate implements it with its own manager: supervisord for the local
stack (``supervisor.py``), systemd on this machine or on a host reached over
ssh (``systemd.py``); the Kubernetes API for pods is not built. Faults use
only these methods, and read process identity and state through them too
(the processes may live on another host), so a gate written against the
local stack runs unchanged on a host whose profile allows chaos.
"""

from __future__ import annotations

from typing import Protocol

from pytest_stackcheck.control.proc import ProcessRef


class ServiceControl(Protocol):
    """Start, stop, signal and inspect the services of one stack."""

    def names(self) -> list[str]:
        """Return the names of every controlled service."""
        ...

    def start(self, name: str, wait: bool = True) -> None:
        """Start service ``name``; a no-op when it already runs."""
        ...

    def stop(self, name: str, wait: bool = True) -> None:
        """Stop service ``name`` through the manager (no automatic restart)."""
        ...

    def restart(self, name: str) -> None:
        """Stop then start service ``name`` through the manager."""
        ...

    def is_running(self, name: str) -> bool:
        """Return whether the manager reports ``name`` as running."""
        ...

    def main_pid(self, name: str) -> int:
        """Return the main pid of ``name``, or 0 when it does not run."""
        ...

    def restart_count(self, name: str) -> int:
        """Return how often the manager restarted ``name`` on its own."""
        ...

    def process(self, name: str) -> ProcessRef | None:
        """Return the identity of the main process of ``name``, or None."""
        ...

    def processes(self, name: str) -> list[ProcessRef]:
        """Return the main process of ``name`` and its descendants."""
        ...

    def process_state(self, process: ProcessRef) -> str:
        """Return the one-letter state of ``process`` (R, S, T, Z), '' if gone."""
        ...

    def is_paused(self, name: str) -> bool:
        """Return whether any process of ``name`` is stopped (state T)."""
        ...

    def describe(self, name: str) -> str:
        """Return the manager's view of ``name`` in words, for a message."""
        ...

    def signal(self, name: str, signum: int) -> ProcessRef:
        """Send ``signum`` directly to the main process of ``name``."""
        ...

    def pause(self, name: str) -> list[ProcessRef]:
        """Stop (SIGSTOP) the process tree of ``name``; return what was paused."""
        ...

    def resume(self, processes: list[ProcessRef]) -> None:
        """Continue (SIGCONT) processes that ``pause`` returned, if still there."""
        ...
