"""Stack profiles: the one place where a deployment's names, ports and limits live.

A profile is a TOML file, found by name in ``fixtures/stacks/`` (or a directory
named by the ``stackcheck_stacks_dir`` ini key) or given as a path. Loading it
either returns a frozen ``Profile`` or raises ``pytest.UsageError`` naming the
file, the key, the value and the fix.

A port of 0 means "pick a free loopback port at provision time" and is only
valid for the ``local`` provisioner.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import pytest

from pytest_stackcheck.backup.spec import BackupSpec
from pytest_stackcheck.chaos.spec import ChaosSpec
from pytest_stackcheck.errors import ProbeError
from pytest_stackcheck.gpu.settings import GpuSpec
from pytest_stackcheck.load.spec import LoadSpec
from pytest_stackcheck.probes.hostexec import parse_target
from pytest_stackcheck.schema import SchemaError, build, spec

ALL_GATES = (
    "preprod",
    "production",
    "day1",
    "gpu",
    "chaos",
    "load",
    "backup",
    "security",
)

Provisioner = Literal["local", "existing", "nix", "kubernetes"]
RestartPolicy = Literal["always", "on-failure", "no"]
HealthValue = str | int | float | bool

SHIPPED_STACKS = Path(__file__).resolve().parent.parent / "fixtures" / "stacks"


@dataclass(frozen=True, slots=True)
class StackSection:
    """Identity of the stack and how it is brought up."""

    name: str = spec(help="set a short stack name, for example name = 'prod'")
    provisioner: Provisioner = spec(
        help="set provisioner to 'local' or 'existing' (nix and kubernetes are not "
        "built yet)"
    )
    description: str = spec("", help="describe the stack in one line")
    host: str = spec(
        "",
        help="set the testinfra connection string of the host, for example "
        "'ssh://deploy@gpu-1' (empty means this machine)",
    )
    ssh_config: str = spec(
        "",
        help="name an ssh_config file, relative to the profile, that the ssh "
        "client reads for stack.host (identity file, known hosts); empty uses "
        "~/.ssh/config",
    )


@dataclass(frozen=True, slots=True)
class Policy:
    """What the suites may do to this stack and which gates block a deploy."""

    destructive: bool = spec(
        False,
        help="set destructive = true only on stacks where chaos and restores "
        "into the server are allowed",
    )
    blocking_gates: tuple[str, ...] = spec(
        ALL_GATES, help=f"list gate names out of {', '.join(ALL_GATES)}"
    )


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long checks wait for a condition to hold, in seconds."""

    ready_s: float = spec(
        60.0, help="set seconds to wait for the whole stack to turn healthy"
    )
    check_s: float = spec(10.0, help="set seconds one check waits for its condition")
    poll_s: float = spec(0.2, help="set seconds between two tries of a check")


