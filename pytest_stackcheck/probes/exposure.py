"""Which addresses the stack's ports listen on, read from the kernel.

``/proc/net/tcp`` and ``/proc/net/tcp6`` list every TCP socket of the host's
network namespace, of every user, so the check needs no privileges and no
``ss`` binary. On a remote ``stack.host`` the same tables are read over ssh.
A socket bound to a wildcard or a routable address is reachable from other
hosts, unless a firewall drops the traffic, which this probe cannot see.
"""

from __future__ import annotations

import ipaddress
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_stackcheck.probes.hostexec import HostRunner, runner_for

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
    texts: list[str] = []
    for table in tables:
        try:
            texts.append(table.read_text(encoding="ascii"))
        except OSError:
            continue
    return parse_tables("\n".join(texts))


def remote_listening_sockets(runner: HostRunner) -> dict[int, set[str]]:
    """Return every listening TCP port of the runner's host.

    NOTE: the addresses are decoded in this machine's byte order; a host of
    the other endianness would show reversed addresses.
    """
    argv = ["cat", *(str(table) for table in PROC_TABLES)]
    # cat exits 1 when a host without IPv6 has no tcp6 table; the other
    # table's lines still arrive.
    return parse_tables(runner.run(argv, ok_codes=(0, 1)).stdout)


def parse_tables(text: str) -> dict[int, set[str]]:
    """Return the listening ports of ``/proc/net/tcp``-format text."""
    found: dict[int, set[str]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[3] != LISTEN_STATE or ":" not in fields[1]:
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
    """Return each component port with the addresses it listens on its host.

    A port with no listening socket gets an empty address tuple.
    """
    if stack.profile.doc.stack.host:
        sockets = remote_listening_sockets(runner_for(stack.profile))
    else:
        sockets = listening_sockets()
    return [
        Listener(component, port, tuple(sorted(sockets.get(port, ()))))
        for component, ports in component_ports(stack).items()
        for port in ports
    ]
