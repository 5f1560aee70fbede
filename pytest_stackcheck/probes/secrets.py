"""Find the stack's secrets in what it prints: logs and HTTP responses.

The secrets are the values of every environment variable a profile names in a
``*_env`` key (the database password, bearer tokens), as pytest reads them or
as the local provisioner generated them. A finding never carries the secret
itself: the excerpt around it is shown with the value masked.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

if TYPE_CHECKING:
    from pytest_stackcheck.provision.base import LiveStack

log = logging.getLogger("pytest_stackcheck")

# Shorter values ("ok", "test") would match ordinary text and are too weak to
# be real secrets; such a value is reported as not searched, never skipped
# silently.
MIN_SECRET_CHARS = 8
EXCERPT_CHARS = 40
MASK = "***"
HTTP_TIMEOUT_S = 5.0
# A wrong bearer token: gateways that print the expected token in their 401
# body are found by sending this one.
WRONG_TOKEN = "stackcheck-wrong-token"


@dataclass(frozen=True, slots=True)
class Secret:
    """One secret, by the environment variable that contains it."""

    env_name: str
    # repr=False: pytest prints a failing test's arguments, and this is one.
    value: str = field(repr=False)

    def forms(self) -> dict[str, str]:
        """Return the ways the value appears in text, by the name of the encoding.

        A password shows up percent-encoded in a connection URL and inside
        base64 in a basic-auth header as well as verbatim.
        """
        found = {"verbatim": self.value}
        encoded = quote(self.value, safe="")
        if encoded != self.value:
            found["percent-encoded"] = encoded
        for offset, text in enumerate(_base64_cores(self.value.encode())):
            found[f"base64 at offset {offset}"] = text
        return found


def _base64_cores(value: bytes) -> list[str]:
    """Return the base64 characters that ``value`` alone decides, per alignment.

    Inside a longer base64 text (``user:password`` in a basic-auth header)
    the value starts at a byte offset of 0, 1 or 2 modulo 3. For each, the
    characters whose 6 bits all come from the value are the same whatever
    surrounds it.
    """
    cores: list[str] = []
    for offset in range(3):
        text = base64.b64encode(b"\0" * offset + value).decode()
        first = (8 * offset + 5) // 6
        last = (8 * (offset + len(value))) // 6
        cores.append(text[first:last])
    return cores


@dataclass(frozen=True, slots=True)
class Leak:
    """A secret found in one source, shown with the value masked."""

    env_name: str
    source: str
    form: str
    excerpt: str

    def describe(self) -> str:
        """Return the finding as one line; the secret itself is masked."""
        return (
            f"{self.env_name} ({self.form}) appears in {self.source}: {self.excerpt!r}"
        )


def secret_env_names(document: Any) -> list[str]:
    """Return every ``*_env`` value in a profile document, searched recursively."""
    names: list[str] = []
    if dataclasses.is_dataclass(document) and not isinstance(document, type):
        for item in dataclasses.fields(document):
            value = getattr(document, item.name)
            if item.name.endswith("_env") and isinstance(value, str) and value:
                names.append(value)
            else:
                names += secret_env_names(value)
    elif isinstance(document, dict):
        for value in document.values():
            names += secret_env_names(value)
    return sorted(set(names))


def known_secrets(stack: LiveStack) -> tuple[list[Secret], list[str]]:
    """Return the stack's secrets and the variables that were not searched.

    A variable that is unset, or has fewer than ``MIN_SECRET_CHARS``
    characters, is listed in the second value with the reason.
    """
    secrets: list[Secret] = []
    unsearched: list[str] = []
    for env_name in secret_env_names(stack.profile.doc):
        value = stack.secret(env_name)
        if not value:
            unsearched.append(f"{env_name} (not set)")
        elif len(value) < MIN_SECRET_CHARS:
            unsearched.append(f"{env_name} (shorter than {MIN_SECRET_CHARS} chars)")
        else:
            secrets.append(Secret(env_name, value))
    return secrets, unsearched


def find_leaks(source: str, text: str, secrets: list[Secret]) -> list[Leak]:
    """Return each secret form found in ``text``, once per secret and form."""
    leaks: list[Leak] = []
    for secret in secrets:
        for form, value in secret.forms().items():
            at = text.find(value)
            if at < 0:
                continue
            start = max(0, at - EXCERPT_CHARS)
            end = at + len(value) + EXCERPT_CHARS
            excerpt = text[start:end].replace(value, MASK)
            leaks.append(Leak(secret.env_name, source, form, excerpt))
    return leaks


def http_texts(stack: LiveStack) -> dict[str, str]:
    """Return the responses of the stack's HTTP endpoints to plain requests.

    Each service's health endpoint, the NATS monitoring pages, nginx's response
    to an unknown path, and every bearer-token route's response to a wrong
    token. A source that cannot be reached is left out and logged.
    """
    doc = stack.profile.doc
    requests: dict[str, tuple[str, str, dict[str, str]]] = {}
    for name, service in doc.services.items():
        if not service.port:
            continue
        base = stack.service_url(name)
        requests[f"{name} {service.health.path}"] = (
            "GET",
            base + service.health.path,
            {},
        )
        if service.token_env:
            requests[f"{name} response to a wrong token"] = (
                "POST",
                base + "/v1/chat/completions",
                {"Authorization": f"Bearer {WRONG_TOKEN}"},
            )
    if doc.nats.monitor_port:
        for page in ("/varz", "/connz?auth=true", "/jsz"):
            requests[f"nats {page}"] = ("GET", stack.nats_monitor_url + page, {})
    if doc.nginx.http_port:
        missing = "/stackcheck-no-such-page"
        requests[f"nginx {missing}"] = (
            "GET",
            stack.nginx_url + missing,
            {"Host": stack.nginx_host_header},
        )

    texts: dict[str, str] = {}
    with httpx.Client(timeout=HTTP_TIMEOUT_S) as client:
        for source, (method, url, headers) in requests.items():
            body = b"{}" if method == "POST" else None
            headers = (
                {**headers, "Content-Type": "application/json"} if body else headers
            )
            try:
                response = client.request(method, url, headers=headers, content=body)
            except httpx.HTTPError as exc:
                log.warning("secret scan: %s %s failed: %s", method, url, exc)
                continue
            header_text = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
            texts[source] = header_text + "\n\n" + response.text
    return texts


def log_texts(stack: LiveStack) -> dict[str, str]:
    """Return every captured log of the stack since it started, by source.

    The local stack's logs are files, nginx's access log and supervisord's
    own log included; a deployed stack's are its units' journals of the
    current invocation.
    """
    from pytest_stackcheck.probes import host

    if stack.log_dir is not None:
        return {
            f"log {path.name}": path.read_text(encoding="utf-8", errors="replace")
            for path in sorted(stack.log_dir.glob("*.log"))
        }
    return {
        f"journal of {name}": "\n".join(host.journal_lines(stack, name))
        for name in stack.profile.doc.services
    }
