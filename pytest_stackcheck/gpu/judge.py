"""Judge GPU readings against the profile's ``[gpu]`` table.

Each ``check_*`` function returns the problems it found as messages that name
the device, the value, the limit and the fix. An empty list means the check
passed. A reading the device does not support is not a problem; a reading
that failed for another reason (no permission, GPU lost) is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pytest_stackcheck.gpu.readings import (
    NVML_DRIVER_NOT_LOADED,
    NVML_GPU_IS_LOST,
    NVML_LIB_RM_VERSION_MISMATCH,
    NVML_LIBRARY_NOT_FOUND,
    DeviceReading,
    HostReading,
    SmokeResult,
)
from pytest_stackcheck.gpu.settings import GpuSpec

MIB = 1 << 20
RELOAD_FIX = (
    "reboot the host, or stop every process that uses the GPU and reload the "
    "modules (rmmod nvidia_uvm nvidia_drm nvidia_modeset nvidia; modprobe nvidia; "
    "modprobe nvidia_uvm)"
)
XID_LINE = re.compile(r"NVRM: Xid \(([^)]*)\): (\d+)")
FALLEN_OFF = re.compile(r"fallen off the bus", re.IGNORECASE)

# Clock event reasons from nvml.h (nvmlClocksEventReason*) that point to
# hardware trouble. Idle, application clocks and the software power cap are
# normal on a working GPU and are only recorded.
THROTTLE_NAMES = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
THROTTLE_FAULTS = 0x8 | 0x20 | 0x40 | 0x80

# CUresult codes from cuda.h that get their own fix.
CUDA_ERROR_OUT_OF_MEMORY = 2
CUDA_ERROR_NO_DEVICE = 100


@dataclass(frozen=True, slots=True)
class Presence:
    """Whether the gpu gate runs on this host, and the reason if it does not."""

    run: bool
    skip_reason: str = ""
    fail_reason: str = ""


def parse_version(text: str) -> tuple[int, ...]:
    """Return a dotted version such as ``550.54.14`` as a tuple of integers."""
    return tuple(int(part) for part in re.findall(r"\d+", text))


def version_at_least(found: str, minimum: str) -> bool:
    """Return whether version ``found`` is ``minimum`` or newer (550.54 < 550.120)."""
    have = parse_version(found)
    need = parse_version(minimum)
    width = max(len(have), len(need))
    return have + (0,) * (width - len(have)) >= need + (0,) * (width - len(need))


def _absence(host: HostReading) -> str:
    nvml = host.nvml
    nvml_text = nvml.error.render() if nvml.error else "no device listed"
    return (
        "/proc/driver/nvidia/version is missing (no nvidia kernel module "
        f"loaded), no /dev/nvidiaN device node, and NVML reports {nvml_text}"
    )


def check_presence(host: HostReading, spec: GpuSpec, label: str) -> Presence:
    """Decide whether the gate runs, is skipped (no GPU expected) or fails."""
    if host.gpu_present:
        return Presence(run=True)
    if spec.required:
        return Presence(
            run=False,
            fail_reason=f"gpu.required = true, but {label} has no NVIDIA GPU: "
            f"{_absence(host)}; install the NVIDIA driver and load its kernel "
            "module, run the checks on the GPU host (stack.host), or set "
            "gpu.required = false",
        )
    return Presence(
        run=False,
        skip_reason=f"no NVIDIA GPU on {label} and the profile does not require "
        f"one (gpu.required = false): {_absence(host)}",
    )


def check_driver_consistency(host: HostReading) -> list[str]:
    """Check that a fresh process initialises NVML and its version is the module's."""
    problems: list[str] = []
    module = host.module_version
    nvml = host.nvml

    if not host.module_present:
        problems.append(
            "/proc/driver/nvidia/version is missing: the nvidia kernel module is "
            "not loaded; load it with modprobe nvidia, or reboot after a driver "
            "install"
        )
    elif not module:
        problems.append(
            "/proc/driver/nvidia/version names no kernel module version "
            f"({host.module_text!r}); reinstall the NVIDIA driver"
        )

    if not nvml.imported:
        reason = nvml.error.message if nvml.error else "pynvml is missing"
        problems.append(
            f"NVML cannot be used from Python on {host.hostname}: {reason}; "
            "install it with pip install 'pytest-stackcheck[gpu]' (nvidia-ml-py)"
        )
        return problems

    error = nvml.error
    if not nvml.initialised and error is not None:
        if error.code == NVML_LIB_RM_VERSION_MISMATCH:
            library = host.library_version or "of unknown version"
            where = f" ({host.library_path})" if host.library_path else ""
            problems.append(
                "Failed to initialize NVML: Driver/library version mismatch: the "
                f"loaded kernel module is {module or 'of unknown version'} but the "
                f"user-space NVML library is {library}{where}; the driver was "
                f"upgraded without a reboot; {RELOAD_FIX}"
            )
        else:
            problems.append(
                f"a fresh process cannot initialise NVML: {error.render()}; "
                f"{_init_fix(error.code, module)}"
            )
        return problems

    if error is not None:
        # NVML started but a system-wide query failed, so no device was read.
        problems.append(
            f"NVML initialised but then failed: {error.render()}; "
            f"{_init_fix(error.code, module)}"
        )

    if module and nvml.driver_version and nvml.driver_version != module:
        problems.append(
            f"driver version mismatch: the kernel module is {module} but NVML "
            f"reports {nvml.driver_version}; {RELOAD_FIX}"
        )
    return problems