@dataclass(frozen=True, slots=True)
class HealthSpec:
    """How a service's health endpoint reads when it is healthy."""

    path: str = spec("/health", help="set the HTTP path of the health endpoint")
    status: int = spec(200, help="set the HTTP status a healthy service returns")
    fields: dict[str, HealthValue] = spec(
        factory=dict,
        help="map dotted JSON paths to the values a healthy body holds, for "
        "example { 'services.database' = 'ok' }",
    )


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One application service."""

    port: int = spec(help="set the TCP port the service listens on")
    host: str = spec("127.0.0.1", help="set the address the service listens on")
    role: str = spec(
        "",
        help="set the reference role the local stack runs for this service: "
        "singularity, centralcloud, genesis or llm-server",
    )
    database: str = spec(
        "", help="name one of postgres.databases, or leave empty for none"
    )
    nats: bool = spec(True, help="set nats = false if the service uses no NATS")
    health: HealthSpec = spec(factory=HealthSpec, help="write a [health] table")
    restart: RestartPolicy = spec(
        "always", help="set restart to 'always', 'on-failure' or 'no'"
    )
    restart_delay_s: float = spec(
        1.0, help="set seconds the supervisor waits before a restart"
    )
    unit: str = spec("", help="set the systemd unit name (default: the service name)")
    token_env: str = spec(
        "", help="name the environment variable that holds the bearer token"
    )
    args: tuple[str, ...] = spec(
        (),
        help="list extra command-line arguments of the reference service the "
        "local stack runs, for example ['--latency-ms', '200']",
    )


@dataclass(frozen=True, slots=True)
class PostgresSpec:
    """The PostgreSQL server and its databases."""

    databases: tuple[str, ...] = spec(
        help="list the database names, for example ['singularity', 'genesis']"
    )
    host: str = spec("127.0.0.1", help="set the address PostgreSQL listens on")
    port: int = spec(5432, help="set the TCP port PostgreSQL listens on")
    unit: str = spec(
        "",
        help="set the systemd unit of the server, for example 'postgresql' "
        "(NixOS) or 'postgresql@15-main' (Debian), so chaos can kill it",
    )
    owner: str = spec("stackcheck_app", help="set the role that owns the databases")
    user: str = spec(
        "postgres", help="set the role the checks connect as (read access suffices)"
    )
    password_env: str = spec(
        "", help="name the environment variable that holds the checks' password"
    )
    extensions: tuple[str, ...] = spec(
        ("pg_trgm",), help="list extensions every database must have"
    )
    migrations_table: str = spec(
        "schema_migrations", help="set the table that records applied migrations"
    )
    min_version: int = spec(14, help="set the lowest acceptable major version")
    hba: str = spec(
        "",
        help="name a pg_hba.conf file, relative to the profile, that the local "
        "stack's PostgreSQL uses instead of its own",
    )
    expected_migration: str = spec(
        "",
        help="set the newest migration version this release ships, as written "
        "in the migrations table, or leave empty to accept any applied migration",
    )


@dataclass(frozen=True, slots=True)
class NatsSpec:
    """The NATS server with JetStream."""

    host: str = spec("127.0.0.1", help="set the address NATS listens on")
    client_port: int = spec(4222, help="set the NATS client port")
    websocket_port: int = spec(4223, help="set the NATS websocket port")
    monitor_port: int = spec(8222, help="set the NATS monitoring port")
    jetstream: bool = spec(True, help="set jetstream = true if JetStream is used")
    unit: str = spec(
        "", help="set the systemd unit of nats-server, so chaos can kill it"
    )
    config: str = spec(
        "",
        help="name a nats.conf template (relative to the profile) to replace "
        "the shipped one, or leave empty",
    )


@dataclass(frozen=True, slots=True)
class Route:
    """One nginx location and the service behind it."""

    prefix: str = spec(help="set the location prefix, for example '/internal/llm/'")
    service: str = spec(help="name a service from [services], or 'nats'")
    websocket: bool = spec(
        False, help="set websocket = true for routes that upgrade to websocket"
    )
    probe: str = spec(
        "health",
        help="set the path, relative to the prefix, that the route check requests",
    )


@dataclass(frozen=True, slots=True)
class NginxSpec:
    """The nginx front end."""

    routes: tuple[Route, ...] = spec(help="write one [[nginx.routes]] per location")
    host: str = spec("127.0.0.1", help="set the address nginx listens on")
    http_port: int = spec(80, help="set the HTTP port nginx listens on")
    unit: str = spec("", help="set the systemd unit of nginx, so chaos can kill it")
    site: str = spec(
        "",
        help="name an nginx site template (relative to the profile) to replace "
        "the shipped one, or leave empty",
    )
    tls: bool = spec(False, help="set tls = true if nginx serves HTTPS")
    https_port: int = spec(443, help="set the HTTPS port nginx listens on")
    server_name: str = spec(
        "localhost", help="set the host name the certificate must be valid for"
    )
    ca_file: str = spec(
        "",
        help="name the CA bundle (relative to the profile) that must verify the "
        "certificate, or leave empty for the system's trust store",
    )
    certificate: str = spec(
        "",
        help="name a certificate chain file for the local stack's nginx to serve, "
        "or leave empty to have one generated",
    )
    certificate_key: str = spec(
        "", help="name the private key file that goes with nginx.certificate"
    )
    tls_min_days: int = spec(
        14, help="set how many days the certificate must stay valid at least"
    )


@dataclass(frozen=True, slots=True)
class LocalSpec:
    """Settings used only by the embedded local stack."""

    run_as: str = spec(
        "nobody",
        help="name the unprivileged user that runs the servers when pytest runs "
        "as root",
    )


@dataclass(frozen=True, slots=True)
class SecuritySpec:
    """The components allowed to listen beyond this host's loopback."""

    public: tuple[str, ...] = spec(
        ("nginx",),
        help="list the components that may listen beyond loopback: 'nginx', "
        "'postgres', 'nats' or a service name",
    )


@dataclass(frozen=True, slots=True)
class MonitoringSpec:
    """The Prometheus that scrapes the stack, and what it must scrape."""

    prometheus_url: str = spec(
        "",
        help="set the base URL of the Prometheus that scrapes this stack, for "
        "example 'http://127.0.0.1:9090', or leave it empty to skip the check",
    )
    required_jobs: tuple[str, ...] = spec(
        (),
        help="list the scrape jobs that must have targets, for example "
        "['node', 'nats', 'postgres']",
    )
    max_scrape_age_s: float = spec(
        300.0,
        help="set the seconds since a target's last scrape after which it "
        "counts as stale",
    )


