"""Route checks through nginx: right upstream, right path, websocket upgrade."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

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
# Statuses that send a client on to the Location header.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True)
class RouteResult:
    """The verdict on one route and what it was based on."""

    ok: bool
    message: str
    evidence: dict[str, str | int | float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Front:
    """One way clients reach nginx: plain HTTP, or HTTPS when nginx serves it."""

    scheme: str
    base_url: str
    host: str
    redirect_ok: bool = False
    """Whether a redirect to the same path over HTTPS counts as correct."""

    def label(self, route: Route) -> str:
        return route.prefix if self.scheme == "http" else f"{route.prefix} (https)"


def fronts(stack: LiveStack) -> list[Front]:
    """Return every front a route must work on: HTTP, and HTTPS with nginx.tls."""
    nginx = stack.profile.doc.nginx
    if not nginx.tls:
        return [Front("http", stack.nginx_url, stack.nginx_host_header)]
    host = nginx.server_name
    if nginx.https_port != 443:
        host += f":{nginx.https_port}"
    return [
        Front("http", stack.nginx_url, stack.nginx_host_header, redirect_ok=True),
        Front("https", f"https://{nginx.host}:{nginx.https_port}", host),
    ]


# The front each nginx serves clients on, found once per run: every client
# check asks for it, and a site does not change between checks.
_CLIENT_FRONTS: dict[tuple[str, str, str], Front] = {}


def client_front(stack: LiveStack, timeout_s: float = 5.0) -> Front:
    """Return the front clients are served on.

    That is plain HTTP, unless nginx serves HTTPS and its HTTP server
    redirects ``/`` there, as production sites often do. Checks that judge
    what clients get (the gateway's contract, load, bad input) use it, so a
    site served over HTTPS only is judged over HTTPS, never on its redirect.
    """
    http, *secure = fronts(stack)
    if not secure:
        return http
    key = (http.base_url, http.host, secure[0].base_url)
    if key in _CLIENT_FRONTS:
        return _CLIENT_FRONTS[key]

    chosen = http
    try:
        with httpx.Client(timeout=timeout_s) as client:
            response = client.get(http.base_url + "/", headers={"Host": http.host})
    except httpx.HTTPError:
        return http
    location = urlsplit(response.headers.get("location", ""))
    if response.status_code in REDIRECT_STATUSES and location.scheme == "https":
        chosen = secure[0]
    _CLIENT_FRONTS[key] = chosen
    return chosen


def _refused_hint(front: Front, stack: LiveStack) -> str:
    if front.scheme != "https":
        return ""
    return (
        f"; nginx.tls = true says nginx serves HTTPS on port "
        f"{stack.profile.doc.nginx.https_port}: give the site a listen ... ssl "
        "for it, or set nginx.tls = false"
    )


def _combine(results: list[RouteResult]) -> RouteResult:
    evidence: dict[str, str | int | float] = {}
    for result in results:
        evidence.update(result.evidence)
    failed = [result.message for result in results if not result.ok]
    return RouteResult(not failed, "\n".join(failed), evidence)


def _redirects_to_https(status: int, location: str, target: str) -> bool:
    parts = urlsplit(location)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return status in REDIRECT_STATUSES and parts.scheme == "https" and path == target


@dataclass(frozen=True, slots=True)
class _Reading:
    status: int
    received: str | None
    service: str | None
    body: str
    server: str = ""
    location: str = ""


def check_http_route(stack: LiveStack, route: Route, timeouts: Timeouts) -> RouteResult:
    """Request ``prefix + probe`` through nginx and judge what the upstream saw.

    The route is checked over HTTP and, when nginx serves it, over HTTPS.
    """
    direct = _DirectAnswer(
        f"{stack.service_url(route.service)}/{route.probe}?{PROBE_QUERY}",
        timeouts.check_s,
    )
    return _combine(
        [
            _check_http_at(stack, route, timeouts, front, direct)
            for front in fronts(stack)
        ]
    )


def _check_http_at(
    stack: LiveStack,
    route: Route,
    timeouts: Timeouts,
    front: Front,
    direct: _DirectAnswer,
) -> RouteResult:
    target = f"{route.prefix}{route.probe}?{PROBE_QUERY}"
    url = front.base_url + target
    host = front.host
    label = front.label(route)
    expected_path = f"/{route.probe}?{PROBE_QUERY}"
    service = stack.profile.doc.services[route.service]
    expected_role = service.role or route.service
    server_name = stack.profile.doc.nginx.server_name

    def read() -> _Reading:
        # The TLS checks judge the certificate; here only the route counts.
        with httpx.Client(timeout=timeouts.check_s, verify=False) as client:
            response = client.get(
                url,
                headers={"Host": host},
                extensions={"sni_hostname": server_name},
            )
        return _Reading(
            response.status_code,
            response.headers.get(RECEIVED_PATH_HEADER),
            response.headers.get(SERVICE_HEADER),
            response.text[: identity.MAX_BODY_CHARS],
            response.headers.get("server", ""),
            response.headers.get("location", ""),
        )

    def problems(reading: _Reading) -> list[str]:
        found: list[str] = []
        if front.redirect_ok and _redirects_to_https(
            reading.status, reading.location, target
        ):
            return found
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
            False,
            f"route {label}: GET {url} (Host: {host}) failed: {waited.error}"
            + _refused_hint(front, stack),
        )

    evidence: dict[str, str | int | float] = {
        f"route {label} status": last.status,
        f"route {label} upstream path": last.received or "(not reported)",
    }
    if last.location:
        evidence[f"route {label} redirect"] = last.location
    else:
        evidence[f"route {label} identity"] = direct.proof(last)
    # nginx replaces the upstream's Server header with its own, which names
    # its version unless server_tokens is off.
    if last.server.startswith("nginx"):
        evidence["version.nginx"] = last.server
    found = problems(last)
    if not found:
        return RouteResult(True, "", evidence)
    if last.location:
        found.append(
            f"redirected to {last.location!r}; a redirect passes only to the same "
            "path and query over https"
        )
    message = (
        f"route {label} -> {route.service}: GET {url} (Host: {host}) "
        f"returned {last.status}; " + "; ".join(found) + f"; body {last.body[:120]!r}"
    )
    return RouteResult(False, message, evidence)


class _DirectAnswer:
    """The service's own response to the probe, read once when first needed.

    Only a response through nginx without ``X-Stackcheck-Service`` needs it:
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
        """List how ``reading`` differs from the service's own response."""
        expected = self._read()
        if expected is None:
            return []
        found = identity.differences(expected, reading.status, reading.body)
        if not found:
            return []
        if expected.service is not None:
            found.insert(0, f"no X-Stackcheck-Service header, which {name} sends")
        return [
            f"the response differs from {name}'s own at {expected.url}: "
            + ", ".join(found)
            + "; another server or nginx itself responded, so check proxy_pass "
            "of this location and which server block answers this Host"
        ]

    def proof(self, reading: _Reading) -> str:
        """Return the evidence for which service responded."""
        if reading.service is not None:
            return f"X-Stackcheck-Service: {reading.service}"
        expected = self._read()
        if expected is None:
            return f"not proven: {self._url} not reachable ({self._error})"
        return f"matches {expected.url} ({len(expected.fields)} fields)"


def check_websocket_route(
    stack: LiveStack, route: Route, timeouts: Timeouts
) -> RouteResult:
    """Upgrade to a websocket through nginx and expect the NATS INFO frame.

    The route is checked over HTTP and, when nginx serves it, over HTTPS.
    """
    return _combine(
        [_check_websocket_at(stack, route, timeouts, front) for front in fronts(stack)]
    )


def _check_websocket_at(
    stack: LiveStack, route: Route, timeouts: Timeouts, front: Front
) -> RouteResult:
    target = f"{route.prefix}{route.probe}"
    url = front.base_url + target
    host = front.host
    label = front.label(route)
    nats_port = f"nats.websocket_port = {stack.profile.doc.nats.websocket_port}"

    def redirected(answer: Handshake) -> bool:
        location = answer.headers.get("location", "")
        return front.redirect_ok and _redirects_to_https(
            answer.status, location, target
        )

    def holds(answer: Handshake) -> bool:
        upgraded = (
            answer.status == 101
            and answer.accept_ok
            and answer.first_frame.startswith(b"INFO {")
        )
        return upgraded or redirected(answer)

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
            f"route {label}: handshake with GET {url} (Host: {host}) "
            f"failed: {waited.error}; nginx gave no complete answer, so proxy_pass "
            "may point at a port that does not speak HTTP, such as the NATS "
            f"client port; it should be the NATS websocket port ({nats_port})"
            + _refused_hint(front, stack),
        )

    evidence: dict[str, str | int | float] = {
        f"route {label} status": answer.status,
        f"route {label} first frame": answer.first_frame[:40].decode(
            "utf-8", errors="replace"
        ),
    }
    if holds(answer):
        info = _info_fields(answer.first_frame)
        if info:
            evidence[f"route {label} server"] = info
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
        f"route {label}: {answer.describe()}; {'; '.join(hints)}",
        evidence,
    )


def _info_fields(frame: bytes) -> str:
    try:
        info = json.loads(frame[len(b"INFO ") :].split(b"\r\n", 1)[0])
    except ValueError:
        return ""
    return f"{info.get('server_name', '?')} {info.get('version', '?')}"
