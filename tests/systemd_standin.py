"""A stand-in for systemd as PID 1, which cannot run in this container.

It is a small unit manager that supervises REAL processes, plus the
``systemctl`` and ``journalctl`` commands the product calls, written as
wrapper scripts into ``ROOT/bin`` for a PATH the tests set. It implements
only what the product uses, with systemd's documented semantics
(systemd.service(5)):

- ``Restart=always`` restarts after every death except an explicit stop;
  ``Restart=on-failure`` does not restart after exit status 0 or death by
  SIGHUP, SIGINT, SIGTERM or SIGPIPE (the clean signals); ``Restart=no``
  never restarts. ``RestartSec`` delays a restart, during which the unit is
  ``activating``/``auto-restart``; ``NRestarts`` counts automatic restarts
  only (not ``systemctl restart``).
- Properties: ActiveState, SubState, Result, MainPID, NRestarts,
  InvocationID (new for each start), Restart, ExecMainCode and
  ExecMainStatus.
- Each invocation's output goes to its own journal file, read back by
  ``journalctl _SYSTEMD_INVOCATION_ID=ID`` or ``--unit U --since @T``.
- ``systemctl``: ``show --property=P... [--value]``, ``is-active``,
  ``start``, ``stop``, ``restart`` (``--no-block`` accepted) and
  ``kill --kill-whom=main|all --signal=SIG``; every other command or flag
  exits 1 saying the stand-in lacks it.

A unit is a file ``ROOT/units/NAME.service`` with ``ExecStart=`` (a
shell-quoted argv), ``Restart=``, ``RestartSec=`` (seconds) and any number
of ``Environment=KEY=VALUE`` lines. The manager runs as
``python systemd_standin.py manager ROOT`` and answers the commands on the
unix socket ``ROOT/manager.sock``. Each unit's process gets its own process
group, which plays the unit's cgroup for ``--kill-whom=all``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

CLEAN_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE)
POLL_S = 0.02
STOP_TIMEOUT_S = 10.0
MANAGER_LIFETIME_S = 1800.0
# systemd's ExecMainCode values (CLD_* from waitid).
CLD_EXITED = 1
CLD_KILLED = 2


@dataclass
class Unit:
    """One service unit and its runtime state."""

    name: str
    argv: list[str]
    restart: str = "no"
    restart_sec: float = 0.1
    environment: dict[str, str] = field(default_factory=dict)
    active_state: str = "inactive"
    sub_state: str = "dead"
    result: str = "success"
    process: subprocess.Popen[bytes] | None = None
    invocation: str = ""
    n_restarts: int = 0
    exec_code: int = 0
    exec_status: int = 0
    restart_at: float | None = None


def load_unit(path: Path) -> Unit:
    """Read a unit file of the form described in the module docstring."""
    unit = Unit(name=path.name, argv=[])
    for line in path.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        if key == "ExecStart":
            unit.argv = shlex.split(value)
        elif key == "Restart":
            unit.restart = value
        elif key == "RestartSec":
            unit.restart_sec = float(value)
        elif key == "Environment":
            name, _, setting = value.partition("=")
            unit.environment[name] = setting
    return unit


class Manager:
    """Supervise the units of ROOT/units and serve systemctl requests."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.journal = root / "journal"
        self.journal.mkdir(exist_ok=True)
        self.lock = threading.Lock()
        self.units = {
            path.name: load_unit(path) for path in sorted(root.glob("units/*"))
        }

    def spawn(self, unit: Unit) -> None:
        unit.invocation = uuid.uuid4().hex
        log = (self.journal / f"{unit.name}.{unit.invocation}.log").open("ab")
        unit.process = subprocess.Popen(
            unit.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **unit.environment},
            start_new_session=True,
        )
        log.close()
        unit.active_state, unit.sub_state = "active", "running"
        unit.result = "success"
        unit.restart_at = None

    def start(self, unit: Unit) -> None:
        if unit.active_state == "active":
            return
        self.spawn(unit)

    def stop(self, unit: Unit) -> None:
        unit.restart_at = None
        process = unit.process
        if process is not None and process.poll() is None:
            unit.active_state, unit.sub_state = "deactivating", "stop-sigterm"
            _killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                _killpg(process.pid, signal.SIGKILL)
                process.wait(STOP_TIMEOUT_S)
        unit.process = None
        unit.active_state, unit.sub_state, unit.result = "inactive", "dead", "success"

    def watch(self) -> None:
        """Reap dead main processes and apply each unit's Restart= policy."""
        deadline = time.monotonic() + MANAGER_LIFETIME_S
        while time.monotonic() < deadline:
            with self.lock:
                for unit in self.units.values():
                    self._check(unit)
            time.sleep(POLL_S)

    def _check(self, unit: Unit) -> None:
        if unit.restart_at is not None and time.monotonic() >= unit.restart_at:
            unit.n_restarts += 1
            self.spawn(unit)
            return
        process = unit.process
        if process is None or process.poll() is None:
            return

        code = process.returncode
        unit.process = None
        if code < 0:
            unit.exec_code, unit.exec_status = CLD_KILLED, -code
            clean = -code in CLEAN_SIGNALS
            unit.result = "success" if clean else "signal"
        else:
            unit.exec_code, unit.exec_status = CLD_EXITED, code
            clean = code == 0
            unit.result = "success" if clean else "exit-code"

        restart = unit.restart == "always" or (
            unit.restart == "on-failure" and not clean
        )
        if restart:
            unit.active_state, unit.sub_state = "activating", "auto-restart"
            unit.restart_at = time.monotonic() + unit.restart_sec
        elif clean:
            unit.active_state, unit.sub_state = "inactive", "dead"
        else:
            unit.active_state, unit.sub_state = "failed", "failed"

    def handle(self, argv: list[str]) -> tuple[int, str, str]:
        """Run one systemctl command; return its exit status and output."""
        command = argv[0]
        flags: list[str] = []
        names: list[str] = []
        for arg in argv[1:]:
            (flags if arg.startswith("--") else names).append(arg)
        with self.lock:
            missing = [name for name in names if name not in self.units]
            if missing and command != "is-active":
                return 5, "", f"Unit {missing[0]} not loaded.\n"
            units = [self.units[name] for name in names if name in self.units]
            if command == "show":
                return self._show(units[0], flags)
            if command == "is-active":
                state = units[0].active_state if units else "inactive"
                return (0 if state == "active" else 3), state + "\n", ""
            if command == "kill":
                return self._kill(units[0], flags)
            for unit in units:
                if command in ("stop", "restart"):
                    self.stop(unit)
                if command in ("start", "restart"):
                    self.start(unit)
            if command in ("start", "stop", "restart"):
                return 0, "", ""
        return 1, "", f"systemd stand-in: command {command!r} is not implemented\n"

    def _show(self, unit: Unit, flags: list[str]) -> tuple[int, str, str]:
        wanted = [f.split("=", 1)[1] for f in flags if f.startswith("--property=")]
        values = {
            "Id": unit.name,
            "ActiveState": unit.active_state,
            "SubState": unit.sub_state,
            "Result": unit.result,
            "MainPID": str(unit.process.pid if unit.process else 0),
            "NRestarts": str(unit.n_restarts),
            "InvocationID": unit.invocation,
            "Restart": unit.restart,
            # Units written by the tests never prevent a restart on any exit.
            "RestartPreventExitStatus": "",
            "ExecMainCode": str(unit.exec_code),
            "ExecMainStatus": str(unit.exec_status),
        }
        unknown = [name for name in wanted if name not in values]
        if unknown:
            message = f"systemd stand-in: property {unknown[0]} is not implemented\n"
            return 1, "", message
        if "--value" in flags:
            return 0, "".join(values[name] + "\n" for name in wanted), ""
        return 0, "".join(f"{name}={values[name]}\n" for name in wanted), ""

    def _kill(self, unit: Unit, flags: list[str]) -> tuple[int, str, str]:
        options = dict(f[2:].split("=", 1) for f in flags if "=" in f)
        name = options.get("signal", "SIGTERM")
        signum = signal.Signals[name if name.startswith("SIG") else "SIG" + name]
        process = unit.process
        if process is None or process.poll() is not None:
            return 1, "", f"Failed to kill unit {unit.name}: No main process\n"
        if options.get("kill-whom", "all") == "main":
            os.kill(process.pid, signum)
        else:
            _killpg(process.pid, signum)
        return 0, "", ""

    def shutdown(self) -> None:
        with self.lock:
            for unit in self.units.values():
                self.stop(unit)


