"""The provisioner contract and the live stack it hands to the suites.

A provisioner turns a ``Profile`` into a ``LiveStack``: the same profile with
every port resolved, the secrets the checks need, and where the stack's logs
and supervisor live. The live stack is saved as a private state file, so that
pytest-xdist workers attach to the stack the controller started.
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pytest_stackcheck.errors import ProvisionError
from pytest_stackcheck.profile import (
    Profile,
    load_profile,
    with_ports,
    with_values,
)


@dataclass(frozen=True, slots=True)
class LiveStack:
    """A running stack: its resolved profile and how to reach and control it."""

    profile: Profile
    ports: dict[str, int] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    workdir: Path | None = None
    log_dir: Path | None = None
    supervisor_socket: Path | None = None
    started_at: float = 0.0
    owned: bool = False
    settings: dict[str, str] = field(default_factory=dict)
    """Profile values the provisioner filled in, by dotted key (certificate
    paths, for example), so that attached workers see the same profile."""

    @property
    def name(self) -> str:
        return self.profile.name

    def service_url(self, name: str) -> str:
        """Return the base URL of application service ``name``."""
        service = self.profile.doc.services[name]
        return f"http://{service.host}:{service.port}"

    @property
    def nginx_url(self) -> str:
        nginx = self.profile.doc.nginx
        return f"http://{nginx.host}:{nginx.http_port}"

    @property
    def nginx_host_header(self) -> str:
        """Return the Host header a browser sends to nginx.server_name over HTTP.

        Checks through nginx send it, so that they reach the server block that
        real clients reach rather than the default server for requests by address.
        """
        nginx = self.profile.doc.nginx
        if nginx.http_port == 80:
            return nginx.server_name
        return f"{nginx.server_name}:{nginx.http_port}"

    @property
    def nats_url(self) -> str:
        nats = self.profile.doc.nats
        return f"nats://{nats.host}:{nats.client_port}"

    @property
    def nats_monitor_url(self) -> str:
        nats = self.profile.doc.nats
        return f"http://{nats.host}:{nats.monitor_port}"

    def conninfo(self, database: str) -> dict[str, str | int]:
        """Return psycopg connection arguments for ``database`` as the check user."""
        postgres = self.profile.doc.postgres
        arguments: dict[str, str | int] = {
            "host": postgres.host,
            "port": postgres.port,
            "dbname": database,
            "user": postgres.user,
            "connect_timeout": 5,
        }
        password = self.secret(postgres.password_env)
        if password:
            arguments["password"] = password
        return arguments

    def secret(self, env_name: str) -> str:
        """Return a secret by its environment variable name, or an empty string.

        The process environment wins over secrets the provisioner generated, so
        an operator can pass production credentials without writing them down.
        """
        if not env_name:
            return ""
        return os.environ.get(env_name) or self.secrets.get(env_name, "")

    def save(self, path: Path) -> None:
        """Write the state file that other processes attach with (mode 0600)."""
        state = {
            "profile": str(self.profile.path),
            "ports": self.ports,
            "secrets": self.secrets,
            "workdir": str(self.workdir) if self.workdir else None,
            "log_dir": str(self.log_dir) if self.log_dir else None,
            "supervisor_socket": (
                str(self.supervisor_socket) if self.supervisor_socket else None
            ),
            "started_at": self.started_at,
            "settings": self.settings,
        }
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(state, handle)

    @classmethod
    def load(cls, path: Path) -> LiveStack:
        """Attach to the stack described by a state file that ``save`` wrote."""
        state = json.loads(path.read_text(encoding="utf-8"))
        profile = load_profile(Path(state["profile"]))
        ports = {str(k): int(v) for k, v in state["ports"].items()}
        settings = {str(k): str(v) for k, v in state.get("settings", {}).items()}
        doc = with_values(with_ports(profile.doc, ports), settings)
        profile = Profile(profile.path, doc)

        def optional_path(key: str) -> Path | None:
            value = state.get(key)
            return Path(value) if value else None

        return cls(
            profile=profile,
            ports=ports,
            secrets=dict(state["secrets"]),
            workdir=optional_path("workdir"),
            log_dir=optional_path("log_dir"),
            supervisor_socket=optional_path("supervisor_socket"),
            started_at=float(state["started_at"]),
            owned=False,
            settings=settings,
        )


class Provisioner(Protocol):
    """Brings a stack up, or finds it, and tears down what it started."""

    def up(self, profile: Profile) -> LiveStack:
        """Start or find the stack and return it once every part is healthy."""
        ...

    def down(self, stack: LiveStack) -> None:
        """Stop and remove whatever ``up`` started; a no-op for found stacks."""
        ...


_PROVISIONERS = {
    "local": "pytest_stackcheck.provision.local:LocalProvisioner",
    "existing": "pytest_stackcheck.provision.existing:ExistingProvisioner",
}


def get_provisioner(name: str) -> Provisioner:
    """Load the provisioner called ``name``; heavy imports happen only here."""
    target = _PROVISIONERS.get(name)
    if target is None:
        # NOTE: the nix and kubernetes provisioners are accepted by the profile
        # model but not built yet.
        raise ProvisionError(
            f"provisioner '{name}' is not available in this version; use "
            f"'local' or 'existing' (an already deployed stack)"
        )

    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    provisioner: Provisioner = getattr(module, class_name)()
    return provisioner
