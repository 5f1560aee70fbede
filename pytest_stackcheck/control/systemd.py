"""Service control through systemd, on this machine or on a host over ssh.

Every call is a ``systemctl`` command run through ``HostRunner``. Process
identity (pid and start time) and state are read from the host's own
``/proc``, so a rollback never signals a process that reused a pid, even
on another machine.

A signal goes to the unit's main process with ``systemctl kill
--kill-whom=main``: systemd queues no stop job for it, so the unit's
``Restart=`` setting decides what follows, exactly as after a crash. A
pause stops every process of the unit (``--kill-whom=all``).

The controlled units are those of the application services
(``services.NAME.unit``, default the service name) and of the servers
whose unit the profile names (``postgres.unit``, ``nats.unit``,
``nginx.unit``), under the names postgresql, nats and nginx that the chaos
suites use. A server without a unit is not controlled, and the checks that
need it skip with the key to set.
"""

from __future__ import annotations

import logging
import signal as signal_module
from typing import TYPE_CHECKING

from pytest_stackcheck.control import proc
from pytest_stackcheck.control.proc import ProcessRef
from pytest_stackcheck.errors import StackcheckError
from pytest_stackcheck.probes.hostexec import HostRunner, runner_for

if TYPE_CHECKING:
    from pytest_stackcheck.provision.base import LiveStack

log = logging.getLogger("pytest_stackcheck")

# systemctl start and stop wait for the job; a unit with a long
# TimeoutStopSec may take this long before systemctl returns.
JOB_TIMEOUT_S = 120.0
DESCRIBED = ("ActiveState", "SubState", "Result", "ExecMainCode", "ExecMainStatus")
# The stat line of every process, read in one call; cat exits 1 when a
# process vanished between the glob and the read.
PROC_TABLE = ["sh", "-c", "cat /proc/[0-9]*/stat 2>/dev/null; exit 0"]


