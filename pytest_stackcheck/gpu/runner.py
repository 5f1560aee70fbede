"""Run the GPU probe and the CUDA smoke test on the GPU host, bounded by a timeout.

Both scripts run in a fresh process: on this machine with this interpreter,
or on the stack's host (``stack.host``, in testinfra's ``ssh://user@host:port``
form) through the ``ssh`` client with the script text on standard input. A
host without nvidia-ml-py gets the local copy of ``pynvml`` sent along.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pytest_stackcheck.errors import ProbeError
from pytest_stackcheck.gpu.readings import (
    HostReading,
    SmokeResult,
    parse_probe,
    parse_smoke,
)
from pytest_stackcheck.gpu.settings import GpuSpec

log = logging.getLogger("pytest_stackcheck")

HERE = Path(__file__).resolve().parent
PROBE_SCRIPT = HERE / "probe_script.py"
SMOKE_SCRIPT = HERE / "cuda_smoke.py"

# Prefix for the /proc, /dev and library paths the probe reads, used by the
# stand-in tests; unset in production.
ENV_SYSROOT = "STACKCHECK_GPU_SYSROOT"
NIXOS_DRIVER_DIR = "/run/opengl-driver/lib"
SSH_CONNECT_TIMEOUT_S = 10
KILL_GRACE_S = 5
OUTPUT_TAIL_CHARS = 2000
SSH_SCHEMES = ("ssh", "paramiko")


@dataclass(frozen=True, slots=True)
class GpuTarget:
    """The machine the GPU scripts run on: this one, or a host reached over ssh."""

    host: str = ""
    user: str = ""
    port: int | None = None

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


def parse_target(connection: str) -> GpuTarget:
    """Turn a testinfra connection string into a GpuTarget, or raise ProbeError."""
    if not connection or connection.startswith("local://"):
        return GpuTarget()

    parts = urlsplit(connection)
    if parts.scheme not in SSH_SCHEMES or not parts.hostname:
        # NOTE: docker://, kubectl:// and the other testinfra backends are not
        # supported for GPU checks; only ssh and this machine are.
        raise ProbeError(
            f"stack.host = {connection!r}: the GPU checks reach a host only over "
            "ssh; write it as 'ssh://user@host' or 'ssh://user@host:port', or "
            "leave it empty to check this machine"
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise ProbeError(
            f"stack.host = {connection!r}: invalid port ({exc}); use 1 to 65535"
        ) from exc
    return GpuTarget(host=parts.hostname, user=parts.username or "", port=port)


def probe_host(target: GpuTarget, spec: GpuSpec) -> HostReading:
    """Run the NVML probe on ``target`` in a fresh process and parse its report."""
    arguments: list[str] = []
    sysroot = os.environ.get(ENV_SYSROOT, "")
    if sysroot and target.is_local:
        arguments += ["--sysroot", sysroot]
    data = run_script(
        target,
        PROBE_SCRIPT,
        arguments,
        spec.probe_timeout_s,
        python=spec.python,
        bundle_pynvml=True,
    )
    return parse_probe(data, target.label)


def smoke_test(target: GpuTarget, spec: GpuSpec, device_index: int) -> SmokeResult:
    """Run the CUDA smoke test on one device of ``target`` and parse its result."""
    arguments = ["--device", str(device_index)]
    arguments += ["--alloc-mib", str(spec.smoke_alloc_mib)]
    if spec.libcuda:
        arguments += ["--libcuda", spec.libcuda]
    data = run_script(
        target, SMOKE_SCRIPT, arguments, spec.smoke_timeout_s, python=spec.python
    )
    return parse_smoke(data, target.label)


def run_script(
    target: GpuTarget,
    script: Path,
    arguments: list[str],
    timeout_s: float,
    *,
    python: str,
    bundle_pynvml: bool = False,
) -> object:
    """Run ``script`` on ``target`` and return the JSON it printed last."""
    if target.is_local:
        command = [sys.executable, str(script), *arguments]
        stdin = None
        environment = _with_driver_path(dict(os.environ))
    else:
        program = _remote_program(script, bundle_pynvml)
        command = _ssh_command(target, python, arguments, timeout_s)
        stdin = program
        environment = None

    what = f"{script.name} on {target.label}"
    log.info("running %s (timeout %.0f s)", what, timeout_s)
    stdout, stderr, returncode = _run_bounded(
        command, stdin, environment, timeout_s, what
    )

    lines = [line for line in stdout.splitlines() if line.strip()]
    tail = stderr.strip()[-OUTPUT_TAIL_CHARS:]
    if returncode != 0 or not lines:
        raise ProbeError(
            f"{what} exited with status {returncode} and printed no report; "
            f"its error output: {tail or '(empty)'}"
        )
    try:
        result: object = json.loads(lines[-1])
    except ValueError as exc:
        raise ProbeError(
            f"{what} printed a last line that is not JSON ({exc}): "
            f"{lines[-1][:200]!r}; its error output: {tail or '(empty)'}"
        ) from exc
    return result


def _run_bounded(
    command: list[str],
    stdin: str | None,
    environment: dict[str, str] | None,
    timeout_s: float,
    what: str,
) -> tuple[str, str, int]:
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
            # A process stuck in the driver (state D) ignores SIGKILL; it is
            # left behind rather than blocking the run.
            stderr = "(no output: the process did not exit after SIGKILL)"
        log.error("%s timed out after %.0f s and was killed", what, timeout_s)
        shown = (stderr or "").strip()[-500:] or "(empty)"
        raise ProbeError(
            f"{what} did not finish within {timeout_s:.0f} s and was killed: the "
            f"GPU or its driver is hanging; error output: {shown}"
        ) from exc
    return stdout, stderr, process.returncode


def _with_driver_path(environment: dict[str, str]) -> dict[str, str]:
    # NixOS keeps libcuda and libnvidia-ml outside the loader's search path,
    # and the loader reads LD_LIBRARY_PATH only when a process starts.
    if Path(NIXOS_DRIVER_DIR).is_dir():
        current = environment.get("LD_LIBRARY_PATH", "")
        environment["LD_LIBRARY_PATH"] = ":".join(
            part for part in (NIXOS_DRIVER_DIR, current) if part
        )
    return environment


def _ssh_command(
    target: GpuTarget, python: str, arguments: list[str], timeout_s: float
) -> list[str]:
    remote = (
        f"if [ -d {NIXOS_DRIVER_DIR} ]; then "
        f"LD_LIBRARY_PATH={NIXOS_DRIVER_DIR}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}; "
        "export LD_LIBRARY_PATH; fi; "
        # timeout(1) bounds the remote process too, since killing the local
        # ssh client does not always stop it.
        f"exec timeout -k {KILL_GRACE_S} {int(timeout_s)} "
        + shlex.join([python, "-", *arguments])
    )
    command = [
        "ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={SSH_CONNECT_TIMEOUT_S}",
    ]
    if target.port:
        command += ["-p", str(target.port)]
    destination = f"{target.user}@{target.host}" if target.user else target.host
    return [*command, destination, shlex.join(["sh", "-c", remote])]


def _remote_program(script: Path, bundle_pynvml: bool) -> str:
    """Return the program text sent to ``python3 -`` on the remote host."""
    script_text = script.read_text(encoding="utf-8")
    pynvml_text = ""
    if bundle_pynvml:
        spec = importlib.util.find_spec("pynvml")
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            pynvml_text = Path(spec.origin).read_text(encoding="utf-8")

    return "\n".join(
        [
            "import sys, types",
            f"PYNVML_SOURCE = {pynvml_text!r}",
            f"SCRIPT_SOURCE = {script_text!r}",
            "try:",
            "    import pynvml",
            "except ImportError:",
            "    if PYNVML_SOURCE:",
            "        module = types.ModuleType('pynvml')",
            "        sys.modules['pynvml'] = module",
            "        code = compile(PYNVML_SOURCE, 'pynvml.py', 'exec')",
            "        exec(code, module.__dict__)",
            f"exec(compile(SCRIPT_SOURCE, {script.name!r}, 'exec'), "
            "{'__name__': '__main__'})",
            "",
        ]
    )
