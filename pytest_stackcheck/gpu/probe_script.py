"""Read the GPU state of this machine and print it as one JSON object.

This file runs as a standalone script in a fresh Python process, on the
machine that has the GPU: locally through ``runner``, or on the stack's host
with its text sent to ``python3 -`` over ssh. So it imports only the standard
library and ``pynvml`` (package nvidia-ml-py), never pytest_stackcheck.

It judges nothing: every reading is reported, and a reading the device does
not support (NVML_ERROR_NOT_SUPPORTED, or a function missing from an older
driver) is listed under ``unsupported`` instead of failing the probe.

Usage: ``python3 probe_script.py [--sysroot DIR]``. ``--sysroot`` prefixes
every /proc, /dev and library path read, so a stand-in tree can be used.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from typing import Any

PROBE_FORMAT = 1
KERNEL_MODULE_FILE = "proc/driver/nvidia/version"
UVM_DEVICE = "dev/nvidia-uvm"
LIBRARY_DIRS = (
    "usr/lib/x86_64-linux-gnu",
    "usr/lib/aarch64-linux-gnu",
    "usr/lib64",
    "usr/lib",
    "run/opengl-driver/lib",
)
# The version in /proc/driver/nvidia/version reads like
# "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 ...".
MODULE_VERSION = re.compile(r"Kernel Module(?: for [\w-]+)?\s+(\d+(?:\.\d+)+)")
KERNEL_LOG_PATTERN = re.compile(r"NVRM: Xid|fallen off the bus", re.IGNORECASE)
KERNEL_LOG_MAX_LINES = 50
COMMAND_TIMEOUT_S = 20

# NVML return codes (nvml.h) that mean "this reading does not exist here".
NVML_NOT_SUPPORTED = 3
NVML_FUNCTION_NOT_FOUND = 13


def read_kernel_module(sysroot: str) -> dict[str, Any]:
    """Return the NVIDIA kernel module version from /proc, if the module is loaded."""
    path = os.path.join(sysroot, KERNEL_MODULE_FILE)
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError as exc:
        return {"present": False, "version": "", "text": "", "error": str(exc)}

    first = text.splitlines()[0] if text else ""
    match = MODULE_VERSION.search(text)
    version = match.group(1) if match else ""
    return {"present": True, "version": version, "text": first.strip(), "error": ""}


def find_library_version(sysroot: str) -> dict[str, str]:
    """Return the user-space NVML library file and the version in its name.

    libnvidia-ml.so.1 is a link to libnvidia-ml.so.VERSION. The copy this
    process mapped wins; otherwise the usual library directories are searched.
    """
    candidates: list[str] = []
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            candidates += [
                line.split()[-1] for line in maps if "libnvidia-ml.so" in line
            ]
    except OSError:
        pass
    for directory in LIBRARY_DIRS:
        pattern = os.path.join(sysroot, directory, "libnvidia-ml.so.1")
        candidates += glob.glob(pattern)

    for candidate in candidates:
        real = os.path.realpath(candidate)
        match = re.search(r"libnvidia-ml\.so\.(\d+(?:\.\d+)+)$", real)
        if match:
            return {"path": real, "version": match.group(1)}
    return {"path": "", "version": ""}


def read_kernel_log() -> dict[str, Any]:
    """Return GPU fault lines from dmesg, or from journalctl -k if dmesg is denied."""
    attempts: list[str] = []
    commands = (
        ["dmesg", "--ctime"],
        ["journalctl", "-k", "-b", "--no-pager", "--output=short-iso"],
    )
    for command in commands:
        if shutil.which(command[0]) is None:
            attempts.append(f"{command[0]}: not installed")
            continue
        try:
            result = subprocess.run(
                command,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=COMMAND_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            attempts.append(f"{command[0]}: timed out after {COMMAND_TIMEOUT_S} s")
            continue
        lines = result.stdout.splitlines()
        # journalctl exits 0 with "-- No entries --" when it may not read the
        # kernel journal, so an empty log counts as unreadable too.
        if result.returncode != 0 or not [x for x in lines if x.strip()]:
            reason = result.stderr.strip() or "no lines returned"
            attempts.append(f"{' '.join(command)}: {reason.splitlines()[0]}")
            continue
        if len(lines) == 1 and lines[0].startswith("-- No entries --"):
            attempts.append(f"{' '.join(command)}: no entries")
            continue
        matches = [line for line in lines if KERNEL_LOG_PATTERN.search(line)]
        return {
            "readable": True,
            "source": " ".join(command),
            "scanned": len(lines),
            "matches": matches[-KERNEL_LOG_MAX_LINES:],
            "match_count": len(matches),
            "error": "",
        }
    return {
        "readable": False,
        "source": "",
        "scanned": 0,
        "matches": [],
        "match_count": 0,
        "error": "; ".join(attempts),
    }


def nvml_error(exc: Exception) -> dict[str, Any]:
    """Describe an NVMLError as its code, class name and message."""
    return {
        "code": getattr(exc, "value", None),
        "name": type(exc).__name__,
        "message": str(exc),
    }


class DeviceReader:
    """Take one device's readings, sorting unsupported ones from real errors."""

    def __init__(self, nvml: Any, handle: Any) -> None:
        self.nvml = nvml
        self.handle = handle
        self.values: dict[str, Any] = {}
        self.unsupported: list[str] = []
        self.errors: dict[str, dict[str, Any]] = {}

    def read(self, name: str, function: str, *args: Any) -> Any:
        """Call NVML function ``function`` and store its result under ``name``."""
        try:
            value = getattr(self.nvml, function)(self.handle, *args)
        except self.nvml.NVMLError as exc:
            if getattr(exc, "value", None) in (
                NVML_NOT_SUPPORTED,
                NVML_FUNCTION_NOT_FOUND,
            ):
                self.unsupported.append(name)
            else:
                self.errors[name] = nvml_error(exc)
            value = None
        except AttributeError:
            # An older nvidia-ml-py without this binding.
            self.unsupported.append(name)
            value = None
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        self.values[name] = value
        return value


