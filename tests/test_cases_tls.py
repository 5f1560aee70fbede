"""Broken certificates the TLS check must block, each served by a real nginx.

Each test makes a certificate with one fault, has the local stack's nginx
serve it with the profile's nginx.certificate keys, and runs the TLS check
against it. The message must name the fault and the fix.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from helpers import SUITES, local_profile

from pytest_stackcheck.provision.local_tls import Certificates, make_certificates

TLS = str(SUITES / "security" / "test_tls.py")
NAMES = ["localhost", "127.0.0.1"]


def _serving(tmp_path: Path, served: Certificates, ca_file: Path) -> Path:
    settings = (
        f"[nginx]\ncertificate = '{served.certificate}'\n"
        f"certificate_key = '{served.key}'\nca_file = '{ca_file}'\n"
    )
    return local_profile(tmp_path, {"[nginx]\n": settings})


def _days_ago(days: float) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=days)


def test_valid_certificate_passes(tmp_path, run_suite):
    served = make_certificates(tmp_path / "tls", NAMES)

    result = run_suite(_serving(tmp_path, served, served.ca_file), TLS)

    result.assert_outcomes(passed=2)


def test_expired_certificate_fails(tmp_path, run_suite):
    served = make_certificates(tmp_path / "tls", NAMES, _days_ago(30), valid_days=10)

    result = run_suite(_serving(tmp_path, served, served.ca_file), TLS)

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*failed verification: certificate has expired*renew the certificate*"]
    )


def test_certificate_for_another_name_fails(tmp_path, run_suite):
    served = make_certificates(tmp_path / "tls", ["www.example.org"])

    result = run_suite(_serving(tmp_path, served, served.ca_file), TLS)

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*failed verification: Hostname mismatch*['www.example.org']*"
            "issue the certificate for nginx.server_name*"
        ]
    )


def test_certificate_expiring_soon_fails(tmp_path, run_suite):
    served = make_certificates(tmp_path / "tls", NAMES, valid_days=5)

    result = run_suite(_serving(tmp_path, served, served.ca_file), TLS)

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*expires in [45].[0-9] days, fewer than nginx.tls_min_days = 14*"]
    )


def test_certificate_from_unknown_ca_fails(tmp_path, run_suite):
    served = make_certificates(tmp_path / "served", NAMES)
    trusted = make_certificates(tmp_path / "trusted", NAMES)

    result = run_suite(_serving(tmp_path, served, trusted.ca_file), TLS)

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*failed verification: unable to get local issuer certificate*"
            "serve the full chain*"
        ]
    )
