"""Read nginx's whole configuration and find locations that expose internal ports.

``nginx -T`` prints the configuration nginx would load, every included file
among it. Each ``location`` with a ``proxy_pass`` is resolved to the port it
forwards to (through ``upstream`` blocks where it names one) and matched
against the stack's components. PostgreSQL, the NATS client port and the
NATS monitoring port must never be reachable through nginx, and an
application service or the NATS websocket only when some route of the
profile declares it.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_stackcheck.errors import ProbeError
from pytest_stackcheck.probes.hostexec import runner_for

if TYPE_CHECKING:
    from pytest_stackcheck.provision.base import LiveStack

TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|[{};]|[^\s{};]+')
DEFAULT_PORTS = {"http": 80, "https": 443}
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
# nginx lives in sbin, which a non-root user's PATH often lacks, and in the
# system profile on NixOS.
SBIN_PATH = "/usr/sbin:/sbin:/run/current-system/sw/bin"
REMOTE_DUMP = ["sh", "-c", f'PATH="$PATH:{SBIN_PATH}" exec nginx -T -q']


@dataclass(frozen=True, slots=True)
class ProxiedLocation:
    """One location's ``proxy_pass`` and the ports it may reach."""

    location: str
    target: str
    addresses: tuple[tuple[str, int], ...]


def dump_config(stack: LiveStack) -> str:
    """Return ``nginx -T`` of the stack's nginx, or raise ProbeError.

    The local stack's nginx runs from its own directory; a deployed one is
    asked on its host, through ``sudo -n`` when plain ``nginx -T`` cannot
    read every file (TLS keys are usually readable by root only).
    """
    runner = runner_for(stack.profile)
    if stack.workdir is not None and (stack.workdir / "nginx").is_dir():
        nginx_dir = stack.workdir / "nginx"
        binary = shutil.which("nginx", path=SBIN_PATH) or "nginx"
        argv = [binary, "-T", "-q", "-p", str(nginx_dir)]
        argv += ["-c", str(nginx_dir / "nginx.conf"), "-e", "/dev/null"]
        return runner.run(argv).stdout

    try:
        return runner.run(REMOTE_DUMP).stdout
    except ProbeError as plain:
        try:
            return runner.run(["sudo", "-n", *REMOTE_DUMP]).stdout
        except ProbeError as escalated:
            raise ProbeError(f"{plain}; with sudo -n: {escalated}") from escalated


def _tokens(text: str) -> list[str]:
    lines = []
    for line in text.splitlines():
        # A '#' outside quotes starts a comment; nginx -T's file headers
        # ("# configuration file ...:") are comments too.
        kept = []
        for token in TOKEN.findall(line):
            if token.startswith("#"):
                break
            kept.append(token)
        lines.append(kept)
    return [token for line in lines for token in line]


def proxied_locations(text: str) -> list[ProxiedLocation]:
    """Return every location's proxy_pass with the addresses it forwards to."""
    upstreams: dict[str, list[tuple[str, int]]] = {}
    found: list[tuple[str, str]] = []
    blocks: list[list[str]] = []
    words: list[str] = []

    for token in _tokens(text):
        if token == "{":
            blocks.append(words)
            words = []
        elif token == "}":
            if blocks:
                blocks.pop()
            words = []
        elif token == ";":
            _directive(words, blocks, upstreams, found)
            words = []
        else:
            words.append(token.strip("\"'"))

    return [
        ProxiedLocation(location, target, tuple(_addresses(target, upstreams)))
        for location, target in found
    ]


def _directive(
    words: list[str],
    blocks: list[list[str]],
    upstreams: dict[str, list[tuple[str, int]]],
    found: list[tuple[str, str]],
) -> None:
    if not words or not blocks:
        return
    header = blocks[-1]
    if header[:1] == ["upstream"] and len(header) > 1 and words[0] == "server":
        upstreams.setdefault(header[1], []).append(_host_port(words[1], 80))
    elif words[0] == "proxy_pass" and len(words) > 1:
        locations = [block for block in blocks if block[:1] == ["location"]]
        location = " ".join(locations[-1][1:]) if locations else "(server block)"
        found.append((location, words[1]))


def _host_port(address: str, default: int) -> tuple[str, int]:
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = address.partition(":")
    return host, int(port) if port.isdigit() else default


def _addresses(
    target: str, upstreams: dict[str, list[tuple[str, int]]]
) -> list[tuple[str, int]]:
    scheme, separator, rest = target.partition("://")
    if not separator:
        # The stream module's proxy_pass takes a bare address or upstream.
        scheme, rest = "tcp", target
    authority = rest.split("/", 1)[0]
    if "$" in authority or not authority:
        # NOTE: a target built from variables is resolved only when nginx
        # runs, so it is not judged here.
        return []
    host, port = _host_port(authority, DEFAULT_PORTS.get(scheme, 80))
    if ":" not in authority.removeprefix("[").split("]")[-1] and host in upstreams:
        return upstreams[host]
    return [(host, port)]


def exposure_problems(stack: LiveStack, text: str) -> list[str]:
    """Return one line per location that exposes an internal component."""
    doc = stack.profile.doc
    never = {
        doc.postgres.port: "PostgreSQL",
        doc.nats.client_port: "the NATS client port",
        doc.nats.monitor_port: "the NATS monitoring port",
    }
    routed = {route.service for route in doc.nginx.routes}
    declared: dict[int, str] = {}
    if "nats" in routed and doc.nats.websocket_port:
        declared[doc.nats.websocket_port] = "nats"
    internal: dict[int, str] = {}
    if "nats" not in routed and doc.nats.websocket_port:
        internal[doc.nats.websocket_port] = "the NATS websocket port"
    for name, service in doc.services.items():
        (declared if name in routed else internal)[service.port] = name
    hosts = LOOPBACK_NAMES | {doc.postgres.host, doc.nats.host}
    hosts |= {service.host for service in doc.services.values()}

    problems: list[str] = []
    for proxied in proxied_locations(text):
        for host, port in proxied.addresses:
            if host not in hosts:
                continue
            if port in never:
                problems.append(
                    f"location {proxied.location} proxies to {never[port]} "
                    f"({proxied.target}), which must never be reachable through "
                    "nginx; remove the location"
                )
            elif port in internal:
                problems.append(
                    f"location {proxied.location} proxies to {internal[port]} "
                    f"({proxied.target}), which no nginx.routes entry declares; "
                    "remove the location, or declare the route in the profile"
                )
    return problems
