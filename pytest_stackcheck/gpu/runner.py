"""Run the GPU probe and the CUDA smoke test on the GPU host, bounded by a timeout.

Both scripts run in a fresh process: on this machine with this interpreter,
or on the stack's host (``stack.host``, in testinfra's ``ssh://user@host:port``
form) through the ``ssh`` client with the script text on standard input. A
host without nvidia-ml-py gets the local copy of ``pynvml`` sent along.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shlex
import sys
from pathlib import Path

from pytest_stackcheck.errors import ProbeError
from pytest_stackcheck.gpu.readings import (
    HostReading,
    SmokeResult,
    parse_probe,
    parse_smoke,
)
from pytest_stackcheck.gpu.settings import GpuSpec
from pytest_stackcheck.probes.hostexec import (
    KILL_GRACE_S,
    HostTarget,
    parse_target,
    run_bounded,
    ssh_command,
)

log = logging.getLogger("pytest_stackcheck")

HERE = Path(__file__).resolve().parent
PROBE_SCRIPT = HERE / "probe_script.py"
SMOKE_SCRIPT = HERE / "cuda_smoke.py"

# Prefix for the /proc, /dev and library paths the probe reads, used by the
# stand-in tests; unset in production.
ENV_SYSROOT = "STACKCHECK_GPU_SYSROOT"
NIXOS_DRIVER_DIR = "/run/opengl-driver/lib"
OUTPUT_TAIL_CHARS = 2000


# The GPU scripts run where every host check runs; the target is shared.
GpuTarget = HostTarget


__all__ = ["GpuTarget", "parse_target", "probe_host", "run_script", "smoke_test"]


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
    finished = run_bounded(
        command,
        stdin,
        environment,
        timeout_s,
        what,
        hang_hint="the GPU or its driver is hanging",
    )

    lines = [line for line in finished.stdout.splitlines() if line.strip()]
    tail = finished.stderr.strip()[-OUTPUT_TAIL_CHARS:]
    if finished.returncode != 0 or not lines:
        raise ProbeError(
            f"{what} exited with status {finished.returncode} and printed no report; "
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
    return ssh_command(target, shlex.join(["sh", "-c", remote]))


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
