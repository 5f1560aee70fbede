"""The bad-input check through real nginx to the reference gateway."""

from __future__ import annotations

from helpers import NGINX_CASES, SUITES, local_profile, with_nginx_site

BAD_INPUT = str(SUITES / "load" / "test_bad_input.py")


def test_bad_input_passes_on_shipped_site(tmp_path, run_suite):
    result = run_suite(local_profile(tmp_path), BAD_INPUT)

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["security *pass*", "load *pass*"])


def test_rate_limit_with_503_fails(tmp_path, run_suite):
    profile = with_nginx_site(tmp_path, NGINX_CASES / "limit-req-503.conf.j2")
    result = run_suite(profile, BAD_INPUT)

    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "got 503, a server error" in output
    assert "Service Temporarily Unavailable" in output
    result.stdout.fnmatch_lines(["security *fail*", "load *fail*"])
    assert result.ret == 1


def test_zero_examples_skips(tmp_path, run_suite):
    limit = "max_body_bytes = 8388608\n"
    profile = local_profile(tmp_path, {limit: limit + "bad_input_examples = 0\n"})
    result = run_suite(profile, BAD_INPUT, "-rs")

    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*load.proxy.bad_input_examples is 0*"])
