"""nginx routes: each location reaches its service with the path it should.

A route check requests ``PREFIX + probe`` through nginx and compares what the
upstream received. The reference services report the raw request target in
``X-Stackcheck-Received-Path``; a real service that does not is judged on
its health body instead.
"""

from __future__ import annotations

import pytest

from pytest_stackcheck.probes.routes import check_http_route, check_websocket_route


@pytest.mark.gate("preprod", item="nginx route reaches its service")
@pytest.mark.gate("day1", item="nginx route reaches its service")
def test_nginx_route(stack, evidence, route):
    timeouts = stack.profile.doc.timeouts
    if route.websocket:
        result = check_websocket_route(stack, route, timeouts)
    else:
        result = check_http_route(stack, route, timeouts)

    for name, value in result.evidence.items():
        evidence.record(name, value)
    assert result.ok, result.message
