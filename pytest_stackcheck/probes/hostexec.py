"""Run a command on the stack's host: this machine, or one reached over ssh.

``stack.host`` is a testinfra connection string. Empty (or ``local://``)
means the machine pytest runs on; ``ssh://user@host:port`` means a host
reached through the system ``ssh`` client, which reads the user's
``~/.ssh/config`` as usual, or the file that ``stack.ssh_config`` names.
The client runs with ``BatchMode=yes``, so a missing key or an unknown
host key fails at once instead of waiting for a password prompt.

Every command is bounded by a timeout that kills its whole process group,
and a failure raises ``ProbeError`` naming the host, the command, the exit
status and the end of its error output.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pytest_stackcheck.errors import ProbeError

if TYPE_CHECKING:
    from pytest_stackcheck.profile import Profile

log = logging.getLogger("pytest_stackcheck")

SSH_CONNECT_TIMEOUT_S = 10
SSH_SCHEMES = ("ssh", "paramiko")
# ssh exits with 255 when it cannot connect or authenticate.
SSH_FAILED = 255
KILL_GRACE_S = 5
COMMAND_TIMEOUT_S = 30.0
STDERR_TAIL_CHARS = 500


@dataclass(frozen=True, slots=True)
class HostTarget:
    """The machine commands run on: this one, or a host reached over ssh.

    ``ssh_config`` is an absolute path to an ssh_config file passed to the
    client with ``-F``, or empty for the user's own configuration.
    """

    host: str = ""
    user: str = ""
    port: int | None = None
    ssh_config: str = ""

    @property
    def is_local(self) -> bool:
        return not self.host

    @property
    def label(self) -> str:
        """Name the target in messages."""
        if self.is_local:
            return "this machine"
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{user}{self.host}{port}"


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The output and exit status of one command."""

    stdout: str
    stderr: str
    returncode: int


def parse_target(connection: str, ssh_config: str = "") -> HostTarget:
    """Turn a testinfra connection string into a HostTarget, or raise ProbeError."""
    if not connection or connection.startswith("local://"):
        return HostTarget()

    parts = urlsplit(connection)
    # A host name starting with "-" would reach the ssh client as an option.
    hostname = parts.hostname or ""
    if parts.scheme not in SSH_SCHEMES or not hostname or hostname[0] == "-":
        # NOTE: docker://, kubectl:// and the other testinfra backends are not
        # supported; only ssh and this machine are.
        raise ProbeError(
            f"stack.host = {connection!r}: the host checks reach a host only over "
            "ssh; write it as 'ssh://user@host' or 'ssh://user@host:port', or "
            "leave it empty to check this machine"
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise ProbeError(
            f"stack.host = {connection!r}: invalid port ({exc}); use 1 to 65535"
        ) from exc
    return HostTarget(
        host=hostname,
        user=parts.username or "",
        port=port,
        ssh_config=ssh_config,
    )


def ssh_command(target: HostTarget, remote: str) -> list[str]:
    """Return the ssh client's argv that runs shell text ``remote`` on ``target``."""
    command = [
        "ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={SSH_CONNECT_TIMEOUT_S}",
    ]
    if target.ssh_config:
        command += ["-F", target.ssh_config]
    if target.port:
        command += ["-p", str(target.port)]
    destination = f"{target.user}@{target.host}" if target.user else target.host
    return [*command, destination, remote]


def run_bounded(
    command: list[str],
    stdin: str | None,
    environment: dict[str, str] | None,
    timeout_s: float,
    what: str,
    hang_hint: str = "",
) -> CommandResult:
    """Run ``command`` in its own process group, killing the group on timeout."""
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
            start_new_session=True,
        )
    except OSError as exc:
        raise ProbeError(
            f"cannot start {command[0]!r} ({exc}); install it on this machine"
        ) from exc

    try:
        stdout, stderr = process.communicate(stdin, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        try:
            _, stderr = process.communicate(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            # A process stuck in the kernel (state D) ignores SIGKILL; it is
            # left behind rather than blocking the run.
            stderr = "(no output: the process did not exit after SIGKILL)"
        log.error("%s timed out after %.0f s and was killed", what, timeout_s)
        shown = (stderr or "").strip()[-STDERR_TAIL_CHARS:] or "(empty)"
        hint = f": {hang_hint}" if hang_hint else ""
        raise ProbeError(
            f"{what} did not finish within {timeout_s:.0f} s and was "
            f"killed{hint}; error output: {shown}"
        ) from exc
    return CommandResult(stdout, stderr, process.returncode)


class HostRunner:
    """Run argv lists on one HostTarget, locally or through ssh."""

    def __init__(self, target: HostTarget, timeout_s: float = COMMAND_TIMEOUT_S):
        self.target = target
        self.timeout_s = timeout_s

    @property
    def label(self) -> str:
        return self.target.label

    def run(
        self,
        argv: list[str],
        *,
        ok_codes: tuple[int, ...] = (0,),
        timeout_s: float | None = None,
    ) -> CommandResult:
        """Run ``argv`` on the target and return its output.

        An exit status outside ``ok_codes`` raises ProbeError, and so does a
        failed ssh connection whatever ``ok_codes`` contains.
        """
        limit = timeout_s if timeout_s is not None else self.timeout_s
        shown = shlex.join(argv)
        what = f"command {shown} on {self.label}"
        command = argv if self.target.is_local else ssh_command(self.target, shown)

        log.debug("running %s", what)
        result = run_bounded(command, None, None, limit, what)

        tail = result.stderr.strip()[-STDERR_TAIL_CHARS:] or "(empty)"
        if not self.target.is_local and result.returncode == SSH_FAILED:
            raise ProbeError(
                f"{what}: ssh failed with status {SSH_FAILED} (cannot connect "
                f"or log in): {tail}; check stack.host, the key the ssh client "
                "uses (stack.ssh_config or ~/.ssh/config) and that sshd runs"
            )
        if result.returncode not in ok_codes:
            raise ProbeError(
                f"{what} exited with status {result.returncode}; its error "
                f"output: {tail}"
            )
        return result


def runner_for(profile: Profile) -> HostRunner:
    """Return the runner for ``stack.host``, with ``stack.ssh_config`` resolved."""
    stack = profile.doc.stack
    ssh_config = str(profile.resolve(stack.ssh_config)) if stack.ssh_config else ""
    return HostRunner(parse_target(stack.host, ssh_config))
