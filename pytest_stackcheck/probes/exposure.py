"""Which addresses the stack's ports listen on, read from the kernel.

``/proc/net/tcp`` and ``/proc/net/tcp6`` list every TCP socket of the host's
network namespace, of every user, so the check needs no privileges and no
``ss`` binary. A socket bound to a wildcard or a routable address is reachable
from other hosts, unless a firewall drops the traffic, which this probe
cannot see.
"""

from __future__ import annotations

import ipaddress
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_stackcheck.provision.base import LiveStack

PROC_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
LISTEN_STATE = "0A"


@dataclass(frozen=True, slots=True)
class Listener:
    """One port of one component and the addresses it listens on."""

    component: str
    port: int
    addresses: tuple[str, ...]

    @property
    def exposed(self) -> tuple[str, ...]:
        """The addresses reachable from other hosts (not loopback)."""
        return tuple(a for a in self.addresses if not _is_loopback(a))


def _is_loopback(address: str) -> bool:
    parsed = ipaddress.ip_address(address)
    mapped = getattr(parsed, "ipv4_mapped", None)
    return bool((mapped or parsed).is_loopback)


def _decode_address(text: str) -> str:
    # The kernel prints each 32-bit word of the address as a number in host
    # byte order, so on little-endian hosts each word's bytes are reversed.
    raw = bytes.fromhex(text)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(raw))


def listening_sockets(tables: tuple[Path, ...] = PROC_TABLES) -> dict[int, set[str]]:
    """Return every listening TCP port of this host with its bound addresses."""
    found: dict[int, set[str]] = {}
    for table in tables:
        try:
            lines = table.read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or fields[3] != LISTEN_STATE:
                continue
            address, port = fields[1].split(":")
            found.setdefault(int(port, 16), set()).add(_decode_address(address))
    return found


def component_ports(stack: LiveStack) -> dict[str, list[int]]:
    """Return the ports of each component the profile names."""
    doc = stack.profile.doc
    ports: dict[str, list[int]] = {
        "nginx": [doc.nginx.http_port]
        + ([doc.nginx.https_port] if doc.nginx.tls else []),
        "postgres": [doc.postgres.port],
        "nats": [doc.nats.client_port, doc.nats.monitor_port],
    }
    if doc.nats.websocket_port:
        ports["nats"].append(doc.nats.websocket_port)
    for name, service in doc.services.items():
        ports[name] = [service.port]
    return ports


def listeners(stack: LiveStack) -> list[Listener]:
    """Return each component port with the addresses it listens on here.

    A port with no listening socket gets an empty address tuple.
    """
    sockets = listening_sockets()
    return [
        Listener(component, port, tuple(sorted(sockets.get(port, ()))))
        for component, ports in component_ports(stack).items()
        for port in ports
    ]