@dataclass(frozen=True, slots=True)
class ProfileDocument:
    """The TOML document as written, before paths are resolved."""

    stack: StackSection = spec(help="write a [stack] table with name and provisioner")
    services: dict[str, ServiceSpec] = spec(
        help="write one [services.NAME] table per application service"
    )
    postgres: PostgresSpec = spec(help="write a [postgres] table")
    nats: NatsSpec = spec(help="write a [nats] table")
    nginx: NginxSpec = spec(help="write an [nginx] table with its routes")
    backup: BackupSpec = spec(factory=BackupSpec, help="write a [backup] table")
    policy: Policy = spec(factory=Policy, help="write a [policy] table")
    timeouts: Timeouts = spec(factory=Timeouts, help="write a [timeouts] table")
    local: LocalSpec = spec(factory=LocalSpec, help="write a [local] table")
    security: SecuritySpec = spec(factory=SecuritySpec, help="write a [security] table")
    monitoring: MonitoringSpec = spec(
        factory=MonitoringSpec, help="write a [monitoring] table"
    )
    gpu: GpuSpec = spec(factory=GpuSpec, help="write a [gpu] table")
    load: LoadSpec = spec(factory=LoadSpec, help="write a [load] table")
    chaos: ChaosSpec = spec(factory=ChaosSpec, help="write a [chaos] table")


@dataclass(frozen=True, slots=True)
class Profile:
    """A validated stack profile and the file it came from."""

    path: Path
    doc: ProfileDocument

    @property
    def name(self) -> str:
        return self.doc.stack.name

    def resolve(self, relative: str) -> Path:
        """Return a path from the profile, taken relative to the profile's file."""
        return (self.path.parent / relative).resolve()


def available_stacks(directories: list[Path]) -> dict[str, Path]:
    """Map each profile name found in ``directories`` to its file."""
    found: dict[str, Path] = {}
    for directory in directories:
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.toml")):
            found.setdefault(path.stem, path)
    return found


def find_stack(name: str, directories: list[Path]) -> Path:
    """Return the profile file for stack ``name``, or raise a UsageError."""
    stacks = available_stacks(directories)
    if name in stacks:
        return stacks[name]

    listed = ", ".join(sorted(stacks)) or "none"
    searched = ", ".join(str(d) for d in directories)
    raise pytest.UsageError(
        f"--stack={name}: no such stack profile; available stacks: {listed} "
        f"(searched {searched}); pass one of them, or --stack-file=PATH"
    )


def load_profile(path: Path) -> Profile:
    """Load and validate the profile at ``path``, or raise a UsageError."""
    where = f"stack profile {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise pytest.UsageError(
            f"{where}: cannot be read ({exc}); pass an existing UTF-8 TOML file"
        ) from exc

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise pytest.UsageError(
            f"{where}: is not valid TOML ({exc}); fix the syntax at that place"
        ) from exc

    try:
        doc = build(ProfileDocument, data)
        profile = Profile(path=path.resolve(), doc=doc)
        check_consistency(profile)
    except SchemaError as exc:
        raise pytest.UsageError(f"{where}: {exc}") from exc
    return profile