def read_device(nvml: Any, index: int) -> dict[str, Any]:
    """Return every reading of device ``index``; unsupported ones are None."""
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
    except nvml.NVMLError as exc:
        # A device that fell off the bus still counts but has no handle.
        errors = {"handle": nvml_error(exc)}
        return {"index": index, "unsupported": [], "errors": errors}
    reader = DeviceReader(nvml, handle)

    reader.read("name", "nvmlDeviceGetName")
    reader.read("uuid", "nvmlDeviceGetUUID")
    pci = reader.read("pci", "nvmlDeviceGetPciInfo")
    reader.values["pci"] = _decode(getattr(pci, "busId", "")) if pci else None
    memory = reader.read("memory", "nvmlDeviceGetMemoryInfo")
    reader.values["memory"] = None
    reader.values["memory_total_bytes"] = int(memory.total) if memory else None
    reader.values["memory_used_bytes"] = int(memory.used) if memory else None

    reader.read("temperature_c", "nvmlDeviceGetTemperature", 0)
    if "temperature_c" in reader.unsupported:
        # nvidia-ml-py marks nvmlDeviceGetTemperature for removal in favour
        # of nvmlDeviceGetTemperatureV, so a missing binding tries the new one.
        reader.unsupported.remove("temperature_c")
        reader.read("temperature_c", "nvmlDeviceGetTemperatureV", 0)
    reader.read("slowdown_temperature_c", "nvmlDeviceGetTemperatureThreshold", 1)
    power = reader.read("power_mw", "nvmlDeviceGetPowerUsage")
    limit = reader.read("power_limit_mw", "nvmlDeviceGetEnforcedPowerLimit")
    reader.values["power_w"] = power / 1000 if power is not None else None
    reader.values["power_limit_w"] = limit / 1000 if limit is not None else None

    ecc = reader.read("ecc_mode", "nvmlDeviceGetEccMode")
    reader.values["ecc_mode"] = None
    reader.values["ecc_enabled"] = bool(ecc[0]) if ecc else None
    reader.values["ecc_pending"] = bool(ecc[1]) if ecc else None
    if ecc and ecc[0]:
        # Error type 1 is uncorrected, 0 corrected; counter 0 volatile (since
        # the driver loaded), 1 aggregate (lifetime).
        reader.read("ecc_uncorrected_volatile", "nvmlDeviceGetTotalEccErrors", 1, 0)
        reader.read("ecc_corrected_volatile", "nvmlDeviceGetTotalEccErrors", 0, 0)
        reader.read("ecc_uncorrected_aggregate", "nvmlDeviceGetTotalEccErrors", 1, 1)

    single = reader.read("retired_pages_sbe", "nvmlDeviceGetRetiredPages", 0)
    double = reader.read("retired_pages_dbe", "nvmlDeviceGetRetiredPages", 1)
    reader.values["retired_pages_sbe"] = len(single) if single is not None else None
    reader.values["retired_pages_dbe"] = len(double) if double is not None else None
    pending = reader.read(
        "retired_pages_pending", "nvmlDeviceGetRetiredPagesPendingStatus"
    )
    reader.values["retired_pages_pending"] = (
        bool(pending) if pending is not None else None
    )
    rows = reader.read("remapped_rows", "nvmlDeviceGetRemappedRows")
    reader.values["remapped_rows"] = None
    if rows is not None:
        correctable, uncorrectable, is_pending, failed = rows
        reader.values["remapped_rows_correctable"] = int(correctable)
        reader.values["remapped_rows_uncorrectable"] = int(uncorrectable)
        reader.values["remapping_pending"] = bool(is_pending)
        reader.values["remapping_failed"] = bool(failed)

    persistence = reader.read("persistence_mode", "nvmlDeviceGetPersistenceMode")
    reader.values["persistence_mode"] = (
        bool(persistence) if persistence is not None else None
    )
    reader.read("throttle_reasons", "nvmlDeviceGetCurrentClocksEventReasons")
    if "throttle_reasons" in reader.unsupported:
        reader.unsupported.remove("throttle_reasons")
        reader.read("throttle_reasons", "nvmlDeviceGetCurrentClocksThrottleReasons")
    reader.read("pcie_generation", "nvmlDeviceGetCurrPcieLinkGeneration")
    reader.read("pcie_generation_max", "nvmlDeviceGetMaxPcieLinkGeneration")
    reader.read("pcie_width", "nvmlDeviceGetCurrPcieLinkWidth")
    reader.read("pcie_width_max", "nvmlDeviceGetMaxPcieLinkWidth")

    readings = {k: v for k, v in reader.values.items() if k not in DERIVED}
    readings["index"] = index
    readings["unsupported"] = sorted(
        {derived for raw in reader.unsupported for derived in DERIVED.get(raw, [raw])}
    )
    readings["errors"] = {
        derived: failure
        for raw, failure in reader.errors.items()
        for derived in DERIVED.get(raw, [raw])
    }
    return readings