def _init_fix(code: int | None, module: str) -> str:
    if code == NVML_DRIVER_NOT_LOADED:
        return "load the nvidia kernel module (modprobe nvidia) or reboot"
    if code == NVML_LIBRARY_NOT_FOUND:
        wanted = f" version {module}" if module else ""
        return (
            f"install the NVIDIA user-space driver{wanted} (libnvidia-ml.so.1) or "
            "add its directory to the loader path"
        )
    if code == NVML_GPU_IS_LOST:
        return "the GPU has fallen off the bus; reboot, and reseat or replace it"
    return "read the driver's messages with dmesg and reinstall or reload the driver"


def check_devices(host: HostReading, spec: GpuSpec) -> list[str]:
    """Check the device count, each device's model, memory and responsiveness."""
    problems: list[str] = []
    found = len(host.nvml.devices)
    if found < spec.count:
        problems.append(
            f"NVML lists {found} GPU(s) on {host.hostname}, the profile requires "
            f"gpu.count = {spec.count}; check nvidia-smi -L and the PCIe slots, "
            "or lower gpu.count"
        )
    for device in host.nvml.devices:
        lost = device.errors.get("handle")
        if lost is not None:
            problems.append(f"GPU {device.index} does not answer: {lost.render()}")
            continue
        if spec.model and _normal(device.name) != _normal(spec.model):
            problems.append(
                f"{device.label} is not the expected model {spec.model!r}; install "
                "that GPU or set gpu.model to the model this host has"
            )
        total = device.memory_total_bytes
        minimum = spec.min_memory_mib * MIB
        if minimum and total is not None and total < minimum:
            problems.append(
                f"{device.label} has {total // MIB} MiB of memory, below "
                f"gpu.min_memory_mib = {spec.min_memory_mib}; models sized for "
                "the expected GPU will not fit, so install one with that much "
                "memory or lower gpu.min_memory_mib"
            )
        problems += _failed_readings(device, ("name", "memory_total_bytes"))
    return problems


def _normal(name: str | None) -> str:
    return " ".join((name or "").lower().split())


def _failed_readings(device: DeviceReading, names: tuple[str, ...]) -> list[str]:
    problems: list[str] = []
    for name in names:
        failure = device.errors.get(name)
        if failure is None:
            continue
        fix = (
            "the GPU has fallen off the bus; reboot, and reseat or replace it"
            if failure.code == NVML_GPU_IS_LOST
            else "run the checks as a user allowed to read it, or as root"
        )
        problems.append(
            f"{device.label}: reading {name} failed: {failure.render()}; {fix}"
        )
    return problems


def check_versions(host: HostReading, spec: GpuSpec) -> list[str]:
    """Check the driver and the CUDA version it supports against the minimums."""
    problems: list[str] = []
    driver = host.nvml.driver_version
    if spec.min_driver and not (driver and version_at_least(driver, spec.min_driver)):
        problems.append(
            f"NVIDIA driver {driver or 'version unknown'} is older than "
            f"gpu.min_driver = {spec.min_driver}; upgrade the driver and reboot"
        )
    cuda = host.nvml.cuda_version_text
    if spec.min_cuda and not (cuda and version_at_least(cuda, spec.min_cuda)):
        problems.append(
            f"the driver supports CUDA {cuda or 'version unknown'}, older than "
            f"gpu.min_cuda = {spec.min_cuda}; install a driver that supports it"
        )
    return problems


