"""Network faults on the fault proxy's links, verified before they are judged.

Each fault registers its rollback (clear the link's fault) in the session's
journal first. After it is set, one protocol round trip through the link
shows that it took effect: the reply is late by the latency, never comes
(partition), or the connection is reset. Loss is random, so it takes up to
``LOSS_PROBES`` round trips to see one stall for a retransmission.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_stackcheck.chaos.faults import ChaosSession, FaultNotApplied
from pytest_stackcheck.chaos.journal import JournalEntry
from pytest_stackcheck.errors import StackcheckError

CONTROL_TIMEOUT_S = 5.0
ROUND_TRIP_TIMEOUT_S = 1.0
# At 10 % loss, 60 round trips all pass without a loss with a chance of
# 0.9**60 (0.2 %) on NATS, which sends one chunk per round trip. The time
# bound keeps a fault that stalls every round trip from running long.
LOSS_PROBES = 60
LOSS_PROBE_BUDGET_S = 20.0
# PostgreSQL's SSLRequest: length 8 and code 80877103; the server replies
# with one byte, 'S' or 'N', before any authentication.
POSTGRES_SSL_REQUEST = struct.pack("!ii", 8, 80877103)


class ProxyControl:
    """Client of the fault proxy's control socket."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def request(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Send one JSON request and return the JSON reply, or raise."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.settimeout(CONTROL_TIMEOUT_S)
                client.connect(str(self.path))
                client.sendall(json.dumps(payload).encode() + b"\n")
                reply = client.makefile("rb").readline()
        except OSError as exc:
            raise StackcheckError(
                f"fault proxy at {self.path}: request {payload} failed: {exc}"
            ) from exc
        document: dict[str, Any] = json.loads(reply)
        if not document.get("ok"):
            raise StackcheckError(
                f"fault proxy at {self.path} rejected {payload}: {document}"
            )
        return document

    def set_fault(
        self, link: str, fault: str, latency_ms: int = 0, loss_percent: int = 0
    ) -> None:
        """Set ``fault`` on ``link`` ('none' clears it)."""
        self.request(
            {"link": link, "fault": fault, "ms": latency_ms, "percent": loss_percent}
        )

    def links(self) -> dict[str, dict[str, Any]]:
        """Return every link with its port, target and fault."""
        links: dict[str, dict[str, Any]] = self.request({"status": True})["links"]
        return links


@dataclass(frozen=True, slots=True)
class NetworkInjection:
    """A network fault that took effect, with the round trip that showed it."""

    link: str
    fault: str
    latency_ms: int
    loss_percent: int
    at: float
    round_trip: str
    entry_id: str


def round_trip(link: str, port: int) -> float:
    """Time one protocol round trip through ``port``; raise OSError on failure.

    NATS sends its INFO line on connect, and PostgreSQL replies to an
    SSLRequest with one byte, so neither needs credentials.
    """
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), ROUND_TRIP_TIMEOUT_S) as conn:
        conn.settimeout(ROUND_TRIP_TIMEOUT_S)
        if link == "postgresql":
            conn.sendall(POSTGRES_SSL_REQUEST)
        data = conn.recv(1)
        if not data:
            raise ConnectionResetError("connection closed without a reply")
    return time.monotonic() - started


def inject_network(
    session: ChaosSession,
    proxy: ProxyControl,
    link: str,
    fault: str,
    latency_ms: int = 0,
    loss_percent: int = 0,
) -> NetworkInjection:
    """Set ``fault`` on ``link`` with its rollback registered, and verify it."""
    links = proxy.links()
    if link not in links:
        raise FaultNotApplied(
            f"{fault} on link {link}: the fault proxy has no such link "
            f"(links: {sorted(links)})"
        )
    port = int(links[link]["listen_port"])
    entry = JournalEntry(
        action="clear-link", service=link, socket=str(proxy.path), fault=fault
    )
    session.register(entry, lambda: proxy.set_fault(link, "none"))

    at = time.monotonic()
    proxy.set_fault(link, fault, latency_ms, loss_percent)
    if fault == "loss":
        seen = _verify_loss(proxy, link, port)
    else:
        seen = _verify(link, port, fault, latency_ms)
    return NetworkInjection(link, fault, latency_ms, loss_percent, at, seen, entry.id)


def _verify_loss(proxy: ProxyControl, link: str, port: int) -> str:
    """Return the first round trip that stalled for a retransmission timeout."""
    from pytest_stackcheck.chaos.proxy import RTO_MS

    deadline = time.monotonic() + LOSS_PROBE_BUDGET_S
    slowest = 0.0
    for count in range(1, LOSS_PROBES + 1):
        if time.monotonic() > deadline:
            break
        try:
            elapsed = round_trip(link, port)
        except TimeoutError:
            # Several losses in a row outlast the 1 s round trip timeout.
            elapsed = ROUND_TRIP_TIMEOUT_S
        except OSError as exc:
            raise FaultNotApplied(f"loss on link {link}: {exc}") from exc
        slowest = max(slowest, elapsed)
        losses = int(proxy.links()[link].get("losses", 0))
        if elapsed >= RTO_MS / 1000 and losses:
            return (
                f"round trip {count} stalled {elapsed * 1000:.0f} ms "
                f"({losses} chunks lost so far)"
            )
    raise FaultNotApplied(
        f"loss on link {link}: no round trip of {count} stalled for a "
        f"retransmission timeout ({RTO_MS} ms); the slowest took "
        f"{slowest * 1000:.0f} ms, so the fault did not take effect"
    )


def _verify(link: str, port: int, fault: str, latency_ms: int) -> str:
    try:
        elapsed = round_trip(link, port)
    except TimeoutError:
        if fault == "partition":
            return f"no reply within {ROUND_TRIP_TIMEOUT_S} s"
        raise FaultNotApplied(
            f"{fault} on link {link}: the round trip timed out"
        ) from None
    except OSError as exc:
        if fault == "reset":
            return f"connection reset ({exc})"
        raise FaultNotApplied(f"{fault} on link {link}: {exc}") from exc

    if fault == "latency" and elapsed >= latency_ms / 1000:
        return f"round trip {elapsed * 1000:.0f} ms"
    raise FaultNotApplied(
        f"{fault} on link {link}: a round trip took {elapsed * 1000:.0f} ms "
        "and got its reply, so the fault did not take effect"
    )
