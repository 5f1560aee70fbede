"""Sites whose plain HTTP only redirects to HTTPS: client checks go over HTTPS.

Production sites often respond on port 80 with a redirect. The checks that judge
what clients get (llm-server's contract, bad input, locust load, the proxy
checks) must then run over HTTPS rather than fail on the redirect. The test
starts a real local stack with such a site.
"""

from __future__ import annotations

from helpers import NGINX_CASES, SUITES, with_nginx_site

REDIRECT_SITE = NGINX_CASES / "correct-https-redirect.conf.j2"


def test_client_checks_pass_over_https(tmp_path, run_suite):
    profile = with_nginx_site(tmp_path, REDIRECT_SITE)

    result = run_suite(
        profile,
        str(SUITES / "acceptance" / "test_llm_contract.py"),
        str(SUITES / "load" / "test_bad_input.py"),
        str(SUITES / "load" / "test_gateway.py"),
        str(SUITES / "load" / "test_proxy.py"),
        "-k",
        "contract or bad_input or gateway_slo or stream or body_limit",
    )

    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["day1 *pass*", "load *pass*"], consecutive=False)
