"""Read and judge the certificate nginx serves for HTTPS."""

from __future__ import annotations

import datetime
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID


@dataclass(frozen=True, slots=True)
class CertificateReading:
    """The leaf certificate a TLS handshake received and whether it verified."""

    verified: bool
    error: str
    protocol: str
    subject: str
    issuer: str
    names: tuple[str, ...]
    not_after: datetime.datetime

    @property
    def days_left(self) -> float:
        """Days until the certificate expires; negative once it has."""
        remaining = self.not_after - datetime.datetime.now(datetime.UTC)
        return remaining.total_seconds() / 86400

    def describe(self) -> str:
        """Return the certificate's subject, issuer, names and expiry in one line."""
        return (
            f"subject {self.subject!r}, issuer {self.issuer!r}, names "
            f"{list(self.names)}, valid until {self.not_after:%Y-%m-%d %H:%M} UTC"
        )


def _common_name(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else name.rfc4514_string()


def _handshake(
    host: str, port: int, server_name: str, context: ssl.SSLContext, timeout: float
) -> tuple[bytes, str]:
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        return tls.getpeercert(binary_form=True) or b"", tls.version() or ""


def read_certificate(
    host: str, port: int, server_name: str, ca_file: Path | None, timeout: float
) -> CertificateReading:
    """Handshake with ``host:port`` as a client of ``server_name`` would.

    The chain is verified against ``ca_file``, or the system's trust store
    when it is None, and the certificate must cover ``server_name``. When
    verification fails, a second handshake without verification fetches the
    certificate so the failure message can describe what was served.
    """
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    error = ""
    try:
        der, protocol = _handshake(host, port, server_name, context, timeout)
    except ssl.SSLCertVerificationError as exc:
        error = exc.verify_message or str(exc)
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        der, protocol = _handshake(host, port, server_name, insecure, timeout)

    certificate = x509.load_der_x509_certificate(der)
    try:
        alternatives = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
        names = tuple(
            str(value) for value in alternatives.get_values_for_type(x509.DNSName)
        ) + tuple(
            str(value) for value in alternatives.get_values_for_type(x509.IPAddress)
        )
    except x509.ExtensionNotFound:
        names = ()
    return CertificateReading(
        verified=not error,
        error=error,
        protocol=protocol,
        subject=_common_name(certificate.subject),
        issuer=_common_name(certificate.issuer),
        names=names,
        not_after=certificate.not_valid_after_utc,
    )


def verification_fix(error: str) -> str:
    """Return what an operator does about an OpenSSL verification message."""
    text = error.lower()
    if "expired" in text:
        return "renew the certificate and reload nginx"
    if "not yet valid" in text:
        return "check the host clock, or wait until the certificate's start date"
    if "hostname mismatch" in text or "ip address mismatch" in text:
        return "issue the certificate for nginx.server_name, or correct that key"
    if any(
        marker in text
        for marker in ("self-signed", "self signed", "local issuer", "signature")
    ):
        return (
            "serve the full chain (ssl_certificate must hold the intermediates), "
            "or name the private CA in nginx.ca_file"
        )
    return "fix the certificate nginx serves"
