"""Whether nginx keeps an idle websocket to NATS open.

nginx closes an upgraded connection on which nothing has moved for
``proxy_read_timeout``, 60 s by default. A NATS client on an idle websocket
sends its first PING only after its ping interval (2 min by default in the
NATS clients), so with nginx's default every quiet browser tab loses its
connection each minute. The check upgrades through nginx, sends CONNECT and
PING, stays silent for ``load.proxy.websocket_idle_s`` and then expects a
PONG to a second PING on the same connection.
"""

from __future__ import annotations

import select
import time

from pytest_stackcheck.load.proxy import ProxyCheck
from pytest_stackcheck.probes.routes import client_front
from pytest_stackcheck.probes.websocket import Connection, open_websocket
from pytest_stackcheck.profile import Route
from pytest_stackcheck.provision.base import LiveStack

CONNECT = b'CONNECT {"verbose":false,"pedantic":false,"protocol":1}\r\nPING\r\n'
PING = b"PING\r\n"
PONG = b"PONG\r\n"


def check_websocket_idle(
    stack: LiveStack, route: Route, idle_s: float, timeout_s: float
) -> ProxyCheck:
    """Hold a websocket through ``route`` idle for ``idle_s`` and expect it open."""
    front = client_front(stack)
    url = f"{front.base_url}{route.prefix}{route.probe}"
    answer, connection = open_websocket(url, timeout_s, front.host)
    if connection is None:
        return ProxyCheck(
            False,
            f"route {route.prefix}: the websocket did not open: {answer.describe()}",
        )

    try:
        connection.send(CONNECT)
        if not _await_pong(connection, timeout_s):
            return ProxyCheck(
                False,
                f"route {route.prefix}: NATS did not answer PING with PONG within "
                f"{timeout_s:g} s over the websocket",
            )
        closed_after = _stay_idle(connection, idle_s)
        if closed_after is None:
            connection.send(PING)
            if not _await_pong(connection, timeout_s):
                closed_after = idle_s
    except OSError:
        closed_after = idle_s
    finally:
        connection.close()

    evidence: dict[str, float | int | str] = {
        "websocket idle seconds held": round(closed_after or idle_s, 1)
    }
    if closed_after is not None:
        return ProxyCheck(
            False,
            f"route {route.prefix}: the websocket closed after {closed_after:.1f} s "
            f"without traffic, expected it to stay open for {idle_s:g} s "
            "(load.proxy.websocket_idle_s); nginx closes an idle upgraded "
            "connection after proxy_read_timeout (60 s by default), so set "
            "proxy_read_timeout on this location well above the NATS clients' "
            "ping interval (2 min by default)",
            evidence,
        )
    return ProxyCheck(
        True,
        f"the websocket through {route.prefix} stayed open for {idle_s:g} s idle",
        evidence,
    )


def _await_pong(connection: Connection, timeout_s: float) -> bool:
    """Read frames until one contains PONG; False on close or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    received = b""
    while time.monotonic() < deadline:
        connection.sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            received += connection.read_frame()
        except (OSError, ValueError):
            return False
        if PONG in received:
            return True
    return False


def _stay_idle(connection: Connection, idle_s: float) -> float | None:
    """Wait ``idle_s`` without sending; return when the peer closed, else None.

    A server PING within the wait gets a PONG, as from a real client.
    """
    started = time.monotonic()
    while (left := idle_s - (time.monotonic() - started)) > 0:
        readable, _, _ = select.select([connection.sock], [], [], left)
        if not readable:
            continue
        connection.sock.settimeout(5.0)
        try:
            payload = connection.read_frame()
        except (OSError, ValueError):
            return time.monotonic() - started
        if PING in payload:
            connection.send(PONG)
    return None
