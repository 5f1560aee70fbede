"""Stand-ins for an NVIDIA GPU host, for the GPU tests on machines without one.

Nothing here exists on this machine for real, so each part replaces exactly
one thing the probe scripts read, and the scripts themselves run unchanged:

- ``gpu_standins/nvml/pynvml.py`` replaces nvidia-ml-py, returning values from a
  JSON scenario (STACKCHECK_FAKE_NVML) with the real error classes;
- ``gpu_standins/libcuda_standin.c``, built with the C compiler, replaces
  libcuda.so.1 and does the smoke test's work on host memory;
- a directory tree replaces /proc/driver/nvidia/version, /dev/nvidia* and
  the library links (STACKCHECK_GPU_SYSROOT);
- ``gpu_standins/bin/dmesg`` prints a kernel log file instead of the kernel's.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

STANDINS = Path(__file__).resolve().parent / "gpu_standins"
DRIVER = "550.54.14"
RTX_4080 = "NVIDIA GeForce RTX 4080"
MIB = 1 << 20

HEALTHY_DEVICE: dict[str, Any] = {
    "Name": RTX_4080,
    "UUID": "GPU-00000000-1111-2222-3333-444444444444",
    "PciInfo": {"busId": "00000000:01:00.0"},
    "MemoryInfo": {"total": 16376 * MIB, "used": 512 * MIB},
    "Temperature": 41,
    "TemperatureThreshold": 90,
    "PowerUsage": 21500,
    "EnforcedPowerLimit": 320000,
    "EccMode": {"error": 3},
    "RetiredPages": {"error": 3},
    "RetiredPagesPendingStatus": {"error": 3},
    "RemappedRows": {"error": 3},
    "PersistenceMode": 1,
    "CurrentClocksEventReasons": 0x1,
    "CurrPcieLinkGeneration": 1,
    "MaxPcieLinkGeneration": 4,
    "CurrPcieLinkWidth": 16,
    "MaxPcieLinkWidth": 16,
}

HEALTHY: dict[str, Any] = {
    "init_error": None,
    "driver_version": DRIVER,
    "cuda_driver_version": 12040,
    "devices": [HEALTHY_DEVICE],
}

# The [gpu] table of the stand-in host's profile, as TOML literals.
GPU_SETTINGS: dict[str, str] = {
    "required": "true",
    "model": f'"{RTX_4080}"',
    "min_memory_mib": "16000",
    "min_driver": '"550.54"',
    "min_cuda": '"12.4"',
    "max_temperature_c": "85.0",
    "smoke_alloc_mib": "8",
    "smoke_timeout_s": "30.0",
    "probe_timeout_s": "30.0",
}

EXISTING = """
[stack]
name = "gpu-host"
provisioner = "existing"

[postgres]
databases = ["app"]

[nats]

[nginx]
routes = [{ prefix = "/", service = "web" }]

[services.web]
port = 4000
"""


def build_libcuda(directory: Path) -> Path:
    """Compile the libcuda stand-in into ``directory``, or skip without a compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the libcuda stand-in; install gcc")
    target = directory / "libcuda.so.1"
    subprocess.run(
        [
            compiler,
            "-std=c11",
            "-O1",
            "-shared",
            "-fPIC",
            "-o",
            str(target),
            str(STANDINS / "libcuda_standin.c"),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return target


class GpuHost:
    """A stand-in GPU host in a directory, switched on through the environment."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.sysroot = root / "sysroot"
        self.scenario = copy.deepcopy(HEALTHY)
        self.kernel_log = root / "kernel.log"
        self.monkeypatch = monkeypatch

        self.set_module_version(DRIVER)
        self.set_library_version(DRIVER)
        for node in ("nvidia0", "nvidiactl", "nvidia-uvm"):
            self.add_device_node(node)
        self.kernel_log.write_text(
            "[Fri Dec  4 10:00:00 2026] nvidia: loading out-of-tree module\n",
            encoding="utf-8",
        )

        monkeypatch.setenv("STACKCHECK_GPU_SYSROOT", str(self.sysroot))
        monkeypatch.setenv("STACKCHECK_FAKE_NVML", str(root / "nvml.json"))
        monkeypatch.setenv("STACKCHECK_FAKE_KERNEL_LOG", str(self.kernel_log))
        python_path = os.environ.get("PYTHONPATH", "")
        monkeypatch.setenv(
            "PYTHONPATH",
            os.pathsep.join(p for p in (str(STANDINS / "nvml"), python_path) if p),
        )
        monkeypatch.setenv(
            "PATH", os.pathsep.join([str(STANDINS / "bin"), os.environ["PATH"]])
        )
        self.save()

    @property
    def device(self) -> dict[str, Any]:
        """The first device of the NVML scenario, to edit before ``save``."""
        device: dict[str, Any] = self.scenario["devices"][0]
        return device

    def save(self) -> None:
        """Write the NVML scenario the stand-in pynvml reads."""
        (self.root / "nvml.json").write_text(
            json.dumps(self.scenario), encoding="utf-8"
        )

    def set_module_version(self, version: str) -> None:
        """Write /proc/driver/nvidia/version naming kernel module ``version``."""
        path = self.sysroot / "proc" / "driver" / "nvidia" / "version"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {version}  "
            "Thu Feb 22 01:44:30 UTC 2024\n"
            "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n",
            encoding="utf-8",
        )

    def set_library_version(self, version: str) -> None:
        """Link libnvidia-ml.so.1 to the library file of ``version``."""
        directory = self.sysroot / "usr" / "lib" / "x86_64-linux-gnu"
        directory.mkdir(parents=True, exist_ok=True)
        link = directory / "libnvidia-ml.so.1"
        link.unlink(missing_ok=True)
        (directory / f"libnvidia-ml.so.{version}").touch()
        link.symlink_to(f"libnvidia-ml.so.{version}")

    def add_device_node(self, name: str) -> None:
        """Create /dev/NAME as a plain file (only its existence is read)."""
        node = self.sysroot / "dev" / name
        node.parent.mkdir(parents=True, exist_ok=True)
        node.touch()

    def remove(self, relative: str) -> None:
        """Remove a file of the stand-in tree, such as ``dev/nvidia-uvm``."""
        (self.sysroot / relative).unlink()

    def no_gpu(self) -> None:
        """Turn the host into one without any NVIDIA driver or device."""
        shutil.rmtree(self.sysroot)
        self.sysroot.mkdir()
        self.monkeypatch.delenv("STACKCHECK_FAKE_NVML")

    def profile(self, libcuda: Path, **overrides: str) -> Path:
        """Write an ``existing`` profile for this host; overrides are TOML literals."""
        settings = {**GPU_SETTINGS, "libcuda": f'"{libcuda}"', **overrides}
        table = "\n".join(f"{key} = {value}" for key, value in settings.items())
        path = self.root / "gpu-host.toml"
        path.write_text(f"{EXISTING}\n[gpu]\n{table}\n", encoding="utf-8")
        return path
