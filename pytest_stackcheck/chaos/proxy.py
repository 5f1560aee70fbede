"""A TCP fault proxy the local stack routes service-to-server traffic through.

Run as ``python -m pytest_stackcheck.chaos.proxy --control SOCKET
--link NAME=LISTEN_PORT:TARGET_HOST:TARGET_PORT ...``. Each link forwards one
loopback port to one server (PostgreSQL, NATS). A fault is set per link over
the control socket, one JSON object per line:

- ``{"link": "postgresql", "fault": "latency", "ms": 200}`` delays every
  chunk forwarded in either direction by ``ms`` milliseconds;
- ``{"link": ..., "fault": "loss", "percent": 10}`` loses that share of the
  chunks forwarded in either direction, as TCP handles a lost segment: the
  chunk arrives after a retransmission timeout (200 ms, Linux's minimum RTO),
  and each retransmission is lost again with the same chance, the timeout
  doubling each time;
- ``{"link": ..., "fault": "partition"}`` stops forwarding: open connections
  stall and new ones are accepted but carry nothing;
- ``{"link": ..., "fault": "reset"}`` closes every open connection with a TCP
  RST and resets new ones at once;
- ``{"link": ..., "fault": "none"}`` clears the fault; ``{"status": true}``
  returns every link with its fault and open connections.

A proxy rather than ``tc netem`` on the loopback device, because a qdisc on
``lo`` would delay every process on the machine. A proxy cannot drop a packet
of a TCP stream, so loss is made as what the endpoints of a lossy path see:
the stream stalls for a retransmission timeout and then carries on. Fast
retransmit on duplicate acks is not modelled: it needs later segments in
flight, which a short request or reply rarely has, so the stalls model these
services' exchanges fairly and are an upper bound for bulk transfers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import socket
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_stackcheck.profile import ProfileDocument

log = logging.getLogger("pytest_stackcheck.proxy")

FAULTS = ("none", "latency", "loss", "partition", "reset")
CHUNK_BYTES = 65536
MAX_LATENCY_MS = 60_000
MAX_LOSS_PERCENT = 50
# Linux's minimum TCP retransmission timeout (TCP_RTO_MIN, 200 ms); each
# further loss of the same segment doubles it. A segment lost this many times
# in a row is delivered anyway, which bounds one stall at 200 ms * (2**6 - 1).
RTO_MS = 200
MAX_RETRANSMISSIONS = 6
MAX_CONTROL_LINE = 4096


@dataclass
class Link:
    """One forwarded port, its fault and its open connections."""

    name: str
    listen_port: int
    target_host: str
    target_port: int
    fault: str = "none"
    latency_ms: int = 0
    loss_percent: int = 0
    losses: int = 0
    rng: random.Random = field(default_factory=random.Random)
    resumed: asyncio.Event = field(default_factory=asyncio.Event)
    connections: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = field(
        default_factory=set
    )

    def set_fault(self, fault: str, latency_ms: int, loss_percent: int = 0) -> None:
        self.fault = fault
        self.latency_ms = latency_ms if fault == "latency" else 0
        self.loss_percent = loss_percent if fault == "loss" else 0
        self.losses = 0
        if fault == "partition":
            self.resumed.clear()
        else:
            self.resumed.set()
        if fault == "reset":
            for pair in list(self.connections):
                for writer in pair:
                    _reset(writer)
            self.connections.clear()

    def status(self) -> dict[str, object]:
        return {
            "listen_port": self.listen_port,
            "target": f"{self.target_host}:{self.target_port}",
            "fault": self.fault,
            "latency_ms": self.latency_ms,
            "loss_percent": self.loss_percent,
            "losses": self.losses,
            "connections": len(self.connections),
        }

    def retransmission_delay_s(self) -> float:
        """Return how long the next chunk waits for its retransmissions."""
        delay_ms = 0
        timeout_ms = RTO_MS
        for _ in range(MAX_RETRANSMISSIONS):
            if self.rng.randrange(100) >= self.loss_percent:
                break
            self.losses += 1
            delay_ms += timeout_ms
            timeout_ms *= 2
        return delay_ms / 1000


def _reset(writer: asyncio.StreamWriter) -> None:
    # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
    writer.transport.abort()


async def _pump(
    link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while True:
            data = await reader.read(CHUNK_BYTES)
            if not data:
                break
            await link.resumed.wait()
            if link.latency_ms:
                await asyncio.sleep(link.latency_ms / 1000)
            if link.loss_percent:
                await asyncio.sleep(link.retransmission_delay_s())
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()


async def _handle(
    link: Link, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
) -> None:
    if link.fault == "reset":
        _reset(client)
        return
    try:
        server_reader, server = await asyncio.open_connection(
            link.target_host, link.target_port
        )
    except OSError as exc:
        log.warning("link %s: connecting to the target failed: %s", link.name, exc)
        client.close()
        return
    pair = (client, server)
    link.connections.add(pair)
    try:
        await asyncio.gather(
            _pump(link, client_reader, server), _pump(link, server_reader, client)
        )
    finally:
        link.connections.discard(pair)


async def _control(
    links: dict[str, Link], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        line = await reader.readline()
        reply = _apply(links, line[:MAX_CONTROL_LINE])
    except (ConnectionError, OSError):
        return
    writer.write(json.dumps(reply).encode() + b"\n")
    with contextlib.suppress(ConnectionError, OSError):
        await writer.drain()
        writer.close()


def _apply(links: dict[str, Link], line: bytes) -> dict[str, object]:
    try:
        request = json.loads(line)
    except ValueError:
        return {"ok": False, "error": "request is not JSON"}
    if not isinstance(request, dict):
        return {"ok": False, "error": "request is not a JSON object"}
    if request.get("status"):
        return {"ok": True, "links": {n: link.status() for n, link in links.items()}}

    name = request.get("link")
    fault = request.get("fault")
    latency = request.get("ms", 0)
    percent = request.get("percent", 0)
    if name not in links:
        return {"ok": False, "error": f"unknown link {name!r}; known: {sorted(links)}"}
    if fault not in FAULTS:
        return {"ok": False, "error": f"unknown fault {fault!r}; use one of {FAULTS}"}
    if not isinstance(latency, int) or not 0 <= latency <= MAX_LATENCY_MS:
        return {"ok": False, "error": f"ms = {latency!r}: use 0 to {MAX_LATENCY_MS}"}
    if not isinstance(percent, int) or not 0 <= percent <= MAX_LOSS_PERCENT:
        return {
            "ok": False,
            "error": f"percent = {percent!r}: use 0 to {MAX_LOSS_PERCENT}",
        }
    if fault == "loss" and percent == 0:
        return {"ok": False, "error": "fault loss needs percent of 1 or more"}
    links[name].set_fault(fault, latency, percent)
    log.info("link %s: fault %s (%d ms, %d%% loss)", name, fault, latency, percent)
    return {"ok": True}


async def serve(links: dict[str, Link], control_path: Path) -> None:
    """Forward every link and serve the control socket until cancelled."""
    servers = []
    for link in links.values():
        link.resumed.set()

        async def handle(
            reader: asyncio.StreamReader,
            writer: asyncio.StreamWriter,
            link: Link = link,
        ) -> None:
            await _handle(link, reader, writer)

        servers.append(
            await asyncio.start_server(handle, "127.0.0.1", link.listen_port)
        )
        log.info(
            "link %s: 127.0.0.1:%d -> %s:%d",
            link.name,
            link.listen_port,
            link.target_host,
            link.target_port,
        )

    async def control(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await _control(links, reader, writer)

    control_path.unlink(missing_ok=True)
    servers.append(await asyncio.start_unix_server(control, str(control_path)))
    control_path.chmod(0o600)
    await asyncio.gather(*(server.serve_forever() for server in servers))


def _link(text: str) -> Link:
    name, _, rest = text.partition("=")
    parts = rest.split(":")
    if not name or len(parts) != 3 or not parts[0].isdigit() or not parts[2].isdigit():
        raise argparse.ArgumentTypeError(
            f"invalid link {text!r}: expected NAME=LISTEN_PORT:TARGET_HOST:TARGET_PORT"
        )
    return Link(name, int(parts[0]), parts[1], int(parts[2]))


def proxy_ports_for(doc: ProfileDocument) -> dict[str, int]:
    """Pick a free loopback port for each link: postgresql, and nats if used."""
    from pytest_stackcheck.provision.local import free_ports

    names = ["postgresql"]
    if any(service.nats for service in doc.services.values()):
        names.append("nats")
    return dict(zip(names, free_ports(len(names)), strict=True))


def proxy_command(
    doc: ProfileDocument, control: Path, ports: dict[str, int]
) -> list[str]:
    """Return the command line that runs the proxy for ``ports``."""
    targets = {
        "postgresql": (doc.postgres.host, doc.postgres.port),
        "nats": (doc.nats.host, doc.nats.client_port),
    }
    command = [sys.executable, "-m", "pytest_stackcheck.chaos.proxy"]
    command += ["--control", str(control)]
    for name, port in ports.items():
        host, target_port = targets[name]
        command += ["--link", f"{name}={port}:{host}:{target_port}"]
    return command


def main(argv: list[str]) -> int:
    """Run the proxy until SIGTERM."""
    parser = argparse.ArgumentParser(description="TCP fault proxy of the local stack")
    parser.add_argument("--control", required=True, type=Path, help="control socket")
    parser.add_argument("--link", action="append", type=_link, default=[])
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    links = {link.name: link for link in args.link}
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(links, args.control))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
