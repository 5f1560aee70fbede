"""HTTPS: the certificate nginx serves verifies, names the host and is not expiring.

Clients see an expired, misnamed or incomplete chain as an outage, so these
checks count for the production gate as well as for security.
"""

from __future__ import annotations

import ssl

import httpx
import pytest

from pytest_stackcheck.probes.tls import read_certificate, verification_fix


def _skip_without_tls(stack) -> None:
    if not stack.profile.doc.nginx.tls:
        pytest.skip("the profile says nginx serves no HTTPS (nginx.tls = false)")


@pytest.mark.gate("production", item="TLS certificate valid")
@pytest.mark.gate("security", item="TLS certificate valid")
def test_tls_certificate_valid(stack, evidence):
    _skip_without_tls(stack)
    nginx = stack.profile.doc.nginx
    ca_file = stack.profile.resolve(nginx.ca_file) if nginx.ca_file else None

    reading = read_certificate(
        nginx.host,
        nginx.https_port,
        nginx.server_name,
        ca_file,
        stack.profile.doc.timeouts.check_s,
    )

    evidence.record("tls.subject", reading.subject)
    evidence.record("tls.issuer", reading.issuer)
    evidence.record("tls.not_after", reading.not_after.isoformat())
    evidence.record("tls.days_left", round(reading.days_left, 1), "days")
    evidence.record("tls.protocol", reading.protocol)
    where = f"{nginx.server_name} at {nginx.host}:{nginx.https_port}"
    assert reading.verified, (
        f"the certificate of {where} failed verification: {reading.error}; served "
        f"{reading.describe()}; {verification_fix(reading.error)}"
    )
    assert reading.days_left >= nginx.tls_min_days, (
        f"the certificate of {where} expires in {reading.days_left:.1f} days, fewer "
        f"than nginx.tls_min_days = {nginx.tls_min_days}; served "
        f"{reading.describe()}; renew it and reload nginx"
    )


@pytest.mark.gate("production", item="HTTPS serves the front page")
def test_https_front_page(stack, evidence):
    _skip_without_tls(stack)
    nginx = stack.profile.doc.nginx
    ca_file = stack.profile.resolve(nginx.ca_file) if nginx.ca_file else None
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    url = f"https://{nginx.server_name}:{nginx.https_port}/"
    transport = httpx.HTTPTransport(verify=context)
    # Resolve the server name to nginx's address, as a client's DNS would.
    with httpx.Client(
        transport=transport, timeout=stack.profile.doc.timeouts.check_s
    ) as client:
        response = client.get(
            f"https://{nginx.host}:{nginx.https_port}/",
            headers={"Host": nginx.server_name},
            extensions={"sni_hostname": nginx.server_name},
        )

    evidence.record("https.status", response.status_code)
    assert response.status_code < 500, (
        f"GET {url} through nginx returned {response.status_code}: "
        f"{response.text[:200]!r}"
    )