# Raw NVML results that are reported under the names derived from them.
DERIVED = {
    "memory": ["memory_total_bytes", "memory_used_bytes"],
    "ecc_mode": ["ecc_enabled", "ecc_pending"],
    "remapped_rows": [
        "remapped_rows_correctable",
        "remapped_rows_uncorrectable",
        "remapping_pending",
        "remapping_failed",
    ],
    "power_mw": ["power_w"],
    "power_limit_mw": ["power_limit_w"],
}


def _decode(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def read_nvml() -> dict[str, Any]:
    """Initialise NVML in this fresh process and read the driver and every device."""
    result: dict[str, Any] = {
        "imported": False,
        "initialised": False,
        "error": None,
        "driver_version": "",
        "cuda_driver_version": None,
        "devices": [],
    }
    try:
        import pynvml
    except ImportError as exc:
        result["error"] = {
            "code": None,
            "name": "ImportError",
            "message": f"pynvml is not importable ({exc}); install nvidia-ml-py",
        }
        return result
    result["imported"] = True

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        result["error"] = nvml_error(exc)
        return result
    result["initialised"] = True

    try:
        result["driver_version"] = _decode(pynvml.nvmlSystemGetDriverVersion())
        result["cuda_driver_version"] = int(pynvml.nvmlSystemGetCudaDriverVersion())
        count = int(pynvml.nvmlDeviceGetCount())
        result["devices"] = [read_device(pynvml, index) for index in range(count)]
    except pynvml.NVMLError as exc:
        result["error"] = nvml_error(exc)
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()
    return result


def main(argv: list[str]) -> int:
    # The text may run through exec() with no module docstring, so the
    # description is spelled out here.
    parser = argparse.ArgumentParser(description="Print GPU readings as JSON.")
    parser.add_argument("--sysroot", default="/")
    arguments = parser.parse_args(argv)
    sysroot = arguments.sysroot

    nvml = read_nvml()
    device_nodes = sorted(
        os.path.basename(path)
        for path in glob.glob(os.path.join(sysroot, "dev", "nvidia*"))
    )
    report = {
        "format": PROBE_FORMAT,
        "hostname": socket.gethostname(),
        "kernel_module": read_kernel_module(sysroot),
        "library": find_library_version(sysroot),
        "uvm_device": os.path.exists(os.path.join(sysroot, UVM_DEVICE)),
        "device_nodes": device_nodes,
        "kernel_log": read_kernel_log(),
        "nvml": nvml,
    }
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
