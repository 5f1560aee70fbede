"""Route checks through nginx: right upstream, right path, websocket upgrade."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx

from pytest_stackcheck.probes import identity
from pytest_stackcheck.probes.http import compare_health
from pytest_stackcheck.probes.wait import wait_until
from pytest_stackcheck.probes.websocket import SAMPLE_ACCEPT, Handshake, handshake

if TYPE_CHECKING:
    from pytest_stackcheck.profile import Route, Timeouts
    from pytest_stackcheck.provision.base import LiveStack

RECEIVED_PATH_HEADER = "x-stackcheck-received-path"
SERVICE_HEADER = "x-stackcheck-service"
# A query string travels with the probe so a route that drops it is caught.
PROBE_QUERY = "stackcheck=1"


@dataclass(frozen=True, slots=True)
class RouteResult:
    """The verdict on one route and what it was based on."""

    ok: bool
    message: str
    evidence: dict[str, str | int | float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Reading:
    status: int
    received: str | None
    service: str | None
    body: str
    server: str = ""


def check_http_route(stack: LiveStack, route: Route, timeouts: Timeouts) -> RouteResult:
    """Request ``prefix + probe`` through nginx and judge what the upstream saw."""
    url = f"{stack.nginx_url}{route.prefix}{route.probe}?{PROBE_QUERY}"
    host = stack.nginx_host_header
    expected_path = f"/{route.probe}?{PROBE_QUERY}"
    service = stack.profile.doc.services[route.service]
    expected_role = service.role or route.service
    direct = _DirectAnswer(
        f"{stack.service_url(route.service)}/{route.probe}?{PROBE_QUERY}",
        timeouts.check_s,
    )

    def read() -> _Reading:
        with httpx.Client(timeout=timeouts.check_s) as client:
            response = client.get(url, headers={"Host": host})
        return _Reading(
            response.status_code,
            response.headers.get(RECEIVED_PATH_HEADER),
            response.headers.get(SERVICE_HEADER),
            response.text[: identity.MAX_BODY_CHARS],
            response.headers.get("server", ""),
        )

    def problems(reading: _Reading) -> list[str]:
        found: list[str] = []
        if reading.received is not None and reading.received != expected_path:
            found.append(
                f"upstream received {reading.received!r}, expected {expected_path!r}"
            )
            if reading.received.startswith("//"):
                found.append(
                    "a doubled slash: the location and proxy_pass disagree on "
                    "the trailing slash"
                )
            elif reading.received.startswith(route.prefix):
                found.append(
                    "the prefix was not stripped: proxy_pass has no URI part or "
                    "uses a variable"
                )
        if reading.service is not None and reading.service != expected_role:
            found.append(
                f"reached service {reading.service!r}, expected {expected_role!r}"
            )
        if reading.received is None and "/" + route.probe == service.health.path:
            found += compare_health(reading.status, reading.body, service.health)
        elif reading.received is None and reading.status >= 400:
            found.append(f"status {reading.status}")
        if reading.service is None:
            found += direct.differences(route.service, reading)
        return found

    waited = wait_until(
        read, lambda r: not problems(r), timeouts.check_s, timeouts.poll_s
    )
    last = waited.last
    if last is None:
        return RouteResult(
            False, f"route {route.prefix}: GET {url} failed: {waited.error}"
        )

    evidence: dict[str, str | int | float] = {
        f"route {route.prefix} status": last.status,
        f"route {route.prefix} upstream path": last.received or "(not reported)",
        f"route {route.prefix} identity": direct.proof(last),
    }
    # nginx replaces the upstream's Server header with its own, which names
    # its version unless server_tokens is off.
    if last.server.startswith("nginx"):
        evidence["version.nginx"] = last.server
    found = problems(last)
    if not found:
        return RouteResult(True, "", evidence)
    message = (
        f"route {route.prefix} -> {route.service}: GET {url} (Host: {host}) "
        f"returned {last.status}; " + "; ".join(found) + f"; body {last.body[:120]!r}"
    )
    return RouteResult(False, message, evidence)


class _DirectAnswer:
    """The service's own answer to the probe, read once when first needed.

    Only an answer through nginx without ``X-Stackcheck-Service`` needs it:
    a reference service names itself, a real one is recognised by its body.
    """

    def __init__(self, url: str, timeout_s: float) -> None:
        self._url = url
        self._timeout_s = timeout_s
        self._fingerprint: identity.Fingerprint | None = None
        self._error = ""

    def _read(self) -> identity.Fingerprint | None:
        if self._fingerprint is None and not self._error:
            try:
                self._fingerprint = identity.read_fingerprint(
                    self._url, self._timeout_s
                )
            except httpx.HTTPError as exc:
                self._error = f"{type(exc).__name__}: {exc}"
        return self._fingerprint

    def differences(self, name: str, reading: _Reading) -> list[str]:
        """List how ``reading`` differs from the service's own answer."""
        expected = self._read()
        if expected is None:
            return []
        found = identity.differences(expected, reading.status, reading.body)
        if not found:
            return []
        if expected.service is not None:
            found.insert(0, f"no X-Stackcheck-Service header, which {name} sends")
        return [
            f"the answer differs from {name}'s own at {expected.url}: "
            + ", ".join(found)
            + "; another server or nginx itself answered, so check proxy_pass "
            "of this location and which server block answers this Host"
        ]

    def proof(self, reading: _Reading) -> str:
        """Say how the check knows which service answered."""
        if reading.service is not None:
            return f"X-Stackcheck-Service: {reading.service}"
        expected = self._read()
        if expected is None:
            return f"not proven: {self._url} not reachable ({self._error})"
        return f"matches {expected.url} ({len(expected.fields)} fields)"