def check_consistency(profile: Profile) -> None:
    """Check the rules that span several keys, raising SchemaError."""
    doc = profile.doc
    databases = set(doc.postgres.databases)

    if not doc.services:
        raise SchemaError(
            "services", {}, "no service is defined", "add a [services.NAME] table"
        )
    for name, service in doc.services.items():
        if service.database and service.database not in databases:
            raise SchemaError(
                f"services.{name}.database",
                service.database,
                "not one of postgres.databases",
                f"use one of {sorted(databases)} or add it to postgres.databases",
            )
        if service.token_env and not service.token_env.isidentifier():
            raise SchemaError(
                f"services.{name}.token_env",
                service.token_env,
                "not an environment variable name",
                "name a variable such as LLM_SERVER_TOKEN",
            )

    targets = set(doc.services) | {"nats"}
    for index, route in enumerate(doc.nginx.routes):
        key = f"nginx.routes[{index}]"
        if route.service not in targets:
            raise SchemaError(
                f"{key}.service",
                route.service,
                "not a service of this profile",
                f"use one of {sorted(targets)}",
            )
        if not route.prefix.startswith("/") or not route.prefix.endswith("/"):
            raise SchemaError(
                f"{key}.prefix",
                route.prefix,
                "a location prefix must start and end with '/'",
                "write it as '/internal/llm/'",
            )

    unknown = [g for g in doc.policy.blocking_gates if g not in ALL_GATES]
    if unknown:
        raise SchemaError(
            "policy.blocking_gates",
            unknown[0],
            "not a gate name",
            f"use names out of {', '.join(ALL_GATES)}",
        )

    if bool(doc.nginx.certificate) != bool(doc.nginx.certificate_key):
        raise SchemaError(
            "nginx.certificate_key" if doc.nginx.certificate else "nginx.certificate",
            "",
            "a certificate and its key go together",
            "set both nginx.certificate and nginx.certificate_key, or neither",
        )

    _check_host(profile)

    for label, relative in (
        ("stack.ssh_config", doc.stack.ssh_config),
        ("nginx.site", doc.nginx.site),
        ("nats.config", doc.nats.config),
        ("postgres.hba", doc.postgres.hba),
        ("nginx.ca_file", doc.nginx.ca_file),
        ("nginx.certificate", doc.nginx.certificate),
        ("nginx.certificate_key", doc.nginx.certificate_key),
    ):
        if relative and not profile.resolve(relative).is_file():
            raise SchemaError(
                label,
                relative,
                f"file {profile.resolve(relative)} does not exist",
                "name an existing file, relative to the profile",
            )

    components = set(doc.services) | {"nginx", "postgres", "nats"}
    for name in doc.security.public:
        if name not in components:
            raise SchemaError(
                "security.public",
                name,
                "not a component of this profile",
                f"use names out of {', '.join(sorted(components))}",
            )

    _check_ports(doc)


def _check_host(profile: Profile) -> None:
    stack = profile.doc.stack
    try:
        target = parse_target(stack.host)
    except ProbeError as exc:
        raise SchemaError(
            "stack.host",
            stack.host,
            "the host checks reach a host only over ssh",
            "write 'ssh://user@host' or 'ssh://user@host:port', or leave it "
            "empty for this machine",
        ) from exc
    if stack.ssh_config and target.is_local:
        raise SchemaError(
            "stack.ssh_config",
            stack.ssh_config,
            "only an ssh host uses it, and stack.host is this machine",
            "set stack.host to 'ssh://user@host', or remove stack.ssh_config",
        )


def _check_ports(doc: ProfileDocument) -> None:
    ports: list[tuple[str, int]] = [
        ("postgres.port", doc.postgres.port),
        ("nats.client_port", doc.nats.client_port),
        ("nats.websocket_port", doc.nats.websocket_port),
        ("nats.monitor_port", doc.nats.monitor_port),
        ("nginx.http_port", doc.nginx.http_port),
    ]
    if doc.nginx.tls:
        ports.append(("nginx.https_port", doc.nginx.https_port))
    ports += [(f"services.{n}.port", s.port) for n, s in doc.services.items()]

    for key, port in ports:
        if not 0 <= port <= 65535:
            raise SchemaError(key, port, "not a TCP port", "use 1 to 65535")
        if port == 0 and doc.stack.provisioner != "local":
            raise SchemaError(
                key,
                port,
                "port 0 (pick a free port) only works for the local provisioner",
                "set the port the deployed service listens on",
            )


def with_ports(doc: ProfileDocument, ports: dict[str, int]) -> ProfileDocument:
    """Return ``doc`` with ports set from dotted keys such as ``nats.client_port``."""
    return with_values(doc, ports)


def with_values(doc: ProfileDocument, values: Mapping[str, object]) -> ProfileDocument:
    """Return ``doc`` with settings replaced by dotted keys, as ``nginx.ca_file``.

    Keys name a field of a top-level table or ``services.NAME.port``; the
    values are not validated again.
    """
    tables: dict[str, Any] = {}
    for key, port in values.items():
        head, _, rest = key.partition(".")
        tables.setdefault(head, {})[rest] = port

    result = doc
    for head, changes in tables.items():
        if head == "services":
            services = dict(result.services)
            for dotted, port in changes.items():
                name = dotted.rsplit(".", 1)[0]
                services[name] = replace(services[name], port=port)
            result = replace(result, services=services)
        else:
            table: Any = getattr(result, head)
            result = replace(result, **{head: replace(table, **changes)})
    return result


def zero_ports(doc: ProfileDocument) -> list[str]:
    """List the dotted keys of ports set to 0 (to be picked at provision time)."""
    keys = [
        f"{table}.{f.name}"
        for table in ("postgres", "nats", "nginx")
        for f in fields(getattr(doc, table))
        if f.name.endswith("port") and getattr(getattr(doc, table), f.name) == 0
    ]
    if not doc.nginx.tls and "nginx.https_port" in keys:
        keys.remove("nginx.https_port")
    keys += [f"services.{n}.port" for n, s in doc.services.items() if s.port == 0]
    return keys
