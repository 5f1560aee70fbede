"""NATS configurations that lose data or reject requests while /healthz is green.

Each test starts a real local stack whose nats.conf comes from
``fixtures/nats/cases/``, runs the real preprod checks of
``test_nats_config.py`` against it in a subprocess, and checks that the gate
fails naming the setting, its value and the expected one. The shipped
nats.conf passes the same checks. A server that the local stack cannot
start at all runs alone behind an ``existing`` profile.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO, SUITES, local_profile
from reference_harness import (
    START_TIMEOUT_S,
    free_port,
    nats_server_command,
    port_open,
    stop_process,
    wait_until,
)

NATS_CONFIG = str(SUITES / "acceptance" / "test_nats_config.py")
DURABILITY = str(SUITES / "chaos" / "test_durability.py")
CASES = REPO / "fixtures" / "nats" / "cases"


def _profile(tmp_path: Path, case: str, before_policy: str = "") -> Path:
    return local_profile(
        tmp_path,
        {
            "[nats]\n": f"[nats]\nconfig = '{CASES / case}'\n",
            "[policy]\n": f"{before_policy}[policy]\n",
        },
    )


@pytest.fixture
def short_tmpdir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A short TMPDIR for the stack, so nats-server's default store lands in it.

    The directory is short because the stack's unix sockets live under
    TMPDIR too, and their paths must stay under 108 bytes. It is readable by
    all because PostgreSQL runs as an unprivileged user under root.
    """
    directory = Path(tempfile.mkdtemp(prefix="stackcheck-tmp-"))
    directory.chmod(0o755)
    monkeypatch.setenv("TMPDIR", str(directory))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_shipped_nats_config_passes(run_suite, tmp_path):
    result = run_suite(local_profile(tmp_path), NATS_CONFIG, "-m", "preprod")

    result.assert_outcomes(passed=3)


def test_default_sync_fails_without_chaos(run_suite, tmp_path):
    """A production stack forbids chaos, so preprod must read the setting."""
    profile = _profile(tmp_path, "n1-default-sync.conf.j2")
    text = profile.read_text().replace("destructive = true", "destructive = false")
    profile.write_text(text)

    result = run_suite(profile, NATS_CONFIG, DURABILITY, "-k", "synced or syncs")

    result.assert_outcomes(failed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "E * sync_interval = 120 s (sync_always false)*loses up to 120 s*"
            "set 'sync_interval: always'*",
            "preprod *fail*",
        ]
    )


def test_interval_beyond_accepted_window_fails(run_suite, tmp_path):
    profile = _profile(
        tmp_path, "sync-10s.conf.j2", "[chaos]\naccepted_loss_window_s = 5.0\n\n"
    )

    result = run_suite(
        profile, NATS_CONFIG, DURABILITY, "-m", "preprod or chaos", "-k", "sync"
    )

    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "E * sync_interval = 10 s (sync_always false)*loses up to 10 s*"
            "more than the 5 s the profile accepts (chaos.accepted_loss_window_s)*"
        ]
    )


def test_store_dir_omitted_fails(run_suite, tmp_path, short_tmpdir):
    profile = _profile(tmp_path, "store-dir-omitted.conf.j2")

    result = run_suite(profile, NATS_CONFIG, "-k", "file_store")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            f"E * store_dir = {short_tmpdir}/*jetstream, nats-server's default "
            "under the temporary directory*set store_dir to a persistent path*"
        ]
    )


def test_file_store_of_zero_bytes_fails(run_suite, tmp_path):
    profile = _profile(tmp_path, "file-store-zero.conf.j2")

    result = run_suite(profile, NATS_CONFIG, "-k", "file_store")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["E * max_file_store = 0 bytes, expected more than 0*insufficient storage*"]
    )


def test_default_max_payload_fails(run_suite, tmp_path):
    profile = _profile(tmp_path, "default-max-payload.conf.j2")

    result = run_suite(profile, NATS_CONFIG, "-k", "max_payload")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E * llm-server: NATS max_payload = 1048576 bytes, below the 8388608 "
            "bytes of load.proxy.max_body_bytes*set max_payload: 8388608*"
        ]
    )


LEADERLESS_PROFILE = """
[stack]
name = "leaderless"
provisioner = "existing"

[timeouts]
check_s = 2.0

[postgres]
port = {unused}
databases = ["singularity"]

[nats]
client_port = {client}
websocket_port = {unused}
monitor_port = {monitor}

[nginx]
http_port = {unused}

[[nginx.routes]]
prefix = "/"
service = "singularity"

[services.singularity]
port = {unused}
"""


@pytest.fixture
def leaderless_nats(tmp_path: Path) -> Iterator[Path]:
    """Return the profile of a nats-server whose cluster route reaches no peer.

    The local stack waits for /healthz, so it never starts with this server.
    The server runs alone instead, and an ``existing`` profile points at it.
    Only its ports are real, because the selected checks read nothing else.
    """
    client, monitor = free_port(), free_port()
    store = tmp_path / "store"
    store.mkdir()
    command = [
        *nats_server_command(store, client, monitor),
        "--name",
        "stackcheck-alone",
        "--cluster_name",
        "stackcheck-cluster",
        "--cluster",
        "nats://127.0.0.1:-1",
        "--routes",
        "nats://127.0.0.1:1",
    ]
    with (tmp_path / "nats.log").open("ab") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: port_open(monitor), START_TIMEOUT_S, "nats monitoring")
        profile = tmp_path / "leaderless.toml"
        profile.write_text(
            LEADERLESS_PROFILE.format(
                client=client, monitor=monitor, unused=free_port()
            ),
            encoding="utf-8",
        )
        yield profile
    finally:
        stop_process(process)


def test_leaderless_cluster_fails_day1(run_suite, leaderless_nats):
    result = run_suite(
        leaderless_nats,
        str(SUITES / "acceptance"),
        "-k",
        "jetstream_enabled or synced",
    )

    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*/healthz returns 200 (JetStream serving): did not hold*503*"
            "JetStream is still recovering meta layer*",
            "*cluster 'stackcheck-cluster' is configured but JetStream has no meta "
            "leader*sync_interval = 120 s*",
        ],
        consecutive=False,
    )


@pytest.fixture
def memory_store(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs for the JetStream store, unmounted after the test."""
    mount_point = tmp_path / "store"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", mount_point],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", mount_point], check=False)


def test_store_on_tmpfs_fails(run_suite, tmp_path, memory_store):
    template = (REPO / "fixtures" / "nats" / "nats.conf.j2").read_text()
    template = template.replace('"{{ nats_store_dir }}"', f'"{memory_store}"')
    template = template.replace("max_file_store: 1GB", "max_file_store: 8MB")
    config = tmp_path / "nats.conf.j2"
    config.write_text(template, encoding="utf-8")
    profile = local_profile(tmp_path, {"[nats]\n": f"[nats]\nconfig = '{config}'\n"})

    result = run_suite(profile, NATS_CONFIG, "-k", "file_store")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            f"E * store_dir = {memory_store}/jetstream is on a tmpfs filesystem, "
            "which is memory*put store_dir on a disk*"
        ]
    )