def check_websocket_route(
    stack: LiveStack, route: Route, timeouts: Timeouts
) -> RouteResult:
    """Upgrade to a websocket through nginx and expect the NATS INFO frame."""
    url = f"{stack.nginx_url}{route.prefix}{route.probe}"
    host = stack.nginx_host_header
    nats_port = f"nats.websocket_port = {stack.profile.doc.nats.websocket_port}"

    def holds(answer: Handshake) -> bool:
        return (
            answer.status == 101
            and answer.accept_ok
            and answer.first_frame.startswith(b"INFO {")
        )

    waited = wait_until(
        lambda: handshake(url, timeouts.check_s, host),
        holds,
        timeouts.check_s,
        timeouts.poll_s,
    )
    answer = waited.last
    if answer is None:
        return RouteResult(
            False,
            f"route {route.prefix}: handshake with GET {url} (Host: {host}) "
            f"failed: {waited.error}; nginx gave no complete answer, so proxy_pass "
            "may point at a port that does not speak HTTP, such as the NATS "
            f"client port; it should be the NATS websocket port ({nats_port})",
        )

    evidence: dict[str, str | int | float] = {
        f"route {route.prefix} status": answer.status,
        f"route {route.prefix} first frame": answer.first_frame[:40].decode(
            "utf-8", errors="replace"
        ),
    }
    if holds(answer):
        info = _info_fields(answer.first_frame)
        if info:
            evidence[f"route {route.prefix} server"] = info
        return RouteResult(True, "", evidence)

    hints = []
    if 200 <= answer.status < 300:
        hints.append(
            f"expected 101 Switching Protocols, but the upstream answered the "
            f"upgrade as a plain HTTP request: proxy_pass should point at the NATS "
            f"websocket port ({nats_port}), not another port such as NATS "
            "monitoring, and the location needs proxy_http_version 1.1 and the "
            "Upgrade and Connection headers"
        )
    elif answer.status != 101:
        hints.append(
            "expected 101 Switching Protocols: the location needs "
            "proxy_http_version 1.1 and the Upgrade and Connection headers"
        )
    elif not answer.accept_ok:
        hints.append(f"Sec-WebSocket-Accept should be {SAMPLE_ACCEPT}")
    else:
        hints.append("the first frame should start with 'INFO {' from nats-server")
    return RouteResult(
        False,
        f"route {route.prefix}: {answer.describe()}; {'; '.join(hints)}",
        evidence,
    )


def _info_fields(frame: bytes) -> str:
    try:
        info = json.loads(frame[len(b"INFO ") :].split(b"\r\n", 1)[0])
    except ValueError:
        return ""
    return f"{info.get('server_name', '?')} {info.get('version', '?')}"
