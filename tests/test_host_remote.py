"""Host checks of a deployed stack on another host, reached over a real sshd.

sshd is real (``sshd_harness``, on 127.0.0.1 only); systemd as PID 1
cannot run in this container, so the units are supervised by
``systemd_standin``, which runs real processes and answers the
``systemctl`` and ``journalctl`` commands that sshd's sessions find first
on their PATH.
"""

from __future__ import annotations

import re
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import systemd_standin
from helpers import STACKS, SUITES
from sshd_harness import Sshd, sshd

from pytest_stackcheck.errors import ProbeError
from pytest_stackcheck.probes.hostexec import HostRunner, parse_target
from pytest_stackcheck.profile import load_profile

__all__ = ["sshd"]

SERVICES = ("singularity", "centralcloud", "genesis", "llm-server")

# A unit's program: prints its lines, then idles for 10 minutes at most.
PROGRAM = """\
import sys, time
for line in sys.argv[1:]:
    print(line, flush=True)
for _ in range(600):
    time.sleep(1)
"""


def _runner(sshd: Sshd) -> HostRunner:
    return HostRunner(parse_target(sshd.connection, str(sshd.client_config)))


def test_runner_keeps_arguments_whole(sshd):
    result = _runner(sshd).run(["printf", "%s|", "a b", "$HOME", "it's", ";ls"])

    assert result.stdout == "a b|$HOME|it's|;ls|"


def test_runner_error_names_host_and_status(sshd):
    argv = ["sh", "-c", "echo unit not found >&2; exit 4"]

    with pytest.raises(ProbeError) as caught:
        _runner(sshd).run(argv)

    message = str(caught.value)
    assert "command sh -c 'echo unit not found >&2; exit 4' on " in message
    assert f"on {sshd.user}@127.0.0.1:{sshd.port}" in message
    assert "exited with status 4" in message
    assert "error output: unit not found" in message


def test_runner_names_failed_login(sshd, tmp_path):
    config = tmp_path / "ssh_config"
    text = sshd.client_config.read_text().replace("user_key", "missing_key")
    config.write_text(text)
    runner = HostRunner(parse_target(sshd.connection, str(config)))

    with pytest.raises(ProbeError, match=r"ssh failed with status 255.*ssh_config"):
        runner.run(["true"])


def test_profile_rejects_missing_ssh_config(tmp_path):
    profile = _profile(tmp_path, "ssh://deploy@gpu-1", "absent_config")

    with pytest.raises(pytest.UsageError, match=r"stack\.ssh_config.*does not exist"):
        load_profile(profile)


def test_profile_rejects_docker_host(tmp_path):
    profile = _profile(tmp_path, "docker://gpu-1", "")

    with pytest.raises(pytest.UsageError, match=r"stack\.host.*only over ssh"):
        load_profile(profile)


def _profile(tmp_path: Path, host: str, ssh_config: str) -> Path:
    """Write prod.example.toml with ``stack.host`` and ``stack.ssh_config`` set."""
    text = (STACKS / "prod.example.toml").read_text(encoding="utf-8")
    setting = f'host = "{host}"\n'
    if ssh_config:
        setting += f'ssh_config = "{ssh_config}"\n'
    text = text.replace('host = ""\n', setting, 1)
    text = re.sub(r"check_s = [0-9.]+", "check_s = 2.0", text)
    path = tmp_path / "remote.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def units(tmp_path: Path, sshd: Sshd) -> Iterator[Callable[..., None]]:
    """Yield ``start(restart, lines)``, which runs the four units under a manager.

    Every unit has ``Restart=restart`` and logs a healthy start line, then
    each of ``lines``.
    """
    root = tmp_path / "systemd"
    program = tmp_path / "unit.py"
    program.write_text(PROGRAM, encoding="utf-8")
    started: list[systemd_standin.Running] = []

    def start(restart: str = "always", lines: tuple[str, ...] = ()) -> None:
        argv = [sys.executable, str(program), "listening on 127.0.0.1", *lines]
        texts = {
            f"{name}.service": systemd_standin.unit_text(argv, restart, {})
            for name in SERVICES
        }
        sshd.install(systemd_standin.install(root, texts))
        started.append(systemd_standin.start_manager(root))

    yield start
    for manager in started:
        manager.stop()


def _remote_profile(tmp_path: Path, sshd: Sshd) -> Path:
    return _profile(tmp_path, sshd.connection, str(sshd.client_config))


def test_on_failure_unit_fails_preprod_over_ssh(run_suite, tmp_path, sshd, units):
    units("on-failure")

    result = run_suite(
        _remote_profile(tmp_path, sshd), str(SUITES / "acceptance"), "-k", "restart"
    )

    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines(
        ["*service singularity: restart policy 'on-failure'*restart = 'always'*"]
    )


def test_always_unit_passes_preprod_over_ssh(run_suite, tmp_path, sshd, units):
    units("always")

    result = run_suite(
        _remote_profile(tmp_path, sshd), str(SUITES / "acceptance"), "-k", "restart"
    )

    result.assert_outcomes(passed=4)


def test_error_in_journal_fails_day1_over_ssh(run_suite, tmp_path, sshd, units):
    units("always", ("** (DBConnection.ConnectionError) ERROR 28P01 password",))

    result = run_suite(
        _remote_profile(tmp_path, sshd), str(SUITES / "acceptance"), "-k", "logs_free"
    )

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*error lines in the logs since the stack started:",
            "*singularity: ** (DBConnection.ConnectionError) ERROR 28P01*",
        ]
    )


def test_clean_journal_passes_day1_over_ssh(run_suite, tmp_path, sshd, units):
    units("always", ("connected to NATS",))

    result = run_suite(
        _remote_profile(tmp_path, sshd), str(SUITES / "acceptance"), "-k", "logs_free"
    )

    result.assert_outcomes(passed=1)


def test_stopped_unit_fails_day1_over_ssh(run_suite, tmp_path, sshd, units):
    units("always")
    _runner(sshd).run(["systemctl", "stop", "genesis.service"])

    result = run_suite(
        _remote_profile(tmp_path, sshd),
        str(SUITES / "acceptance"),
        "-k",
        "services_started",
    )

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*every service is running*'genesis': 'INACTIVE'*"])


def test_running_units_pass_day1_over_ssh(run_suite, tmp_path, sshd, units):
    units("always")

    result = run_suite(
        _remote_profile(tmp_path, sshd),
        str(SUITES / "acceptance"),
        "-k",
        "services_started",
    )

    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("address", "outcome"), [("127.0.0.1", "passed"), ("0.0.0.0", "failed")]
)
def test_exposure_read_over_ssh(run_suite, tmp_path, sshd, address, outcome):
    """genesis's port is a socket this test binds; nothing is sent to it."""
    with socket.socket() as listener:
        listener.bind((address, 0))
        listener.listen()
        port = listener.getsockname()[1]
        profile = _remote_profile(tmp_path, sshd)
        text = profile.read_text(encoding="utf-8").replace(
            "port = 4002", f"port = {port}"
        )
        profile.write_text(text, encoding="utf-8")

        result = run_suite(profile, str(SUITES / "security" / "test_exposure.py"))

    result.assert_outcomes(**{outcome: 1})
    if outcome == "failed":
        result.stdout.fnmatch_lines(
            [f"*genesis listens on 0.0.0.0 port {port}; bind the service*"]
        )
