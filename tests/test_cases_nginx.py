"""Broken nginx sites from public reports: the day1 gate must fail on each.

Each test runs the real route suite in a subprocess against a local stack
whose nginx site is the broken one, and checks the failure names the route
and what the upstream received.
"""

from __future__ import annotations

import re

from helpers import NGINX_CASES, SUITES, local_profile, with_nginx_site

ROUTES = str(SUITES / "acceptance" / "test_routes.py")


def test_correct_site_passes(tmp_path, run_suite):
    result = run_suite(local_profile(tmp_path), ROUTES, "-m", "day1")

    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["day1 *pass*", "deployment verdict: OK"])
    assert result.ret == 0


def test_x1_websocket_without_upgrade_fails(tmp_path, run_suite):
    profile = with_nginx_site(tmp_path, NGINX_CASES / "x1-no-upgrade.conf.j2")
    result = run_suite(profile, ROUTES, "-m", "day1")

    result.assert_outcomes(passed=2, failed=1)
    output = result.stdout.str()
    assert "route /internal/nats/" in output
    assert "expected 101 Switching Protocols" in output
    assert "proxy_http_version 1.1" in output
    result.stdout.fnmatch_lines(["day1 *fail*", "deployment verdict: BLOCKED*"])
    assert result.ret == 1


def test_x2_missing_trailing_slash_fails(tmp_path, run_suite):
    profile = with_nginx_site(tmp_path, NGINX_CASES / "x2-no-trailing-slash.conf.j2")
    result = run_suite(profile, ROUTES, "-m", "day1")

    result.assert_outcomes(passed=2, failed=1)
    output = result.stdout.str()
    assert "route /internal/llm/" in output
    assert "upstream received '//health?stackcheck=1'" in output
    assert "doubled slash" in output
    assert result.ret == 1


def test_x2_variable_upstream_fails(tmp_path, run_suite):
    profile = with_nginx_site(tmp_path, NGINX_CASES / "x2-variable-upstream.conf.j2")
    result = run_suite(profile, ROUTES, "-m", "day1")

    result.assert_outcomes(passed=2, failed=1)
    output = result.stdout.str()
    assert "upstream received '/internal/llm/health?stackcheck=1'" in output
    assert "prefix was not stripped" in output
    assert result.ret == 1


def test_hidden_service_header_passes(tmp_path, run_suite):
    """A real service sends no identity header; its direct response identifies it."""
    site = NGINX_CASES / "correct-hidden-service-header.conf.j2"
    result = run_suite(with_nginx_site(tmp_path, site), ROUTES, "-m", "day1")

    result.assert_outcomes(passed=3)
    assert result.ret == 0


def test_static_healthy_json_fails(tmp_path, run_suite):
    profile = with_nginx_site(tmp_path, NGINX_CASES / "x2-static-health.conf.j2")
    result = run_suite(profile, ROUTES, "-m", "day1")

    result.assert_outcomes(passed=2, failed=1)
    output = result.stdout.str()
    assert "route / -> singularity" in output
    assert "the response differs from singularity's own at http://127.0.0.1:" in output
    assert "field service missing, the service has 'singularity'" in output
    assert "nginx itself responded" in output
    assert result.ret == 1


def test_wrong_service_without_header_fails(tmp_path, run_suite):
    profile = with_nginx_site(tmp_path, NGINX_CASES / "x2-wrong-service.conf.j2")
    result = run_suite(profile, ROUTES, "-m", "day1")

    result.assert_outcomes(passed=2, failed=1)
    output = result.stdout.str()
    assert "route /internal/llm/ -> llm-server" in output
    assert "field service = 'centralcloud', the service has 'llm-server'" in output
    assert result.ret == 1


def test_server_name_block_fails(tmp_path, run_suite):
    profile = with_nginx_site(tmp_path, NGINX_CASES / "x2-server-name-block.conf.j2")
    result = run_suite(profile, ROUTES, "-m", "day1")

    result.assert_outcomes(passed=2, failed=1)
    output = result.stdout.str()
    assert "route / -> singularity" in output
    assert "(Host: localhost:" in output
    assert "reached service 'centralcloud', expected 'singularity'" in output
    assert result.ret == 1


def test_x1_monitoring_port_fails(tmp_path, run_suite):
    profile = with_nginx_site(tmp_path, NGINX_CASES / "x1-monitoring-port.conf.j2")
    result = run_suite(profile, ROUTES, "-m", "day1")

    result.assert_outcomes(passed=2, failed=1)
    output = result.stdout.str()
    assert "route /internal/nats/" in output
    assert "-> 200 OK" in output
    assert "answered the upgrade as a plain HTTP request" in output
    assert "NATS websocket port (nats.websocket_port = " in output
    assert result.ret == 1


def test_x1_client_port_fails(tmp_path, run_suite):
    profile = with_nginx_site(tmp_path, NGINX_CASES / "x1-client-port.conf.j2")
    result = run_suite(profile, ROUTES, "-m", "day1")

    result.assert_outcomes(passed=2, failed=1)
    output = result.stdout.str()
    assert "route /internal/nats/: handshake with GET" in output
    assert "such as the NATS client port" in output
    assert "NATS websocket port (nats.websocket_port = " in output
    assert result.ret == 1


def test_https_redirect_passes(tmp_path, run_suite):
    """Plain HTTP that only redirects to HTTPS is right when HTTPS serves all."""
    site = NGINX_CASES / "correct-https-redirect.conf.j2"
    result = run_suite(with_nginx_site(tmp_path, site), ROUTES, "-m", "day1")

    result.assert_outcomes(passed=3)
    assert result.ret == 0


def test_https_block_without_route_fails(tmp_path, run_suite):
    profile = with_nginx_site(tmp_path, NGINX_CASES / "x2-https-block.conf.j2")
    result = run_suite(profile, ROUTES, "-m", "day1")

    result.assert_outcomes(passed=2, failed=1)
    output = result.stdout.str()
    assert "route /internal/llm/ (https) -> llm-server: GET https://" in output
    assert "reached service 'singularity', expected 'llm-server'" in output
    assert "route /internal/llm/ -> " not in output
    assert result.ret == 1


def test_site_without_https_fails(tmp_path, run_suite):
    """A site with no HTTPS listener fails every route when nginx.tls is true."""
    site = (NGINX_CASES / "correct-hidden-service-header.conf.j2").read_text()
    plain = tmp_path / "plain.conf.j2"
    plain.write_text(
        re.sub(r"\{% if nginx.tls %\}.*?\{% endif %\}\n", "", site, flags=re.S)
    )
    result = run_suite(with_nginx_site(tmp_path, plain), ROUTES, "-m", "day1")

    result.assert_outcomes(failed=3)
    output = result.stdout.str()
    assert "route / (https): GET https://" in output
    assert "give the site a listen ... ssl for it, or set nginx.tls = false" in output
    assert "route / -> " not in output
    assert result.ret == 1
