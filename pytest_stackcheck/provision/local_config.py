"""Configuration files of the local stack, rendered from the live profile.

The nginx site and nats.conf are Jinja2 templates, so an operator can point the
profile at their own production file with ports replaced by template names
and rehearse it here. supervisord's file is generated; it mirrors the restart
policy the profile declares for each service.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import jinja2

from pytest_stackcheck.profile import Profile, ProfileDocument, ServiceSpec

FIXTURES = Path(__file__).resolve().parent.parent.parent / "fixtures"
REFERENCE_SERVICE = FIXTURES / "reference" / "refservice.py"
DEFAULT_SITE = FIXTURES / "nginx" / "site.conf.j2"
DEFAULT_NATS = FIXTURES / "nats" / "nats.conf.j2"
NGINX_MAIN = FIXTURES / "nginx" / "nginx.conf.j2"


@dataclass(frozen=True, slots=True)
class Layout:
    """Where each part of the local stack keeps its files."""

    root: Path

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def pgsocket(self) -> Path:
        return self.root / "pgsocket"

    @property
    def nats_store(self) -> Path:
        return self.root / "jetstream"

    @property
    def nginx(self) -> Path:
        return self.root / "nginx"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def supervisor_conf(self) -> Path:
        return self.root / "supervisord.conf"

    @property
    def supervisor_socket(self) -> Path:
        return self.root / "supervisor.sock"

    @property
    def fault_proxy_socket(self) -> Path:
        return self.root / "faultproxy.sock"

    @property
    def nats_conf(self) -> Path:
        return self.root / "nats.conf"

    @property
    def nginx_conf(self) -> Path:
        return self.nginx / "nginx.conf"

    @property
    def nginx_site(self) -> Path:
        return self.nginx / "site.conf"


def _render(template_path: Path, context: dict[str, object]) -> str:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_path.parent)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    return environment.get_template(template_path.name).render(context)


def template_context(doc: ProfileDocument, layout: Layout) -> dict[str, object]:
    """Return the names a config template can use."""

    def upstream(name: str) -> str:
        if name == "nats":
            return f"{doc.nats.host}:{doc.nats.websocket_port}"
        service = doc.services[name]
        return f"{service.host}:{service.port}"

    return {
        "services": doc.services,
        "nats": doc.nats,
        "nginx": doc.nginx,
        "postgres": doc.postgres,
        "upstream": upstream,
        "nats_store_dir": str(layout.nats_store),
        "nginx_dir": str(layout.nginx),
        "log_dir": str(layout.logs),
        "site_path": str(layout.nginx_site),
    }


def render_configs(profile: Profile, doc: ProfileDocument, layout: Layout) -> None:
    """Write nats.conf, the nginx files and supervisord.conf under ``layout``."""
    context = template_context(doc, layout)
    site = profile.resolve(doc.nginx.site) if doc.nginx.site else DEFAULT_SITE
    nats = profile.resolve(doc.nats.config) if doc.nats.config else DEFAULT_NATS

    layout.nats_conf.write_text(_render(nats, context), encoding="utf-8")
    layout.nginx_site.write_text(_render(site, context), encoding="utf-8")
    layout.nginx_conf.write_text(_render(NGINX_MAIN, context), encoding="utf-8")


def _autorestart(service: ServiceSpec) -> str:
    # supervisord's "unexpected" restarts only on exit codes outside
    # `exitcodes`, which mirrors systemd's Restart=on-failure: exit 0 and a
    # clean stop leave the program down.
    return {"always": "true", "on-failure": "unexpected", "no": "false"}[
        service.restart
    ]


def _program(
    name: str,
    command: list[str],
    layout: Layout,
    user: str | None,
    priority: int,
    extra: dict[str, str] | None = None,
) -> str:
    lines = [
        f"[program:{name}]",
        # supervisord expands %(name)s in values, so a literal % is doubled.
        f"command={shlex.join(command).replace('%', '%%')}",
        f"directory={layout.root}",
        "autostart=false",
        "startsecs=0",
        "startretries=100",
        f"priority={priority}",
        "stopasgroup=true",
        "killasgroup=true",
        "stopwaitsecs=10",
        "redirect_stderr=true",
        f"stdout_logfile={layout.logs / (name + '.log')}",
        "stdout_logfile_maxbytes=0",
    ]
    if user:
        lines.append(f"user={user}")
    for key, value in (extra or {}).items():
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def _environment(values: dict[str, str]) -> str:
    # supervisord parses this as a comma-separated list of KEY="value" pairs;
    # '%' must be doubled because the file is read with interpolation.
    return ",".join(
        f'{key}="{value.replace("%", "%%")}"' for key, value in values.items()
    )


def supervisor_config(
    doc: ProfileDocument,
    layout: Layout,
    binaries: dict[str, str],
    secrets: dict[str, str],
    user: str | None,
) -> str:
    """Return supervisord.conf for the whole stack (programs start stopped).

    Only PostgreSQL runs as ``user``: it refuses to run as root, while the
    other programs may need files (a virtual environment under /root, say)
    that an unprivileged user cannot read.
    """
    sections = [
        "[unix_http_server]",
        f"file={layout.supervisor_socket}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"logfile={layout.logs / 'supervisord.log'}",
        f"pidfile={layout.root / 'supervisord.pid'}",
        "logfile_maxbytes=0",
        "loglevel=info",
        "nodaemon=true",
        f"directory={layout.root}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = "
        "supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{layout.supervisor_socket}",
        "",
    ]
    programs = [
        _program(
            "postgresql",
            [
                binaries["postgres"],
                "-D",
                str(layout.pgdata),
                "-p",
                str(doc.postgres.port),
                "-k",
                str(layout.pgsocket),
                "-c",
                f"listen_addresses={doc.postgres.host}",
                "-c",
                "log_line_prefix=%m [%p] ",
            ],
            layout,
            user,
            priority=10,
            extra={"stopsignal": "INT", "autorestart": "true"},
        ),
        _program(
            "nats",
            [binaries["nats-server"], "-c", str(layout.nats_conf)],
            layout,
            None,
            priority=10,
            extra={"autorestart": "true"},
        ),
        _program(
            "nginx",
            [
                binaries["nginx"],
                "-p",
                str(layout.nginx),
                "-c",
                str(layout.nginx_conf),
                "-e",
                str(layout.logs / "nginx-error.log"),
                "-g",
                "daemon off;",
            ],
            layout,
            None,
            priority=30,
            extra={"stopsignal": "QUIT", "autorestart": "true"},
        ),
    ]
    proxy_ports: dict[str, int] = {}
    if doc.chaos.network_proxy:
        from pytest_stackcheck.chaos.proxy import proxy_command, proxy_ports_for

        proxy_ports = proxy_ports_for(doc)
        command = proxy_command(doc, layout.fault_proxy_socket, proxy_ports)
        programs.append(
            _program(
                "faultproxy",
                command,
                layout,
                None,
                priority=15,
                extra={"autorestart": "true"},
            )
        )
    for name, service in doc.services.items():
        programs.append(
            _service_program(name, service, doc, layout, secrets, proxy_ports)
        )
    return "\n".join(sections) + "\n" + "\n".join(programs)


def _service_program(
    name: str,
    service: ServiceSpec,
    doc: ProfileDocument,
    layout: Layout,
    secrets: dict[str, str],
    proxy_ports: dict[str, int],
) -> str:
    # With the fault proxy on, the service reaches PostgreSQL and NATS only
    # through it, so a network fault on a link cuts the service off.
    nats_address = f"{doc.nats.host}:{doc.nats.client_port}"
    postgres_address = (doc.postgres.host, doc.postgres.port)
    if "nats" in proxy_ports:
        nats_address = f"127.0.0.1:{proxy_ports['nats']}"
    if "postgresql" in proxy_ports:
        postgres_address = ("127.0.0.1", proxy_ports["postgresql"])
    role = service.role or name
    command = [
        sys.executable,
        str(REFERENCE_SERVICE),
        "--role",
        role,
        "--host",
        service.host,
        "--port",
        str(service.port),
    ]
    if service.nats:
        command += ["--nats-url", f"nats://{nats_address}"]
    command += list(service.args)

    environment: dict[str, str] = {"PYTHONUNBUFFERED": "1"}
    if service.database:
        postgres = doc.postgres
        password = secrets.get(postgres.password_env, "")
        environment["STACKCHECK_REF_DSN"] = (
            f"host={postgres_address[0]} port={postgres_address[1]} "
            f"dbname={service.database} "
            f"user={postgres.owner} password={password} connect_timeout=2"
        )
    if service.token_env:
        environment["STACKCHECK_REF_TOKEN"] = secrets.get(service.token_env, "")

    extra = {
        "autorestart": _autorestart(service),
        "exitcodes": "0",
        "environment": _environment(environment),
    }
    # NOTE: supervisord has no restart delay setting, so restart_delay_s is
    # not mirrored. supervisor 4.3 respawns a dead program on the next turn
    # of its 1 s main loop, so the local delay is up to about 1 s.
    return _program(name, command, layout, None, priority=20, extra=extra)
