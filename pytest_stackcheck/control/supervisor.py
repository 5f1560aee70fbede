"""Service control through supervisord's XML-RPC interface on a unix socket."""

from __future__ import annotations

import configparser
import http.client
import logging
import os
import re
import signal as signal_module
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_stackcheck.control import proc
from pytest_stackcheck.control.proc import ProcessRef
from pytest_stackcheck.errors import MissingDependency, StackcheckError

log = logging.getLogger("pytest_stackcheck")

# supervisord's main log names each event with the program in quotes or not:
# "spawned: 'nats' with pid 12", "exited: nats (terminated by SIGKILL; ...)".
_LOG_EVENT = re.compile(r" (spawned|exited|stopped): '?([^' ]+)'? ")


@dataclass(frozen=True, slots=True)
class ProcessStatus:
    """One supervised program as supervisord reports it."""

    name: str
    state: str
    pid: int
    started_at: float
    exit_status: int
    description: str


@dataclass(frozen=True, slots=True)
class ProcessConfig:
    """The restart settings supervisord holds for one program."""

    name: str
    autorestart: str
    exitcodes: tuple[int, ...]
    autostart: bool


class SupervisorControl:
    """Start, stop and inspect programs of one supervisord instance."""

    def __init__(self, socket_path: Path) -> None:
        try:
            from supervisor.xmlrpc import SupervisorTransport
        except ImportError as exc:
            raise MissingDependency("supervisor", "local") from exc

        self.socket_path = socket_path
        self._transport_class = SupervisorTransport
        self._proxy: Any = self._connect()

    def _connect(self) -> Any:
        transport = self._transport_class(None, None, f"unix://{self.socket_path}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def _call(self, method: str, *args: object) -> Any:
        try:
            return getattr(self._proxy.supervisor, method)(*args)
        except http.client.HTTPException:
            # A call cut short (by KeyboardInterrupt, say) leaves the shared
            # HTTP connection mid-request, so the next call gets a new one.
            self._proxy = self._connect()
        except (OSError, xmlrpc.client.Error) as exc:
            raise StackcheckError(
                f"supervisord at {self.socket_path}: {method} failed: {exc}"
            ) from exc
        try:
            return getattr(self._proxy.supervisor, method)(*args)
        except (OSError, xmlrpc.client.Error, http.client.HTTPException) as exc:
            raise StackcheckError(
                f"supervisord at {self.socket_path}: {method} failed: {exc}"
            ) from exc

    def ping(self) -> bool:
        """Return whether supervisord responds on its socket."""
        try:
            return self._call("getState")["statename"] == "RUNNING"  # type: ignore[no-any-return]
        except StackcheckError:
            return False

    def wait_until_up(self, timeout_s: float) -> None:
        """Wait until supervisord responds, or raise after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.socket_path.exists() and self.ping():
                return
            time.sleep(0.02)
        raise StackcheckError(
            f"supervisord did not respond on {self.socket_path} within {timeout_s} s"
        )

    def start(self, name: str, wait: bool = True) -> None:
        """Start program ``name``; a no-op when it already runs."""
        log.info("supervisor: starting %s", name)
        try:
            self._call("startProcess", name, wait)
        except StackcheckError as exc:
            if "ALREADY_STARTED" not in str(exc):
                raise

    def stop(self, name: str, wait: bool = True) -> None:
        """Stop program ``name``; a no-op when it does not run."""
        log.info("supervisor: stopping %s", name)
        try:
            self._call("stopProcess", name, wait)
        except StackcheckError as exc:
            if "NOT_RUNNING" not in str(exc):
                raise

    def restart(self, name: str) -> None:
        """Stop then start program ``name``."""
        self.stop(name)
        self.start(name)

    def names(self) -> list[str]:
        """Return the name of every program."""
        return [status.name for status in self.statuses()]

    def is_running(self, name: str) -> bool:
        """Return whether supervisord reports ``name`` as RUNNING."""
        return self.status(name).state == "RUNNING"

    def main_pid(self, name: str) -> int:
        """Return the pid of program ``name``, or 0 when it does not run."""
        return self.status(name).pid

    def restart_count(self, name: str) -> int:
        """Count the automatic restarts of ``name`` in supervisord's main log.

        A spawn counts when it follows an ``exited`` event of the program,
        which is how supervisord logs a death it did not cause. A spawn after
        ``stopped`` (a stop through supervisord) is a manual start.
        """
        text: str = self._call("readLog", 0, 0)
        count = 0
        last = ""
        for match in _LOG_EVENT.finditer(text):
            event, program = match.groups()
            if program != name:
                continue
            if event == "spawned" and last == "exited":
                count += 1
            last = event
        return count

    def process(self, name: str) -> ProcessRef | None:
        """Return the identity of the main process of ``name``, or None."""
        pid = self.main_pid(name)
        return proc.ref(pid) if pid else None

    def processes(self, name: str) -> list[ProcessRef]:
        """Return the main process of ``name`` and its descendants."""
        pid = self.main_pid(name)
        return proc.tree(pid) if pid else []

    def process_state(self, process: ProcessRef) -> str:
        """Return the one-letter state of ``process``, or '' when it is gone."""
        return process.state()

    def is_paused(self, name: str) -> bool:
        """Return whether any process of ``name`` is stopped by SIGSTOP."""
        return any(p.state() == "T" for p in self.processes(name))

    def describe(self, name: str) -> str:
        """Return supervisord's state of ``name`` and its last exit status."""
        status = self.status(name)
        return f"state {status.state}, exit status {status.exit_status}"

    def signal(self, name: str, signum: int) -> ProcessRef:
        """Send ``signum`` to the main pid of ``name`` directly, not via supervisord."""
        pid = self.main_pid(name)
        target = proc.ref(pid) if pid else None
        if target is None:
            raise StackcheckError(
                f"supervisord program {name} has no running process to send "
                f"{signal_module.Signals(signum).name} to; start it first"
            )
        log.info(
            "sending %s to %s (pid %d)",
            signal_module.Signals(signum).name,
            name,
            pid,
        )
        os.kill(pid, signum)
        return target

    def pause(self, name: str) -> list[ProcessRef]:
        """Send SIGSTOP to the main process of ``name`` and all its descendants."""
        pid = self.main_pid(name)
        if not pid:
            raise StackcheckError(
                f"supervisord program {name} does not run, so it cannot be paused"
            )
        processes = proc.tree(pid)
        for process in processes:
            proc.send(process, signal_module.SIGSTOP)
        log.info("paused %s (%d processes)", name, len(processes))
        return processes

    def resume(self, processes: list[ProcessRef]) -> None:
        """Send SIGCONT to each paused process that still exists."""
        for process in processes:
            proc.send(process, signal_module.SIGCONT)

    def stop_all(self) -> None:
        """Stop every program, in reverse priority order."""
        self._call("stopAllProcesses", True)

    def shutdown(self) -> None:
        """Ask supervisord itself to exit."""
        self._call("shutdown")

    def status(self, name: str) -> ProcessStatus:
        """Return the current state of program ``name``."""
        return _status(self._call("getProcessInfo", name))

    def statuses(self) -> list[ProcessStatus]:
        """Return the state of every program."""
        return [_status(info) for info in self._call("getAllProcessInfo")]

    def configs(self, config_file: Path) -> dict[str, ProcessConfig]:
        """Return the restart settings of every program, by name.

        supervisord's XML-RPC ``getAllConfigInfo`` leaves out ``autorestart``
        (supervisor 4.3), so the policy is read from the file supervisord
        loaded, and only for programs supervisord reports as configured.
        """
        parser = configparser.RawConfigParser()
        parser.read(config_file, encoding="utf-8")
        result: dict[str, ProcessConfig] = {}
        for info in self._call("getAllConfigInfo"):
            section = f"program:{info['name']}"
            autorestart = parser.get(section, "autorestart", fallback="unexpected")
            result[info["name"]] = ProcessConfig(
                name=info["name"],
                autorestart=autorestart,
                exitcodes=tuple(int(code) for code in info["exitcodes"]),
                autostart=bool(info["autostart"]),
            )
        return result


def _status(info: dict[str, Any]) -> ProcessStatus:
    return ProcessStatus(
        name=str(info["name"]),
        state=str(info["statename"]),
        pid=int(info["pid"]),
        started_at=float(info["start"]),
        exit_status=int(info["exitstatus"]),
        description=str(info["description"]),
    )
