"""Process identity, read from /proc on this machine or from a host's /proc text.

A pid alone is not an identity: after a restart the kernel may hand the same
number to another process. ``ProcessRef`` pairs the pid with the process's
start time in clock ticks since boot (field 22 of ``/proc/PID/stat``), so a
rollback that runs later, or in a later run, signals only the process it
paused and never a stranger that reused the pid.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class ProcessRef:
    """One process: its pid and its start time in clock ticks since boot."""

    pid: int
    start_ticks: int

    def matches(self) -> bool:
        """Return whether this exact process still exists (zombies excluded)."""
        stat = _stat_fields(self.pid)
        return stat is not None and stat[19] == str(self.start_ticks) and stat[0] != "Z"

    def state(self) -> str:
        """Return the one-letter state (R, S, T, Z...) or '' when it is gone."""
        stat = _stat_fields(self.pid)
        if stat is None or stat[19] != str(self.start_ticks):
            return ""
        return stat[0]


def _stat_fields(pid: int) -> list[str] | None:
    """Return the fields of /proc/PID/stat after the command name, or None.

    Index 0 is the state (field 3), index 1 the parent pid (field 4) and index
    19 the start time (field 22).
    """
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return parse_stat(text)[1]


def parse_stat(line: str) -> tuple[int, list[str]]:
    """Split one /proc/PID/stat line into the pid and the fields after the name.

    The command name (field 2) is in parentheses and may itself hold spaces
    and parentheses, so the fields are taken after its last ``)``.
    """
    head, _, rest = line.rpartition(")")
    return int(head.split("(", 1)[0]), rest.split()


def parse_table(text: str) -> dict[int, list[str]]:
    """Map each pid to its stat fields, from many /proc/PID/stat lines.

    This is how a host reached over ssh reports its processes: the output
    of ``cat /proc/[0-9]*/stat``. Lines that do not parse are skipped.
    """
    table: dict[int, list[str]] = {}
    for line in text.splitlines():
        try:
            pid, stat = parse_stat(line)
        except ValueError:
            continue
        if len(stat) > 19:
            table[pid] = stat
    return table


def state_in(table: dict[int, list[str]], process: ProcessRef) -> str:
    """Return the state of ``process`` in ``table``, or '' when it is gone."""
    stat = table.get(process.pid)
    if stat is None or stat[19] != str(process.start_ticks):
        return ""
    return stat[0]


def tree_in(table: dict[int, list[str]], pid: int) -> list[ProcessRef]:
    """Return ``pid`` and its descendants in ``table``, parents first."""
    children: dict[int, list[int]] = {}
    for child, stat in table.items():
        children.setdefault(int(stat[1]), []).append(child)

    ordered: list[ProcessRef] = []
    pending = [pid]
    while pending and len(ordered) < 10_000:
        current = pending.pop(0)
        fields = table.get(current)
        if fields is not None and fields[0] != "Z":
            ordered.append(ProcessRef(current, int(fields[19])))
        pending.extend(children.get(current, []))
    return ordered


def ref(pid: int) -> ProcessRef | None:
    """Return the identity of the running process ``pid``, or None."""
    stat = _stat_fields(pid)
    if stat is None or stat[0] == "Z":
        return None
    return ProcessRef(pid, int(stat[19]))


def tree(pid: int) -> list[ProcessRef]:
    """Return ``pid`` and all its descendants, parents before children."""
    table: dict[int, list[str]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat_fields(int(entry.name))
        if stat is not None:
            table[int(entry.name)] = stat
    return tree_in(table, pid)


def send(process: ProcessRef, signum: int) -> bool:
    """Send ``signum`` to ``process`` if it still exists; return whether sent."""
    if not process.matches():
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signum)
        return True
    return False
