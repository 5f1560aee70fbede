"""Host-side probes: process state, restart policy and logs of each service.

A local stack answers through its supervisord; a deployed stack answers
through systemd (``systemctl`` and ``journalctl``), on this machine or on
``stack.host`` over ssh (``hostexec``).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_stackcheck.probes.hostexec import HostRunner, runner_for

if TYPE_CHECKING:
    from pytest_stackcheck.provision.base import LiveStack

# Error lines in the formats of the stack's servers: Python logging and
# tracebacks, PostgreSQL (ERROR:/FATAL:/PANIC:), nats-server ([ERR]/[FTL]),
# nginx ([error] and worse) and supervisord (CRIT).
ERROR_LINE = re.compile(
    r"\b(ERROR|CRITICAL|FATAL|PANIC)\b"
    r"|Traceback \(most recent call last\)"
    r"|\[(ERR|FTL)\]"
    r"|\[(error|crit|alert|emerg)\]"
    r"|\bCRIT\b"
)


@dataclass(frozen=True, slots=True)
class LogFinding:
    """One error line found in a service's log."""

    source: str
    line: str


# systemctl is-active exits 3 for an inactive or failed unit and 4 for an
# unknown one; its output says which.
IS_ACTIVE_CODES = (0, 1, 2, 3, 4)


class NoServiceManager(Exception):
    """Neither a local supervisord nor systemd on the stack's host is there."""


def manager_of(stack: LiveStack) -> str:
    """Return 'supervisor' or 'systemd', or raise NoServiceManager.

    A stack on another host (``stack.host``) is taken to run systemd; when
    it cannot be reached, the checks fail with the ssh error instead of
    skipping.
    """
    if stack.supervisor_socket is not None:
        return "supervisor"
    if stack.profile.doc.stack.host or shutil.which("systemctl"):
        return "systemd"
    raise NoServiceManager(
        "no service manager reachable: the stack has no supervisord, "
        "stack.host is empty and this machine has no systemctl"
    )


def unit_of(stack: LiveStack, name: str) -> str:
    """Return the systemd unit of service ``name``."""
    unit = stack.profile.doc.services[name].unit or name
    return unit if "." in unit else f"{unit}.service"


def process_states(stack: LiveStack) -> dict[str, str]:
    """Return each supervised program's state, such as RUNNING."""
    if manager_of(stack) == "supervisor":
        from pytest_stackcheck.control.supervisor import SupervisorControl

        assert stack.supervisor_socket is not None
        control = SupervisorControl(stack.supervisor_socket)
        return {status.name: status.state for status in control.statuses()}

    runner = runner_for(stack.profile)
    states: dict[str, str] = {}
    for name in stack.profile.doc.services:
        unit = unit_of(stack, name)
        result = runner.run(["systemctl", "is-active", unit], ok_codes=IS_ACTIVE_CODES)
        states[name] = result.stdout.strip().upper() or "UNKNOWN"
    return states


def restart_policy(stack: LiveStack, name: str) -> str:
    """Return the restart policy in force, in systemd's words (always, ...)."""
    if manager_of(stack) == "supervisor":
        from pytest_stackcheck.control.supervisor import SupervisorControl

        assert stack.supervisor_socket is not None
        assert stack.workdir is not None
        control = SupervisorControl(stack.supervisor_socket)
        config = control.configs(stack.workdir / "supervisord.conf")[name]
        return _supervisor_policy(config.autorestart)

    runner = runner_for(stack.profile)
    return systemctl_show(runner, unit_of(stack, name), "Restart") or "unknown"


def restart_prevented(stack: LiveStack, name: str) -> str:
    """Return the exit statuses and signals after which no restart happens.

    systemd applies RestartPreventExitStatus= whatever the Restart= setting,
    so a unit with Restart=always and RestartPreventExitStatus=0 stays down
    after a clean exit. supervisord has no such setting, so it returns ''.
    """
    if manager_of(stack) == "supervisor":
        return ""
    runner = runner_for(stack.profile)
    return systemctl_show(runner, unit_of(stack, name), "RestartPreventExitStatus")


def _supervisor_policy(autorestart: str) -> str:
    # supervisord's autorestart is true, false or unexpected; "unexpected"
    # restarts only on exit codes outside exitcodes, as Restart=on-failure.
    text = autorestart.strip().lower()
    if text == "unexpected":
        return "on-failure"
    if text in ("true", "1", "yes", "on"):
        return "always"
    return "no"


def log_sources(stack: LiveStack) -> dict[str, Path]:
    """Return the captured log of every supervised program and nginx's error log.

    supervisord's own log and nginx's access log are left out: the first
    carries supervisord's warnings about itself, the second request paths.
    """
    if stack.log_dir is None:
        return {}
    skipped = {"supervisord", "nginx-access"}
    return {
        path.stem: path
        for path in sorted(stack.log_dir.glob("*.log"))
        if path.stem not in skipped
    }


def error_lines(
    stack: LiveStack, limit: int = 20
) -> tuple[dict[str, int], list[LogFinding]]:
    """Return line counts per log source and up to ``limit`` error lines."""
    counts: dict[str, int] = {}
    findings: list[LogFinding] = []

    if manager_of(stack) == "supervisor":
        for source, path in log_sources(stack).items():
            text = path.read_text(encoding="utf-8", errors="replace")
            lines = text.splitlines()
            counts[source] = len(lines)
            findings += [
                LogFinding(source, line) for line in lines if ERROR_LINE.search(line)
            ]
        return counts, findings[:limit]

    runner = runner_for(stack.profile)
    for name in stack.profile.doc.services:
        lines = _journal_since_start(runner, unit_of(stack, name), stack.started_at)
        counts[name] = len(lines)
        findings += [
            LogFinding(name, line) for line in lines if ERROR_LINE.search(line)
        ]
    return counts, findings[:limit]


def journal_lines(stack: LiveStack, name: str) -> list[str]:
    """Return the journal lines of service ``name``'s current run."""
    runner = runner_for(stack.profile)
    return _journal_since_start(runner, unit_of(stack, name), stack.started_at)


def systemctl_show(runner: HostRunner, unit: str, prop: str) -> str:
    """Return one property of ``unit``, such as Restart or MainPID."""
    argv = ["systemctl", "show", f"--property={prop}", "--value", unit]
    return runner.run(argv).stdout.strip()


def _journal_since_start(
    runner: HostRunner, unit: str, fallback_since: float
) -> list[str]:
    """Return the journal lines of the unit's current run.

    A deploy restarts each unit, so "since start" means the unit's current
    invocation (systemd 232 and later stamp each entry with its ID), not the
    start of this pytest run, which for a quiet service would be no lines.
    Without an invocation ID the run's own start time is the bound.
    """
    invocation = systemctl_show(runner, unit, "InvocationID")
    selector = (
        [f"_SYSTEMD_INVOCATION_ID={invocation}"]
        if invocation
        else ["--unit", unit, "--since", f"@{int(fallback_since)}"]
    )
    # journalctl exits 1 when the filter matches no entry on some versions;
    # an empty journal is judged by the caller (no lines captured).
    result = runner.run(
        ["journalctl", *selector, "--no-pager", "--output=cat"], ok_codes=(0, 1)
    )
    return result.stdout.splitlines()
