"""NATS server configuration read from ``/varz`` and judged before any traffic.

nats-server returns 200 on ``/healthz`` in configurations that lose data
or reject the stack's own traffic. A JetStream store left at its default
under the temporary directory can be cleared on reboot. A ``max_file_store``
of 0 leaves no room for any file-backed stream. A ``max_payload`` smaller
than the LLM requests the gateway accepts rejects those requests on NATS.
None of these shows until data is gone or a large request fails, so the
checks read the configuration.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

# Without store_dir, nats-server 2.15 stores in os.TempDir() + "/jetstream"
# (or "/nats/jetstream" for an empty jetstream block) and logs "Temporary
# storage directory used, data could be lost on system reboot".
DEFAULT_STORE_TAILS = (("jetstream",), ("nats", "jetstream"))
TEMPORARY_DIRS = ("/tmp", "/var/tmp")

# Filesystems kept in memory: a store on one loses every stream on a power
# cut or reboot, whatever the sync_interval setting.
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
MOUNTS = Path("/proc/self/mounts")

# nats-server's max_payload when nats.conf sets none (1 MiB).
DEFAULT_MAX_PAYLOAD = 1024 * 1024


def jetstream_config(varz: dict[str, Any]) -> dict[str, Any]:
    """Return ``jetstream.config`` of a ``/varz`` document, empty when off."""
    jetstream = varz.get("jetstream") or {}
    config = jetstream.get("config") if isinstance(jetstream, dict) else None
    return config if isinstance(config, dict) else {}


def is_default_temp_store(store_dir: str) -> bool:
    """Return whether ``store_dir`` is nats-server's default temporary store."""
    path = PurePosixPath(store_dir)
    temporary = {PurePosixPath(d) for d in (*TEMPORARY_DIRS, tempfile.gettempdir())}
    for tail in DEFAULT_STORE_TAILS:
        if len(path.parts) <= len(tail) or path.parts[-len(tail) :] != tail:
            continue
        if path.parents[len(tail) - 1] in temporary:
            return True
    return False


def filesystem_type(path: str, mounts: Path = MOUNTS) -> str:
    """Return the type of the filesystem mounted at or above local ``path``."""
    target = PurePosixPath(os.path.realpath(path))
    best, kind = PurePosixPath("/"), ""
    for line in mounts.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        # /proc/self/mounts writes a space in a mount point as \040.
        point = PurePosixPath(fields[1].replace("\\040", " "))
        if target != point and point not in target.parents:
            continue
        if len(point.parts) >= len(best.parts):
            best, kind = point, fields[2]
    return kind


def memory_store_problem(store_dir: str, fs_type: str) -> str:
    """Return why a store on filesystem ``fs_type`` is not durable, or ''."""
    if fs_type not in MEMORY_FILESYSTEMS:
        return ""
    return (
        f"store_dir = {store_dir} is on a {fs_type} filesystem, which is "
        "memory: a power cut or reboot loses every stream, whatever the "
        "sync_interval setting; put store_dir on a disk"
    )


def file_store_problems(varz: dict[str, Any]) -> list[str]:
    """List the ways JetStream's file store cannot keep streams across reboots."""
    config = jetstream_config(varz)
    if not config:
        return [
            "JetStream is off: /varz has no jetstream.config; add a jetstream "
            "{ store_dir: ... } block to nats.conf"
        ]

    problems: list[str] = []
    store_dir = str(config.get("store_dir", ""))
    max_file_store = int(config.get("max_storage", 0))
    if max_file_store <= 0:
        problems.append(
            f"max_file_store = {max_file_store} bytes, expected more than 0: "
            "JetStream refuses every file-backed stream with 'insufficient "
            "storage resources available', so nothing the apps publish is "
            "kept on disk; set max_file_store to the room the store may use in "
            "the jetstream block of nats.conf"
        )
    if is_default_temp_store(store_dir):
        problems.append(
            f"store_dir = {store_dir}, nats-server's default under the "
            "temporary directory because nats.conf sets no store_dir: the "
            "system may clear it on reboot and take every stream with it; set "
            "store_dir to a persistent path in the jetstream block of nats.conf"
        )
    return problems


def payload_problem(varz: dict[str, Any], needed_bytes: int, source: str) -> str:
    """Return why ``max_payload`` cannot carry ``needed_bytes``, or ''.

    ``source`` names the profile key that declares ``needed_bytes``.
    """
    max_payload = int(varz.get("max_payload", DEFAULT_MAX_PAYLOAD))
    if max_payload >= needed_bytes:
        return ""
    return (
        f"NATS max_payload = {max_payload} bytes, below the {needed_bytes} bytes "
        f"of {source}: an LLM request that size sent on NATS fails with "
        "'maximum payload exceeded' while the same request over HTTP works; "
        f"set max_payload: {needed_bytes} in nats.conf (nats-server's default "
        f"is {DEFAULT_MAX_PAYLOAD}), or lower {source}"
    )
