"""A throwaway PostgreSQL server that restores are made into.

Restores never touch the deployment's server: each run starts a private
server from a cached bare initdb cluster, listening on a unix socket only, in a
temporary directory that ``stop`` removes. Its roles come only from the
backup's globals dump, so a backup that lacks them fails the restore. When
pytest runs as root the server runs as an unprivileged user, because
PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from pytest_stackcheck.errors import StackcheckError
from pytest_stackcheck.provision import local_postgres

log = logging.getLogger("pytest_stackcheck")

SUPERUSER = local_postgres.SUPERUSER
# The socket directory is private, so the port only names the socket file.
SOCKET_PORT = 5432
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0


class ScratchServerError(StackcheckError):
    """The scratch restore server could not be started or stopped."""


class ScratchServer:
    """A private PostgreSQL server in a temporary directory."""

    def __init__(self, bindir: Path, run_as: str | None) -> None:
        self.bindir = bindir
        self.run_as = run_as
        self.root: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def socket_dir(self) -> Path:
        if self.root is None:
            raise ScratchServerError("the scratch server is not started")
        return self.root / "socket"

    @property
    def log_path(self) -> Path:
        return self.socket_dir.parent / "postgresql.log"

    def start(self) -> None:
        """Copy the cached bare cluster into a new directory and start the server."""
        for program in ("postgres", "psql"):
            if not (self.bindir / program).exists():
                raise ScratchServerError(
                    f"{self.bindir / program} does not exist; set "
                    "backup.scratch_bindir to a directory holding the PostgreSQL "
                    "server binaries, or install postgresql"
                )
        self.root = Path(tempfile.mkdtemp(prefix="stackcheck-scratch-pg-"))
        self.root.chmod(0o755)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        assert self.root is not None
        data = self.root / "data"
        template = bare_cluster(self.bindir, self.run_as)
        shutil.copytree(template, data, symlinks=True)
        _give_tree(data, self.run_as)
        data.chmod(0o700)
        self.socket_dir.mkdir(mode=0o700)
        _give_tree(self.socket_dir, self.run_as)

        command = [
            str(self.bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(SOCKET_PORT),
            "-k",
            str(self.socket_dir),
            "-c",
            "listen_addresses=",
            # The data is thrown away, so durability buys nothing here.
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]
        with self.log_path.open("wb") as output:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                user=self.run_as,
                cwd=self.root,
                start_new_session=True,
            )
        self._wait_ready()
        log.info("scratch PostgreSQL started at %s", self.root)

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT_S
        error = ""
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                break
            try:
                with psycopg.connect(**self.conninfo("postgres")):
                    return
            except psycopg.OperationalError as exc:
                error = str(exc).strip()
            time.sleep(0.05)
        raise ScratchServerError(
            f"scratch PostgreSQL from {self.bindir} did not accept connections "
            f"within {START_TIMEOUT_S} s ({error or 'it exited'}); its log "
            f"ends with:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 15) -> str:
        """Return the last lines of the server's log."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except (OSError, ScratchServerError):
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def conninfo(self, dbname: str) -> dict[str, Any]:
        """Return psycopg connection arguments for ``dbname`` as the superuser."""
        return {
            "host": str(self.socket_dir),
            "port": SOCKET_PORT,
            "user": SUPERUSER,
            "dbname": dbname,
            "connect_timeout": 5,
        }

    def psql(self, dbname: str, *options: str) -> list[str]:
        """Return a psql command line that connects to ``dbname``."""
        return [
            str(self.bindir / "psql"),
            "--no-psqlrc",
            "--quiet",
            "--host",
            str(self.socket_dir),
            "--port",
            str(SOCKET_PORT),
            "--username",
            SUPERUSER,
            "--dbname",
            dbname,
            *options,
        ]

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory."""
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning(
                    "scratch PostgreSQL (pid %d) ignored a fast shutdown for "
                    "%.0f s; killing it",
                    process.pid,
                    STOP_TIMEOUT_S,
                )
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=STOP_TIMEOUT_S)
        self._process = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            log.info("scratch PostgreSQL at %s removed", self.root)
            self.root = None


def bare_cluster(bindir: Path, run_as: str | None) -> Path:
    """Return a cached empty cluster (initdb output only) for ``bindir``'s version.

    It contains no role but the superuser and no database but the defaults, so
    everything else on the scratch server comes from the backup.
    """
    version = local_postgres.server_version(bindir)
    template = local_postgres.cache_dir() / f"scratch-initdb-{version}"
    if (template / "PG_VERSION").exists():
        return template

    initdb = bindir / "initdb"
    if not initdb.exists():
        raise ScratchServerError(
            f"{initdb} does not exist and no cached cluster for PostgreSQL "
            f"{version} is in {template.parent}; set backup.scratch_bindir to a "
            "directory that holds initdb"
        )
    # initdb runs as the unprivileged user, who cannot enter root's cache
    # directory, so it writes to a private temporary directory first.
    staging_root = Path(tempfile.mkdtemp(prefix="stackcheck-scratch-initdb-"))
    try:
        staging_root.chmod(0o755)
        staging = staging_root / "data"
        staging.mkdir()
        _give_tree(staging, run_as)
        result = subprocess.run(
            [
                str(initdb),
                "-D",
                str(staging),
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=reject",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            check=False,
            user=run_as,
            cwd="/",
        )
        if result.returncode != 0:
            raise ScratchServerError(
                f"initdb for the scratch server failed with exit status "
                f"{result.returncode}: {result.stderr.strip()[-500:]}"
            )
        template.parent.mkdir(parents=True, exist_ok=True)
        partial = template.with_name(f"{template.name}.{os.getpid()}.partial")
        shutil.copytree(staging, partial, symlinks=True)
        try:
            partial.rename(template)
        except OSError:
            # Another process filled the cache first; its copy is as good.
            shutil.rmtree(partial, ignore_errors=True)
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)
    log.info("scratch cluster template for PostgreSQL %s at %s", version, template)
    return template


def _give_tree(root: Path, user: str | None) -> None:
    if user:
        local_postgres.chown_tree(root, user)


def scratch_bindir(configured: str) -> Path:
    """Return the binaries directory for the scratch server."""
    if configured:
        return Path(configured)
    return local_postgres.find_bindir()


def unprivileged_user(run_as: str) -> str | None:
    """Return the user the server must run as: ``run_as`` when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(run_as)
    except KeyError as exc:
        raise ScratchServerError(
            f"local.run_as = {run_as!r}: user not found; PostgreSQL refuses to "
            "run as root, so name an existing unprivileged user"
        ) from exc
    return run_as
