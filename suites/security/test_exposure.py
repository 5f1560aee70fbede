"""Security: only the components the profile calls public listen beyond loopback.

A PostgreSQL, NATS or app port bound to a wildcard address is one firewall
mistake away from the internet, and NATS's monitoring port alone lists every
connection and subject.
"""

from __future__ import annotations

import pytest

from pytest_stackcheck.probes import exposure

BIND_FIXES = {
    "postgres": "set listen_addresses = 'localhost' in postgresql.conf",
    "nats": "set listen, http and websocket.listen to 127.0.0.1 in nats.conf",
    "nginx": "list nginx in security.public if it is meant to be public",
}


@pytest.mark.gate("security", item="internal ports bound to loopback")
def test_internal_ports_on_loopback(stack, evidence):
    public = set(stack.profile.doc.security.public)
    found = exposure.listeners(stack)
    for listener in found:
        shown = ", ".join(listener.addresses) or "not listening"
        evidence.record(f"{listener.component}:{listener.port}", shown)

    problems = [
        f"{listener.component} listens on {', '.join(listener.exposed)} port "
        f"{listener.port}; "
        + BIND_FIXES.get(
            listener.component, "bind the service to 127.0.0.1 (its host setting)"
        )
        for listener in found
        if listener.exposed and listener.component not in public
    ]
    assert not problems, "internal ports reachable from other hosts:\n" + "\n".join(
        problems
    )
