"""The rollback journal: faults still in effect, written before each injection.

A fault's rollback is written here before the fault is made and removed once
the rollback has run. When a run dies before its rollbacks (``kill -9``, a
lost session), the journal still lists them, and the next run replays them
before it injects anything: it continues paused processes and starts stopped
services. Entries name their targets exactly (a supervisord socket, a pid
with its start time), so an entry whose stack is gone is dropped, never
applied to a stranger.

The file is JSON, one object per pending rollback, guarded by a file lock so
that pytest-xdist workers and child processes share it safely.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from filelock import FileLock

log = logging.getLogger("pytest_stackcheck")

LOCK_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One pending rollback.

    ``action`` is ``start`` (start ``service`` through the supervisord at
    ``socket``) or ``resume`` (send SIGCONT to each ``[pid, start_ticks]`` of
    ``processes``).
    """

    action: str
    service: str
    socket: str = ""
    processes: tuple[tuple[int, int], ...] = ()
    fault: str = ""
    created_at: float = field(default_factory=time.time)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


def default_path(stack_name: str, workdir: Path | None) -> Path:
    """Return the journal of a stack when none is configured.

    A local stack keeps it in its own directory, so two local stacks on one
    machine never share a journal, and teardown removes it with the stack. A
    deployed stack, which outlives the run, has one per profile name in the
    temporary directory.
    """
    if workdir is not None:
        return workdir / "chaos-journal.json"
    directory = Path(tempfile.gettempdir()) / "pytest-stackcheck"
    return directory / f"chaos-{stack_name}.json"


class Journal:
    """Pending rollbacks in a JSON file shared by every process of a run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT_S)

    def add(self, entry: JournalEntry) -> None:
        """Append ``entry`` and flush it to disk before returning."""
        with self._lock:
            entries = self._read()
            entries.append(entry)
            self._write(entries)

    def replace(self, entry: JournalEntry) -> None:
        """Replace the entry with the same id in one atomic write."""
        with self._lock:
            others = [e for e in self._read() if e.id != entry.id]
            self._write([*others, entry])

    def remove(self, entry_id: str) -> None:
        """Drop the entry with ``entry_id``; a missing one is not an error."""
        with self._lock:
            self._write([e for e in self._read() if e.id != entry_id])

    def entries(self) -> list[JournalEntry]:
        """Return the pending rollbacks, oldest first."""
        with self._lock:
            return self._read()

    def _read(self) -> list[JournalEntry]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.error(
                "chaos journal %s is unreadable (%s); its rollbacks are lost, "
                "check the stack by hand",
                self.path,
                exc,
            )
            return []
        return [
            JournalEntry(
                action=str(item["action"]),
                service=str(item["service"]),
                socket=str(item.get("socket", "")),
                processes=tuple((int(p), int(t)) for p, t in item.get("processes", [])),
                fault=str(item.get("fault", "")),
                created_at=float(item.get("created_at", 0.0)),
                id=str(item["id"]),
            )
            for item in raw
        ]

    def _write(self, entries: list[JournalEntry]) -> None:
        temporary = self.path.with_suffix(".tmp")
        with temporary.open("w", encoding="utf-8") as handle:
            json.dump([asdict(entry) for entry in entries], handle)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(self.path)
