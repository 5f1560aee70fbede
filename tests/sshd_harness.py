"""A real OpenSSH server on loopback, for the checks that reach a host over ssh.

``/usr/sbin/sshd -D`` runs with its own configuration, a generated host
key and a generated user key in a temporary directory, listening on
127.0.0.1 only. Commands run over it as the current user. The sessions get
``PATH`` from ``SetEnv`` with ``bin_dir`` first, so a test puts the
stand-in ``systemctl`` and ``journalctl`` there and the remote side finds
them as it would find systemd's. The client side is an ssh_config file
(``client_config``) of the kind a profile names in ``stack.ssh_config``.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from reference_harness import free_port, port_open, wait_until

SSHD = Path("/usr/sbin/sshd")
START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Sshd:
    """A running sshd and what a client needs to log in to it."""

    port: int
    user: str
    client_config: Path
    bin_dir: Path

    @property
    def connection(self) -> str:
        """The testinfra connection string of this host."""
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    def install(self, commands: Path) -> None:
        """Put every executable of ``commands`` first on the remote PATH."""
        for entry in self.bin_dir.iterdir():
            entry.unlink()
        for entry in commands.iterdir():
            shutil.copy2(entry, self.bin_dir / entry.name)


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        timeout=30,
    )


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """A real sshd on 127.0.0.1 with generated keys; skips where none is installed."""
    if not SSHD.exists() or shutil.which("ssh") is None:
        pytest.skip("openssh-server and openssh-client are not installed")
    root = tmp_path_factory.mktemp("sshd")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    _keygen(root / "host_key")
    _keygen(root / "user_key")
    (root / "authorized_keys").write_text((root / "user_key.pub").read_text())
    # sshd refuses to start without its privilege separation directory.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)

    port = free_port()
    path = f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    (root / "sshd_config").write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {root / 'host_key'}",
                f"PidFile {root / 'sshd.pid'}",
                f"AuthorizedKeysFile {root / 'authorized_keys'}",
                # The key files live under /tmp, which is group-writable.
                "StrictModes no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "UsePAM no",
                f"SetEnv PATH={path}",
                "",
            ]
        )
    )
    client_config = root / "ssh_config"
    client_config.write_text(
        "\n".join(
            [
                "Host 127.0.0.1",
                f"  IdentityFile {root / 'user_key'}",
                "  IdentitiesOnly yes",
                f"  UserKnownHostsFile {root / 'known_hosts'}",
                "  StrictHostKeyChecking accept-new",
                "  LogLevel ERROR",
                "",
            ]
        )
    )

    log = (root / "sshd.log").open("ab")
    process = subprocess.Popen(
        [str(SSHD), "-D", "-e", "-f", str(root / "sshd_config"), "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    try:
        wait_until(lambda: port_open(port), START_TIMEOUT_S, f"sshd on port {port}")
        yield Sshd(port, getpass.getuser(), client_config, bin_dir)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
