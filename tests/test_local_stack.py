"""The embedded local stack: real servers come up healthy and leave no trace."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from helpers import SUITES, local_profile

from pytest_stackcheck.control.supervisor import SupervisorControl
from pytest_stackcheck.errors import ProvisionError
from pytest_stackcheck.profile import load_profile
from pytest_stackcheck.provision.local import LocalProvisioner


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_stack_up_then_down_leaves_nothing(tmp_path):
    provisioner = LocalProvisioner()
    stack = provisioner.up(load_profile(local_profile(tmp_path)))
    assert stack.workdir is not None
    assert stack.supervisor_socket is not None
    workdir = stack.workdir

    statuses = SupervisorControl(stack.supervisor_socket).statuses()
    pids = [status.pid for status in statuses]
    ports = list(stack.ports.values())
    response = httpx.get(stack.nginx_url + "/health", timeout=5)

    assert {status.state for status in statuses} == {"RUNNING"}
    assert len(pids) == 7
    assert all(_listening(port) for port in ports)
    assert response.json()["service"] == "singularity"

    provisioner.down(stack)

    assert not workdir.exists()
    assert [pid for pid in pids if _alive(pid)] == []
    assert [port for port in ports if _listening(port)] == []


def test_databases_have_schema_and_owner(tmp_path):
    import psycopg

    provisioner = LocalProvisioner()
    stack = provisioner.up(load_profile(local_profile(tmp_path)))
    try:
        for database in stack.profile.doc.postgres.databases:
            with psycopg.connect(**stack.conninfo(database)) as conn:
                owner = conn.execute(
                    "SELECT pg_get_userbyid(datdba) FROM pg_database "
                    "WHERE datname = current_database()"
                ).fetchone()
                extensions = conn.execute("SELECT extname FROM pg_extension").fetchall()
                migrations = conn.execute(
                    "SELECT count(*) FROM schema_migrations"
                ).fetchone()
                documents = conn.execute("SELECT count(*) FROM documents").fetchone()
            assert owner == ("stackcheck_app",)
            assert ("pg_trgm",) in extensions
            assert migrations == (3,)
            assert documents == (200,)
    finally:
        provisioner.down(stack)


def test_failed_start_cleans_up(tmp_path, monkeypatch):
    broken_site = tmp_path / "broken.conf.j2"
    broken_site.write_text("this is not nginx syntax;\n")
    profile = local_profile(
        tmp_path,
        {
            "[nginx]\n": f"[nginx]\nsite = '{broken_site}'\n",
            "ready_s = 60.0": "ready_s = 30.0",
        },
    )
    # A private temporary directory, because other workers start stacks in
    # /tmp meanwhile; a short path keeps the unix sockets under 108 bytes.
    private = Path(tempfile.mkdtemp(prefix="sc-"))
    private.chmod(0o755)
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    started = time.monotonic()

    with pytest.raises(ProvisionError, match="nginx keeps exiting") as failure:
        LocalProvisioner().up(load_profile(profile))

    # The crash is reported as soon as nginx exits, not after ready_s.
    assert time.monotonic() - started < 20
    assert 'unknown directive "this"' in str(failure.value)
    assert list(private.iterdir()) == []
    private.rmdir()


def test_xdist_workers_share_one_stack(tmp_path, run_suite):
    result = run_suite(
        local_profile(tmp_path),
        str(SUITES / "acceptance"),
        "-n",
        "2",
        "-o",
        "log_cli=true",
        "--log-cli-level=INFO",
    )

    result.assert_outcomes(passed=29, skipped=1)
    output = result.stdout.str()
    assert output.count("local stack up in") == 1
    assert output.count("local stack at") == 1
    assert "removed" in output


def test_keep_stack_prints_how_to_stop(tmp_path, run_suite):
    import subprocess

    result = run_suite(
        local_profile(tmp_path),
        str(SUITES / "acceptance" / "test_day1.py"),
        "-k",
        "pubsub",
        "--keep-stack",
    )

    result.assert_outcomes(passed=1)
    lines = [line for line in result.stdout.lines if "stop it:" in line]
    assert len(lines) == 1
    command = lines[0].split("stop it:", 1)[1].strip()
    workdir = Path(command.rsplit(" ", 1)[1])
    assert workdir.is_dir()

    try:
        subprocess.run(command, shell=True, check=True, timeout=60)
    finally:
        if workdir.exists():
            LocalProvisioner().down_directory(workdir)
    assert not workdir.exists()