def _killpg(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def serve(root: Path) -> None:
    """Run the manager: start every unit, then serve requests on the socket."""
    manager = Manager(root)
    with manager.lock:
        for unit in manager.units.values():
            manager.start(unit)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            argv = json.loads(self.rfile.readline())
            answer = manager.handle(argv)
            self.wfile.write(json.dumps(answer).encode() + b"\n")

    socket_path = root / "manager.sock"
    server = socketserver.ThreadingUnixStreamServer(str(socket_path), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        manager.watch()
    finally:
        server.shutdown()
        manager.shutdown()


def systemctl(root: Path, argv: list[str]) -> int:
    """The systemctl command: forward argv to the manager, print its reply."""
    if not argv:
        print("systemd stand-in: no command given", file=sys.stderr)
        return 1
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(root / "manager.sock"))
        sock.sendall(json.dumps(argv).encode() + b"\n")
        code, output, errors = json.loads(sock.makefile().readline())
    sys.stdout.write(output)
    sys.stderr.write(errors)
    return int(code)


def journalctl(root: Path, argv: list[str]) -> int:
    """The journalctl command: print the captured output that argv selects."""
    invocation, unit, since = "", "", 0.0
    arguments = iter(argv)
    for arg in arguments:
        if arg.startswith("_SYSTEMD_INVOCATION_ID="):
            invocation = arg.split("=", 1)[1]
        elif arg == "--unit":
            unit = next(arguments)
        elif arg == "--since":
            since = float(next(arguments).lstrip("@"))
        elif arg not in ("--no-pager", "--output=cat"):
            message = f"systemd stand-in: journalctl {arg} is not implemented"
            print(message, file=sys.stderr)
            return 1

    pattern = f"*.{invocation}.log" if invocation else f"{unit}.*.log"
    files = sorted(
        (p for p in (root / "journal").glob(pattern) if p.stat().st_mtime >= since),
        key=lambda p: p.stat().st_mtime,
    )
    if not files:
        print("-- No entries --", file=sys.stderr)
        return 0
    for path in files:
        sys.stdout.write(path.read_text(encoding="utf-8", errors="replace"))
    return 0


def install(root: Path, units: dict[str, str]) -> Path:
    """Write unit files and the command wrappers under ``root``; return bin/."""
    (root / "units").mkdir(parents=True, exist_ok=True)
    for name, text in units.items():
        (root / "units" / name).write_text(text, encoding="utf-8")
    bin_dir = root / "bin"
    bin_dir.mkdir(exist_ok=True)
    for command in ("systemctl", "journalctl"):
        wrapper = bin_dir / command
        wrapper.write_text(
            "#!/bin/sh\n"
            f"exec {shlex.quote(sys.executable)} {shlex.quote(__file__)} "
            f'{command} {shlex.quote(str(root))} "$@"\n',
            encoding="utf-8",
        )
        wrapper.chmod(0o755)
    return bin_dir


def unit_text(argv: list[str], restart: str, env: dict[str, str]) -> str:
    """Return a unit file for ``argv`` with ``Restart=restart``."""
    lines = [f"ExecStart={shlex.join(argv)}", f"Restart={restart}", "RestartSec=0.2"]
    lines += [f"Environment={key}={value}" for key, value in env.items()]
    return "\n".join(lines) + "\n"


class Running:
    """A manager process started by ``start_manager``."""

    def __init__(self, root: Path, process: subprocess.Popen[bytes]) -> None:
        self.root = root
        self.process = process

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S * 2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)


def start_manager(root: Path) -> Running:
    """Start the manager on ``root`` and wait (10 s at most) for its socket."""
    log = (root / "manager.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, __file__, "manager", str(root)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    deadline = time.monotonic() + 10
    while not (root / "manager.sock").exists():
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError(f"systemd stand-in did not start; see {root}")
        time.sleep(0.02)
    return Running(root, process)


def main() -> int:
    role, root, rest = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    if role == "manager":
        serve(root)
        return 0
    if role == "systemctl":
        return systemctl(root, rest)
    return journalctl(root, rest)


if __name__ == "__main__":
    sys.exit(main())
