"""Service control through supervisord's XML-RPC interface on a unix socket."""

from __future__ import annotations

import configparser
import logging
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_stackcheck.errors import MissingDependency, StackcheckError

log = logging.getLogger("pytest_stackcheck")


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
        transport = SupervisorTransport(None, None, f"unix://{socket_path}")
        self._proxy: Any = xmlrpc.client.ServerProxy(
            "http://127.0.0.1", transport=transport
        )

    def _call(self, method: str, *args: object) -> Any:
        try:
            return getattr(self._proxy.supervisor, method)(*args)
        except (OSError, xmlrpc.client.Error) as exc:
            raise StackcheckError(
                f"supervisord at {self.socket_path}: {method} failed: {exc}"
            ) from exc

    def ping(self) -> bool:
        """Return whether supervisord answers on its socket."""
        try:
            return self._call("getState")["statename"] == "RUNNING"  # type: ignore[no-any-return]
        except StackcheckError:
            return False

    def wait_until_up(self, timeout_s: float) -> None:
        """Wait until supervisord answers, or raise after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.socket_path.exists() and self.ping():
                return
            time.sleep(0.02)
        raise StackcheckError(
            f"supervisord did not answer on {self.socket_path} within {timeout_s} s"
        )

    def start(self, name: str, wait: bool = True) -> None:
        """Start program ``name``."""
        log.info("supervisor: starting %s", name)
        self._call("startProcess", name, wait)

    def stop(self, name: str, wait: bool = True) -> None:
        """Stop program ``name``."""
        log.info("supervisor: stopping %s", name)
        self._call("stopProcess", name, wait)

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

    def exited_since_start(self) -> list[str]:
        """Return the programs that have exited at least once since they started.

        supervisord sets a program's ``stop`` time when its process ends, for
        whatever reason, and a restart does not clear it.
        """
        return [
            str(info["name"])
            for info in self._call("getAllProcessInfo")
            if float(info["stop"]) > 0
        ]

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
