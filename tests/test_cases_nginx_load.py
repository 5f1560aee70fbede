"""Broken nginx sites for LLM traffic: the load gate's proxy checks must fail.

Each test runs the shipped proxy suite in a subprocess against a local stack
whose nginx site is broken in one way, and checks that the failure names
what the client saw and the nginx setting to fix. The slow-answer tests wait
longer than nginx's 60 s default read timeout, because that default is the
fault they catch.
"""

from __future__ import annotations

import json

from helpers import NGINX_CASES, SUITES, local_profile, with_nginx_site

PROXY = str(SUITES / "load" / "test_proxy.py")


# A short idle hold: the shipped 65 s outlasts nginx's default timeout, which
# the broken case below undercuts by far.
SHORT_IDLE = {"websocket_idle_s = 65.0": "websocket_idle_s = 8.0"}


def test_correct_site_passes_proxy_checks(tmp_path, run_suite):
    result = run_suite(local_profile(tmp_path, SHORT_IDLE), PROXY)

    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["load *pass*", "deployment verdict: OK"])
    assert result.ret == 0


def test_x3_buffered_stream_fails(tmp_path, run_suite):
    profile = with_nginx_site(tmp_path, NGINX_CASES / "x3-buffered-stream.conf.j2")
    result = run_suite(profile, PROXY, "-k", "stream")

    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "10 events sent 1 s apart arrived in 1 bursts (at least 5 " in output
    assert "set proxy_buffering off" in output
    assert "later than load.proxy.first_event_s = 2 s" in output
    result.stdout.fnmatch_lines(["load *fail*", "deployment verdict: BLOCKED*"])
    assert result.ret == 1


def test_x3_default_read_timeout_fails(tmp_path, run_suite):
    profile = with_nginx_site(tmp_path, NGINX_CASES / "x3-default-read-timeout.conf.j2")
    result = run_suite(profile, PROXY, "-k", "slow")

    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "an answer that takes 65 s (load.proxy.slow_answer_s) got 504" in output
    assert "raise proxy_read_timeout" in output
    assert result.ret == 1


def test_x3_retried_post_fails(tmp_path, run_suite):
    profile = with_nginx_site(tmp_path, NGINX_CASES / "x3-retried-post.conf.j2")
    result = run_suite(profile, PROXY, "-k", "slow")

    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "got 504" in output
    assert "the upstream saw it 2 times" in output
    assert result.ret == 1


def test_x4_default_body_size_fails(tmp_path, run_suite):
    profile = with_nginx_site(tmp_path, NGINX_CASES / "x4-default-body-size.conf.j2")
    result = run_suite(profile, PROXY, "-k", "body")

    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "a 1153433-byte body got 413, expected 200" in output
    assert "a 8388608-byte body got 413" in output
    assert "set client_max_body_size to at least 8388608 bytes" in output
    assert "a 943718-byte body" not in output
    assert result.ret == 1


def test_x4_oversized_body_limit_fails(tmp_path, run_suite):
    profile = with_nginx_site(tmp_path, NGINX_CASES / "x4-oversized-body.conf.j2")
    result = run_suite(profile, PROXY, "-k", "body")

    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "one byte over the declared limit (8388609 bytes) got 200" in output
    assert result.ret == 1


def test_x4_declared_limit_is_the_boundary(tmp_path, run_suite):
    profile = local_profile(
        tmp_path, {"max_body_bytes = 8388608": "max_body_bytes = 2097152"}
    )
    result = run_suite(profile, PROXY, "-k", "body")

    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "a body one byte over the declared limit (2097153 bytes) got 200" in output


def test_gzip_stream_passes_decoded(tmp_path, run_suite):
    """Compressed events that nginx flushes one by one reach clients in time."""
    profile = with_nginx_site(tmp_path, NGINX_CASES / "correct-gzip-stream.conf.j2")
    report = tmp_path / "report"
    result = run_suite(profile, PROXY, "-k", "stream", "--gate-report", str(report))

    result.assert_outcomes(passed=1)
    assert _evidence(report, "stream content encoding") == "gzip"
    assert _evidence(report, "stream events") == 10


def test_cached_answers_fail(tmp_path, run_suite):
    profile = with_nginx_site(tmp_path, NGINX_CASES / "x3-cached-answers.conf.j2")
    result = run_suite(profile, PROXY, "-k", "body")

    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "the 1153433-byte request got completion chatcmpl-" in output
    assert "the response to the earlier 943718-byte request" in output
    assert "turn proxy_cache off on the gateway location" in output
    assert "cut on the way" not in output
    assert result.ret == 1


def test_websocket_idle_timeout_fails(tmp_path, run_suite):
    site = NGINX_CASES / "x1-idle-timeout.conf.j2"
    profile = local_profile(
        tmp_path, {**SHORT_IDLE, "[nginx]\n": f"[nginx]\nsite = '{site}'\n"}
    )
    result = run_suite(profile, PROXY, "-k", "websocket")

    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "route /internal/nats/: the websocket closed after " in output
    assert "expected it to stay open for 8 s (load.proxy.websocket_idle_s)" in output
    assert "set proxy_read_timeout on this location" in output
    assert result.ret == 1


def _evidence(report, name):
    gates = json.loads((report / "gates.json").read_text())
    for gate in gates["gates"]:
        for check in gate["checks"]:
            for record in check["evidence"]:
                if record["name"] == name:
                    return record["value"]
    raise AssertionError(f"no evidence named {name!r} in gates.json")