def check_temperature(host: HostReading, spec: GpuSpec) -> list[str]:
    """Check each GPU's temperature against the limit and its slowdown point."""
    problems: list[str] = []
    for device in _answering(host):
        temperature = device.temperature_c
        if temperature is None:
            problems += _failed_readings(device, ("temperature_c",))
            continue
        if temperature > spec.max_temperature_c:
            problems.append(
                f"{device.label} is at {temperature:g} °C, above "
                f"gpu.max_temperature_c = {spec.max_temperature_c:g}; check the "
                "fans, airflow and the load on the GPU"
            )
        slowdown = device.slowdown_temperature_c
        if slowdown is not None and temperature >= slowdown:
            problems.append(
                f"{device.label} is at {temperature:g} °C, at or above its "
                f"slowdown temperature {slowdown:g} °C, so its clocks are cut"
            )
    return problems


def check_power(host: HostReading, spec: GpuSpec) -> list[str]:
    """Check each GPU's power draw as a fraction of its enforced limit."""
    problems: list[str] = []
    for device in _answering(host):
        power, limit = device.power_w, device.power_limit_w
        if power is None or not limit:
            problems += _failed_readings(device, ("power_w", "power_limit_w"))
            continue
        if power / limit > spec.max_power_fraction:
            problems.append(
                f"{device.label} draws {power:.1f} W of its {limit:.1f} W limit "
                f"({power / limit:.0%}), above gpu.max_power_fraction = "
                f"{spec.max_power_fraction:g}; check what runs on it (nvidia-smi) "
                "and the power supply"
            )
    return problems


def check_memory_errors(host: HostReading, spec: GpuSpec) -> list[str]:
    """Check ECC mode, uncorrected ECC errors, page retirement and row remapping."""
    problems: list[str] = []
    for device in _answering(host):
        if spec.ecc_expected and device.ecc_enabled is not True:
            state = "not supported" if device.ecc_enabled is None else "disabled"
            problems.append(
                f"{device.label}: ECC is {state} but gpu.ecc_expected = true; "
                "enable it with nvidia-smi -e 1 and reboot, or set "
                "gpu.ecc_expected = false"
            )
        uncorrected = device.ecc_uncorrected_volatile
        if uncorrected:
            problems.append(
                f"{device.label} has {uncorrected} uncorrected ECC error(s) since "
                "the driver loaded; data on it may be corrupt; drain the GPU, "
                "reset it (nvidia-smi -r) and replace it if errors return"
            )
        if device.retired_pages_pending:
            problems.append(
                f"{device.label} has memory pages waiting to be retired; reset "
                "the GPU or reboot so that they are retired"
            )
        if device.remapping_failed:
            problems.append(
                f"{device.label} failed to remap a faulty memory row; the GPU "
                "needs replacing"
            )
        if device.remapping_pending:
            problems.append(
                f"{device.label} has a memory row remapping pending; reset the "
                "GPU or reboot"
            )
        problems += _failed_readings(
            device,
            ("ecc_uncorrected_volatile", "retired_pages_pending", "remapping_failed"),
        )
    return problems


def check_operating_state(host: HostReading, spec: GpuSpec) -> list[str]:
    """Check persistence mode, hardware throttling and the PCIe link width.

    The link generation is not judged: an idle GPU drops to a lower
    generation to save power and raises it under load, so a low reading
    here is normal. The copy bandwidth of the smoke test, taken under load,
    is where a slow link shows (gpu.min_bandwidth_gib_s).
    """
    problems: list[str] = []
    for device in _answering(host):
        if spec.persistence_expected and device.persistence_mode is not True:
            problems.append(
                f"{device.label}: persistence mode is off but "
                "gpu.persistence_expected = true; start nvidia-persistenced"
            )
        faults = (device.throttle_reasons or 0) & THROTTLE_FAULTS
        if faults:
            problems.append(
                f"{device.label} is throttled for {', '.join(throttle_names(faults))}"
                "; check cooling and the power supply"
            )
        problems += _narrow_link(device, spec)
        problems += _failed_readings(
            device, ("persistence_mode", "throttle_reasons", "pcie_width")
        )
    return problems


def _narrow_link(device: DeviceReading, spec: GpuSpec) -> list[str]:
    # NVML's maximum width is the lower of the card's and the slot's, and the
    # width (unlike the generation) stays as trained while the GPU idles, so
    # a current width below it means the link trained narrower than it can.
    width, widest = device.pcie_width, device.pcie_width_max
    floor = spec.min_pcie_width or widest
    if width is None or not floor or width >= floor:
        return []
    limit = (
        f"gpu.min_pcie_width = {spec.min_pcie_width}"
        if spec.min_pcie_width
        else "the width the card and slot support"
    )
    return [
        f"{device.label} runs its PCIe link at x{width} (the card supports "
        f"x{widest}), below {limit}; the link trained narrow, as with a card "
        "not fully seated or a damaged slot or riser: reseat the card, or set "
        f"gpu.min_pcie_width = {width} if the slot is wired x{width}"
    ]


