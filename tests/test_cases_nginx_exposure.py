"""nginx locations that publish internal ports: the security gate must block them.

The stack tests start a real local stack with an nginx site that carries one
extra location and run the check, which reads the configuration with a real
``nginx -T``. The parser tests feed it configuration text directly.
"""

from __future__ import annotations

import pytest
from helpers import NGINX_CASES, SUITES, local_profile, with_nginx_site

from pytest_stackcheck.probes.nginx_config import proxied_locations

EXPOSURE = str(SUITES / "security" / "test_nginx_exposure.py")


def test_shipped_site_passes(tmp_path, run_suite):
    result = run_suite(local_profile(tmp_path), EXPOSURE)

    result.assert_outcomes(passed=1)


def test_second_location_to_routed_service_passes(tmp_path, run_suite):
    site = NGINX_CASES / "correct-extra-socket.conf.j2"

    result = run_suite(with_nginx_site(tmp_path, site), EXPOSURE)

    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (
            "x5-nats-monitoring-location",
            "*location /internal/nats-monitor/ proxies to the NATS monitoring "
            "port (http://127.0.0.1:*/), which must never be reachable*",
        ),
        (
            "x5-postgres-upstream",
            "*location /db/ proxies to PostgreSQL (http://database)*",
        ),
        (
            "x5-internal-service",
            "*location /centralcloud/ proxies to centralcloud (http://127.0.0.1:*/), "
            "which no nginx.routes entry declares*",
        ),
    ],
)
def test_internal_port_location_fails(tmp_path, run_suite, case, expected):
    site = NGINX_CASES / f"{case}.conf.j2"

    result = run_suite(with_nginx_site(tmp_path, site), EXPOSURE)

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([expected, "security *fail*"])


CONFIG = """
# configuration file /etc/nginx/nginx.conf:
http {
    upstream app { server 127.0.0.1:4000 weight=2; server [::1]:4000; }
    server {
        listen 80;
        location / { proxy_pass http://app; }
        location ~ ^/api/(.*)$ {
            proxy_pass http://127.0.0.1:4001/$1;  # a comment; with { braces }
        }
        location /dyn/ { set $target 127.0.0.1:8222; proxy_pass http://$target; }
        location = /static { root "/var/www/a b"; }
        location /secure/ { proxy_pass https://localhost; }
    }
}
stream {
    upstream pg { server 127.0.0.1:5432; }
    server { listen 15432; proxy_pass pg; }
}
"""


def test_parser_resolves_upstreams_and_ports():
    found = {item.location: item for item in proxied_locations(CONFIG)}

    assert sorted(found) == [
        "(server block)",
        "/",
        "/dyn/",
        "/secure/",
        "~ ^/api/(.*)$",
    ]
    assert found["(server block)"].addresses == (("127.0.0.1", 5432),)
    assert found["/"].addresses == (("127.0.0.1", 4000), ("::1", 4000))
    assert found["~ ^/api/(.*)$"].addresses == (("127.0.0.1", 4001),)
    assert found["/dyn/"].addresses == ()
    assert found["/secure/"].addresses == (("localhost", 443),)
