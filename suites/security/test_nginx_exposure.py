"""Security: nginx forwards only to the components the profile routes.

A location added for debugging (the NATS monitoring page, a database admin
port, an internal service) publishes what the loopback binding was meant to
hide. The check reads nginx's whole configuration with ``nginx -T``.
"""

from __future__ import annotations

import pytest

from pytest_stackcheck.errors import ProbeError
from pytest_stackcheck.probes import nginx_config


@pytest.mark.gate("security", item="nginx exposes no internal port")
def test_nginx_proxies_only_routes(stack, evidence):
    try:
        text = nginx_config.dump_config(stack)
    except ProbeError as exc:
        pytest.skip(
            f"nginx's configuration could not be read ({exc}); let the user "
            "pytest runs as, or its ssh user, run 'nginx -T' (or 'sudo -n nginx -T')"
        )

    locations = nginx_config.proxied_locations(text)
    evidence.record("proxied_locations", len(locations))
    for proxied in locations:
        evidence.record(f"location {proxied.location}", proxied.target)
    problems = nginx_config.exposure_problems(stack, text)

    assert locations, "nginx -T shows no location with proxy_pass"
    assert not problems, "nginx exposes internal ports:\n" + "\n".join(problems)
