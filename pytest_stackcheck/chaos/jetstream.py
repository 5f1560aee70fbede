"""JetStream configuration that decides whether acknowledged writes survive.

JetStream acknowledges a publish before it calls fsync and flushes every
``sync_interval`` (2 minutes by default, nats-server 2.10 and later), so on a
single node a power cut loses up to that window of acknowledged messages. A
``kill -9`` loses nothing because the kernel still has the pages, so a
restart test alone cannot catch it and the configuration must be read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

NANOSECONDS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class SyncVerdict:
    """Whether acknowledged JetStream writes survive a power cut."""

    ok: bool
    sync_always: bool
    sync_interval_s: float
    clustered: bool
    message: str


def sync_verdict(
    varz: dict[str, Any],
    accepted_loss_window_s: float,
    jsz: dict[str, Any] | None = None,
) -> SyncVerdict:
    """Judge the ``jetstream.config`` of ``/varz`` against the accepted window.

    A clustered server passes, because an ack there means a quorum of
    replicas has the message. A single node must sync on every write, or
    the profile must accept the window. With ``/jsz`` given, a server counts
    as clustered only while its JetStream meta group has a leader: a cluster
    block whose routes reach no peer leaves one server confirming alone.
    """
    config = varz.get("jetstream", {}).get("config", {})
    sync_always = bool(config.get("sync_always", False))
    interval_s = float(config.get("sync_interval", 0)) / NANOSECONDS
    cluster = varz.get("cluster") or {}
    clustered = bool(cluster.get("urls") or cluster.get("name"))
    leaderless = ""
    meta = (jsz or {}).get("meta_cluster") or {}
    if clustered and jsz is not None and not meta.get("leader"):
        clustered = False
        leaderless = (
            f"cluster {cluster.get('name', '')!r} is configured but JetStream has "
            f"no meta leader ({len(meta.get('replicas') or [])} peers connected, "
            f"cluster_size {meta.get('cluster_size', 0)}), so no replica "
            "confirms an ack; "
        )

    if not config:
        message = "JetStream is off: /varz has no jetstream.config"
        return SyncVerdict(False, False, 0.0, clustered, message)
    if sync_always:
        message = "sync_interval = always: every acknowledged write is on disk"
        return SyncVerdict(True, True, 0.0, clustered, message)
    if clustered:
        # NOTE: a quorum confirms only streams with replicas > 1; an R1 stream
        # on a cluster has the single-node window, and streams are not read.
        message = (
            f"sync_interval = {interval_s:g} s on a cluster: acks wait for a "
            "quorum of replicas"
        )
        return SyncVerdict(True, False, interval_s, clustered, message)

    within = interval_s <= accepted_loss_window_s
    message = leaderless + (
        f"JetStream on a single node acknowledges writes before fsync: "
        f"sync_interval = {interval_s:g} s (sync_always false), so a power cut "
        f"loses up to {interval_s:g} s of acknowledged publishes"
    )
    if within:
        message += (
            f", within the accepted chaos.accepted_loss_window_s = "
            f"{accepted_loss_window_s:g} s"
        )
    else:
        if accepted_loss_window_s > 0:
            message += (
                f", more than the {accepted_loss_window_s:g} s the profile accepts "
                "(chaos.accepted_loss_window_s)"
            )
        message += (
            "; set 'sync_interval: always' in the jetstream block of nats.conf, "
            f"or accept the window with chaos.accepted_loss_window_s = "
            f"{interval_s:g} in the stack profile"
        )
    return SyncVerdict(within, False, interval_s, clustered, message)


@dataclass(frozen=True, slots=True)
class StoreSpace:
    """Free space of the filesystem under the JetStream store directory.

    ``used_bytes`` is what JetStream already stores there: it counts against
    ``max_file_store`` and already sits on the filesystem, so the store has
    room when the free space covers the rest of the limit.
    """

    store_dir: str
    max_file_store: int
    free_bytes: int
    total_bytes: int
    used_bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.free_bytes + self.used_bytes >= self.max_file_store

    def describe(self) -> str:
        """Return the comparison as one line, with the fix when it fails."""
        text = (
            f"JetStream store {self.store_dir}: {self.free_bytes} bytes free of "
            f"{self.total_bytes} on its filesystem and {self.used_bytes} bytes "
            f"stored, max_file_store = {self.max_file_store} bytes"
        )
        if self.ok:
            return text
        return (
            text + "; the store fills before JetStream's limit applies, and then "
            "nats-server disables JetStream; lower max_file_store below the free "
            "space plus what is stored, or give the store a larger filesystem"
        )


def store_space(varz: dict[str, Any]) -> StoreSpace | None:
    """Measure the store's filesystem, or None when it is not on this machine."""
    jetstream = varz.get("jetstream", {})
    config = jetstream.get("config", {})
    store_dir = str(config.get("store_dir", ""))
    if not store_dir or not os.path.isdir(store_dir):
        return None
    stats = os.statvfs(store_dir)
    return StoreSpace(
        store_dir=store_dir,
        max_file_store=int(config.get("max_storage", 0)),
        free_bytes=stats.f_bavail * stats.f_frsize,
        total_bytes=stats.f_blocks * stats.f_frsize,
        used_bytes=int((jetstream.get("stats") or {}).get("storage", 0)),
    )