class SystemdControl:
    """Start, stop, signal and inspect systemd units of one host."""

    def __init__(self, runner: HostRunner, units: dict[str, str]) -> None:
        self.runner = runner
        self.units = dict(units)

    @classmethod
    def for_stack(cls, stack: LiveStack) -> SystemdControl:
        """Control the units of the stack's services and servers on its host."""
        from pytest_stackcheck.probes.host import unit_of

        doc = stack.profile.doc
        units = {name: unit_of(stack, name) for name in doc.services}
        servers = {
            "postgresql": doc.postgres.unit,
            "nats": doc.nats.unit,
            "nginx": doc.nginx.unit,
        }
        for name, unit in servers.items():
            if unit:
                units.setdefault(name, unit if "." in unit else f"{unit}.service")
        return cls(runner_for(stack.profile), units)

    def unit(self, name: str) -> str:
        """Return the unit of service ``name``, or raise StackcheckError."""
        try:
            return self.units[name]
        except KeyError:
            raise StackcheckError(
                f"{name} has no systemd unit in the profile, so chaos cannot "
                f"control it on {self.runner.label}; the controlled services "
                f"are {sorted(self.units)}"
            ) from None

    def names(self) -> list[str]:
        """Return the name of every controlled service."""
        return list(self.units)

    def start(self, name: str, wait: bool = True) -> None:
        """Start the unit of ``name``; a no-op when it already runs."""
        log.info("systemd on %s: starting %s", self.runner.label, name)
        self._systemctl(["start", *self._no_block(wait), self.unit(name)])

    def stop(self, name: str, wait: bool = True) -> None:
        """Stop the unit of ``name``; systemd does not restart a stopped unit."""
        log.info("systemd on %s: stopping %s", self.runner.label, name)
        self._systemctl(["stop", *self._no_block(wait), self.unit(name)])

    def restart(self, name: str) -> None:
        """Stop then start the unit of ``name``."""
        log.info("systemd on %s: restarting %s", self.runner.label, name)
        self._systemctl(["restart", self.unit(name)])

    def is_running(self, name: str) -> bool:
        """Return whether the unit's ActiveState is ``active``."""
        return self.show(name, "ActiveState") == "active"

    def main_pid(self, name: str) -> int:
        """Return the unit's MainPID, 0 when it has no main process."""
        return _integer(self.show(name, "MainPID"), "MainPID", name)

    def restart_count(self, name: str) -> int:
        """Return NRestarts: the restarts systemd made on its own (systemd 235+)."""
        value = self.show(name, "NRestarts")
        if not value:
            raise StackcheckError(
                f"systemd on {self.runner.label} reports no NRestarts for "
                f"{self.unit(name)}; systemd 235 or later counts restarts"
            )
        return _integer(value, "NRestarts", name)

    def process(self, name: str) -> ProcessRef | None:
        """Return the identity of the unit's main process, or None."""
        pid = self.main_pid(name)
        if not pid:
            return None
        found = proc.tree_in(self._table(pid), pid)
        return found[0] if found else None

    def processes(self, name: str) -> list[ProcessRef]:
        """Return the unit's main process and its descendants."""
        pid = self.main_pid(name)
        return proc.tree_in(self._table(), pid) if pid else []

    def process_state(self, process: ProcessRef) -> str:
        """Return the state of ``process`` on the host, or '' when it is gone."""
        return proc.state_in(self._table(process.pid), process)

    def is_paused(self, name: str) -> bool:
        """Return whether any process of the unit is stopped (state T)."""
        pid = self.main_pid(name)
        if not pid:
            return False
        table = self._table()
        return any(proc.state_in(table, p) == "T" for p in proc.tree_in(table, pid))

    def describe(self, name: str) -> str:
        """Return the unit's state, sub-state, result and main exit status."""
        argv = ["show", *(f"--property={p}" for p in DESCRIBED), self.unit(name)]
        output = self._systemctl(argv)
        values = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
        return ", ".join(f"{key}={values.get(key, '?')}" for key in DESCRIBED)

    def signal(self, name: str, signum: int) -> ProcessRef:
        """Send ``signum`` to the unit's main process (``systemctl kill``)."""
        target = self.process(name)
        signame = signal_module.Signals(signum).name
        if target is None:
            raise StackcheckError(
                f"{self.unit(name)} on {self.runner.label} has no running main "
                f"process to send {signame} to; start it first"
            )
        log.info("sending %s to %s (pid %d)", signame, name, target.pid)
        self._kill(name, "main", signame)
        return target

    def pause(self, name: str) -> list[ProcessRef]:
        """Send SIGSTOP to every process of the unit; return what was paused."""
        processes = self.processes(name)
        if not processes:
            raise StackcheckError(
                f"{self.unit(name)} on {self.runner.label} does not run, so it "
                "cannot be paused"
            )
        self._kill(name, "all", "SIGSTOP")
        log.info("paused %s (%d processes)", name, len(processes))
        return processes

    def resume(self, processes: list[ProcessRef]) -> None:
        """Send SIGCONT to each paused process that still exists on the host."""
        table = self._table()
        alive = [str(p.pid) for p in processes if proc.state_in(table, p)]
        if alive:
            # kill exits 1 when one of them exited since the table was read.
            self.runner.run(["kill", "-CONT", *alive], ok_codes=(0, 1))

    def show(self, name: str, prop: str) -> str:
        """Return one property of the unit of ``name``."""
        argv = ["show", f"--property={prop}", "--value", self.unit(name)]
        return self._systemctl(argv).strip()

    def _kill(self, name: str, whom: str, signame: str) -> None:
        argv = ["kill", f"--kill-whom={whom}", f"--signal={signame}", self.unit(name)]
        self._systemctl(argv)

    def _systemctl(self, argv: list[str]) -> str:
        return self.runner.run(["systemctl", *argv], timeout_s=JOB_TIMEOUT_S).stdout

    def _table(self, pid: int | None = None) -> dict[int, list[str]]:
        """Read the host's process table, or only the line of ``pid``."""
        if pid is None:
            return proc.parse_table(self.runner.run(PROC_TABLE).stdout)
        argv = ["sh", "-c", f"cat /proc/{int(pid)}/stat 2>/dev/null; exit 0"]
        return proc.parse_table(self.runner.run(argv).stdout)

    @staticmethod
    def _no_block(wait: bool) -> list[str]:
        return [] if wait else ["--no-block"]


def _integer(value: str, prop: str, name: str) -> int:
    try:
        return int(value or "0")
    except ValueError:
        raise StackcheckError(
            f"systemd reports {prop}={value!r} for {name}, not a number"
        ) from None
