"""The restart gate through systemd control, on a systemd stand-in.

With ``Restart=on-failure`` a service that exits 0 or dies by SIGTERM stays
down, and the gate must say so; with ``Restart=always`` it comes back.

systemd cannot run as PID 1 in this container, so ``systemd_standin``
supervises the four app services: the REAL reference services, with the
command lines and environment the local stack's supervisord would use.
PostgreSQL, NATS and nginx stay under that supervisord (their programs
keep running; the app programs are stopped there). The profile describes
the stack as ``existing`` with ``policy.destructive = true``, so chaos
picks systemd control, and the stand-in's ``systemctl`` is first on PATH.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import systemd_standin
from helpers import STACKS, SUITES, existing_profile
from sshd_harness import Sshd, sshd

from pytest_stackcheck.control.supervisor import SupervisorControl
from pytest_stackcheck.profile import load_profile
from pytest_stackcheck.provision.base import LiveStack
from pytest_stackcheck.provision.local import LocalProvisioner

__all__ = ["sshd"]

RESTART_SUITE = str(SUITES / "chaos" / "test_restart.py")
SERVICES = ("singularity", "centralcloud", "genesis", "llm-server")
ENVIRONMENT_PAIR = re.compile(r'(\w+)="([^"]*)"')


@pytest.fixture(scope="module")
def deployed() -> Iterator[LiveStack]:
    """A local stack whose app programs are stopped in its supervisord."""
    provisioner = LocalProvisioner()
    stack = provisioner.up(load_profile(STACKS / "local.toml"))
    try:
        assert stack.supervisor_socket is not None
        control = SupervisorControl(stack.supervisor_socket)
        for name in SERVICES:
            control.stop(name)
        yield stack
    finally:
        provisioner.down(stack)


def _program(stack: LiveStack, name: str) -> tuple[list[str], dict[str, str]]:
    """Return the command and environment supervisord runs ``name`` with."""
    assert stack.workdir is not None
    parser = configparser.RawConfigParser()
    parser.read(stack.workdir / "supervisord.conf", encoding="utf-8")
    section = f"program:{name}"
    argv = shlex.split(parser.get(section, "command").replace("%%", "%"))
    text = parser.get(section, "environment").replace("%%", "%")
    return argv, dict(ENVIRONMENT_PAIR.findall(text))


@pytest.fixture
def systemd_stack(
    deployed: LiveStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Path]]:
    """Start the app services under the stand-in; return the profile's path.

    Called with genesis's ``Restart=`` value (the other units restart
    always) and, for a stack reached over ssh, the running sshd.
    """
    started: list[systemd_standin.Running] = []

    def start(genesis_restart: str, remote: Sshd | None = None) -> Path:
        units = {}
        for name in SERVICES:
            argv, environment = _program(deployed, name)
            restart = genesis_restart if name == "genesis" else "always"
            units[f"{name}.service"] = systemd_standin.unit_text(
                argv, restart, environment
            )
        root = tmp_path / "systemd"
        bin_dir = systemd_standin.install(root, units)
        if remote is None:
            monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
        else:
            remote.install(bin_dir)
        started.append(systemd_standin.start_manager(root))

        for name, value in deployed.secrets.items():
            monkeypatch.setenv(name, value)
        profile = existing_profile(deployed, tmp_path / "deployed.toml")
        text = profile.read_text(encoding="utf-8")
        text = text.replace("[policy]\n", "[chaos]\nrecovery_s = 5.0\n\n[policy]\n")
        if remote is not None:
            host = (
                f'host = "{remote.connection}"\nssh_config = "{remote.client_config}"\n'
            )
            text = text.replace(
                'provisioner = "existing"\n', f'provisioner = "existing"\n{host}'
            )
        profile.write_text(text, encoding="utf-8")
        return profile

    yield start
    for manager in started:
        manager.stop()


def _run(run_suite, profile: Path, tmp_path: Path):
    journal = tmp_path / "chaos-journal.json"
    return run_suite(
        profile,
        RESTART_SUITE,
        "-m",
        "chaos",
        "-k",
        "genesis",
        f"--chaos-journal={journal}",
    )


def test_always_unit_recovers_every_death(run_suite, tmp_path, systemd_stack):
    profile = systemd_stack("always")

    result = _run(run_suite, profile, tmp_path)

    result.assert_outcomes(passed=3)


def test_on_failure_unit_fails_clean_deaths(run_suite, tmp_path, systemd_stack):
    profile = systemd_stack("on-failure")

    result = _run(run_suite, profile, tmp_path)

    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*genesis stayed down after term (ActiveState=inactive*",
            "*genesis stayed down after exit-zero (ActiveState=inactive*",
        ],
        consecutive=False,
    )
    assert result.stdout.str().count("set Restart=always") >= 2


def test_on_failure_unit_fails_over_ssh(run_suite, tmp_path, systemd_stack, sshd):
    """The same gate through systemctl and /proc on a host reached over ssh."""
    profile = systemd_stack("on-failure", sshd)

    result = _run(run_suite, profile, tmp_path)

    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*genesis stayed down after term (ActiveState=inactive*",
            "*genesis stayed down after exit-zero (ActiveState=inactive*",
        ],
        consecutive=False,
    )


def test_server_without_unit_skips(run_suite, tmp_path, systemd_stack):
    """A profile that names no unit for PostgreSQL or NATS gets skips, not fails."""
    profile = systemd_stack("always")

    result = run_suite(
        profile,
        str(SUITES / "chaos" / "test_durability.py"),
        "-k",
        "no_acknowledged",
        "-rs",
        f"--chaos-journal={tmp_path / 'chaos-journal.json'}",
    )

    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(
        [
            "*postgresql is not under chaos control*set postgres.unit*",
            "*nats is not under chaos control*set nats.unit*",
        ],
        consecutive=False,
    )