def throttle_names(mask: int) -> list[str]:
    """Return the names of the clock event reasons set in ``mask``."""
    names = [name for bit, name in THROTTLE_NAMES.items() if mask & bit]
    unknown = mask & ~sum(THROTTLE_NAMES)
    if unknown:
        names.append(f"other ({unknown:#x})")
    return names


def _answering(host: HostReading) -> list[DeviceReading]:
    return [device for device in host.nvml.devices if "handle" not in device.errors]


def check_uvm(host: HostReading, smoke: SmokeResult | None = None) -> list[str]:
    """Check that /dev/nvidia-uvm exists, without which CUDA cannot start.

    ``smoke`` is the smoke test run after the probe. When it passed, libcuda
    created the node on first use (through the setuid nvidia-modprobe), so
    CUDA works on the host itself, but no process of the stack had used CUDA
    yet and containers started before the node existed have none.
    """
    if host.uvm_device:
        return []
    if smoke is not None and smoke.ok:
        return [
            f"/dev/nvidia-uvm was missing on {host.hostname} when the probe "
            "ran; the CUDA smoke test passed because libcuda created it on "
            "first use, so no process of the stack had used CUDA yet, and a "
            "container started before the node exists gets none and fails "
            "with CUDA_ERROR_UNKNOWN (999); create it at boot with "
            "nvidia-modprobe -u -c=0, or check that the GPU service started"
        ]
    return [
        f"/dev/nvidia-uvm is missing on {host.hostname}: CUDA init fails "
        "(CUDA_ERROR_UNKNOWN, 999) although NVML works; load the module with "
        "modprobe nvidia-uvm, or run nvidia-modprobe -u -c=0 to create the node"
    ]


def kernel_log_faults(host: HostReading, spec: GpuSpec) -> tuple[list[str], list[int]]:
    """Return the fatal kernel-log lines and every Xid code found."""
    fatal_lines: list[str] = []
    codes: list[int] = []
    fatal = set(spec.fatal_xids)
    for line in host.kernel_log.matches:
        match = XID_LINE.search(line)
        code = int(match.group(2)) if match else None
        if code is not None:
            codes.append(code)
        if FALLEN_OFF.search(line) or (code is not None and code in fatal):
            fatal_lines.append(line.strip())
    return fatal_lines, codes


def check_smoke(smoke: SmokeResult, spec: GpuSpec) -> list[str]:
    """Check that the CUDA smoke test ran every step and copied fast enough."""
    if not smoke.ok:
        hint = _smoke_fix(smoke)
        return [
            f"CUDA smoke test on GPU {smoke.device_index} failed at step "
            f"'{smoke.failed_step}': {smoke.error}; {hint}"
        ]
    problems: list[str] = []
    slowest = min(smoke.host_to_device_gib_s or 0.0, smoke.device_to_host_gib_s or 0.0)
    if spec.min_bandwidth_gib_s and slowest < spec.min_bandwidth_gib_s:
        problems.append(
            f"host-device copies on GPU {smoke.device_index} reach {slowest:.2f} "
            f"GiB/s, below gpu.min_bandwidth_gib_s = {spec.min_bandwidth_gib_s:g}; "
            "check the PCIe link width and generation"
        )
    return problems


def _smoke_fix(smoke: SmokeResult) -> str:
    if smoke.failed_step == "load libcuda":
        return "install the NVIDIA driver's libcuda.so.1 or set gpu.libcuda"
    if smoke.error_code == CUDA_ERROR_NO_DEVICE:
        return (
            "the CUDA driver sees no device although NVML lists one: check "
            "CUDA_VISIBLE_DEVICES in the environment of the checks and the "
            "permissions of /dev/nvidia0 and /dev/nvidiactl"
        )
    if smoke.error_code == 999 or smoke.failed_step == "init":
        return (
            "check that /dev/nvidia-uvm exists (modprobe nvidia-uvm) and that the "
            "kernel module and libcuda versions match"
        )
    if smoke.error_code == CUDA_ERROR_OUT_OF_MEMORY:
        return (
            "the GPU is out of memory, as when another process holds it: free "
            "GPU memory (nvidia-smi lists its users) or lower gpu.smoke_alloc_mib"
        )
    if smoke.failed_step in ("copy", "kernel"):
        return "the GPU returns wrong data; drain it and check its memory errors"
    return "read the driver's messages with dmesg"
