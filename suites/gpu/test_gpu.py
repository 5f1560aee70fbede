"""The gpu gate: can the stack's GPU run CUDA work today?

NVML readings are judged against the profile's ``[gpu]`` table, the kernel
module is compared with the user-space driver a fresh process loads, and a
CUDA driver-API smoke test allocates, copies and runs a kernel on every GPU.
All readings come from scripts run in fresh processes on the GPU host (this
machine, or ``stack.host`` over ssh). The Kubernetes checks are in
``test_kubernetes.py``.
"""

from __future__ import annotations

import pytest

from pytest_stackcheck.gpu import judge
from pytest_stackcheck.gpu.session import record_device


def _assert_none(problems: list[str]) -> None:
    assert not problems, "\n".join(problems)


@pytest.mark.gate("gpu", item="GPU count, model and memory")
def test_devices_match_profile(gpu, evidence):
    devices = gpu.devices()
    evidence.record("gpu.count", len(devices))
    for device in devices:
        record_device(
            evidence,
            device,
            {"name": "", "uuid": "", "pci": "", "memory_total_bytes": "bytes"},
        )
    _assert_none(judge.check_devices(gpu.host(), gpu.spec))


@pytest.mark.gate("gpu", item="kernel module and user-space driver match")
def test_driver_consistency(gpu, evidence):
    host = gpu.host()
    evidence.record("kernel_module.version", host.module_version or "unknown")
    evidence.record("nvml.driver_version", host.nvml.driver_version or "unknown")
    evidence.record("nvml.library", host.library_path or "not found")
    evidence.record("nvml.initialised", host.nvml.initialised)
    if host.nvml.driver_version:
        evidence.version("nvidia-driver", host.nvml.driver_version)
    _assert_none(judge.check_driver_consistency(host))


@pytest.mark.gate("gpu", item="driver and CUDA versions")
def test_driver_versions(gpu, evidence):
    gpu.devices()
    host = gpu.host()
    evidence.record("nvml.cuda_driver_version", host.nvml.cuda_version_text)
    if host.nvml.cuda_version_text:
        evidence.version("cuda-driver-api", host.nvml.cuda_version_text)
    _assert_none(judge.check_versions(host, gpu.spec))


@pytest.mark.gate("gpu", item="GPU temperature")
def test_temperature(gpu, evidence):
    for device in gpu.devices():
        units = {"temperature_c": "°C", "slowdown_temperature_c": "°C"}
        record_device(evidence, device, units)
    _assert_none(judge.check_temperature(gpu.host(), gpu.spec))


@pytest.mark.gate("gpu", item="GPU power draw")
def test_power(gpu, evidence):
    for device in gpu.devices():
        record_device(evidence, device, {"power_w": "W", "power_limit_w": "W"})
    _assert_none(judge.check_power(gpu.host(), gpu.spec))


@pytest.mark.gate("gpu", item="ECC errors, retired pages and row remapping")
def test_memory_errors(gpu, evidence):
    names = {
        "ecc_enabled": "",
        "ecc_pending": "",
        "ecc_uncorrected_volatile": "errors",
        "ecc_corrected_volatile": "errors",
        "ecc_uncorrected_aggregate": "errors",
        "retired_pages_sbe": "pages",
        "retired_pages_dbe": "pages",
        "retired_pages_pending": "",
        "remapped_rows_correctable": "rows",
        "remapped_rows_uncorrectable": "rows",
        "remapping_pending": "",
        "remapping_failed": "",
    }
    for device in gpu.devices():
        record_device(evidence, device, names)
    _assert_none(judge.check_memory_errors(gpu.host(), gpu.spec))


@pytest.mark.gate("gpu", item="persistence mode, throttling and PCIe link")
def test_operating_state(gpu, evidence):
    names = {
        "persistence_mode": "",
        "pcie_generation": "",
        "pcie_generation_max": "",
        "pcie_width": "lanes",
        "pcie_width_max": "lanes",
    }
    for device in gpu.devices():
        record_device(evidence, device, names)
        if device.throttle_reasons is not None:
            reasons = judge.throttle_names(device.throttle_reasons)
            shown = ", ".join(reasons) or "none"
            evidence.record(f"gpu{device.index}.throttle_reasons", shown)
    _assert_none(judge.check_operating_state(gpu.host(), gpu.spec))


@pytest.mark.gate("gpu", item="/dev/nvidia-uvm present")
def test_uvm_device(gpu, evidence):
    host = gpu.host()
    evidence.record("device_nodes", ", ".join(host.device_nodes) or "none")
    smoke = None
    if not host.uvm_device and host.nvml.devices:
        # Whether CUDA works without the node decides which fix to name.
        outcome = gpu.smoke_outcome(host.nvml.devices[0].index)
        smoke = outcome if not isinstance(outcome, str) else None
    _assert_none(judge.check_uvm(host, smoke))


@pytest.mark.gate("gpu", item="CUDA smoke: allocate, copy, run a kernel")
def test_cuda_smoke(gpu, evidence):
    problems: list[str] = []
    for device in gpu.devices():
        smoke = gpu.smoke(device.index)
        prefix = f"gpu{device.index}.cuda"
        evidence.record(f"{prefix}.ok", smoke.ok)
        evidence.record(f"{prefix}.allocated", smoke.allocated_bytes, "bytes")
        evidence.record(f"{prefix}.roundtrip_ok", smoke.roundtrip_ok)
        evidence.record(f"{prefix}.kernel_ok", smoke.kernel_ok)
        for direction in ("host_to_device", "device_to_host"):
            value = getattr(smoke, f"{direction}_gib_s")
            if value is not None:
                evidence.record(f"{prefix}.{direction}", value, "GiB/s")
        if smoke.failed_step:
            evidence.record(f"{prefix}.failed_step", smoke.failed_step)
        problems += judge.check_smoke(smoke, gpu.spec)
    _assert_none(problems)


@pytest.mark.gate("gpu", item="no Xid errors or lost GPU in the kernel log")
def test_kernel_log(gpu, evidence):
    host = gpu.host()
    log = host.kernel_log
    if not log.readable:
        pytest.skip(
            f"the kernel log of {host.hostname} is not readable ({log.error}); "
            "run the checks as root or as a member of the adm or systemd-journal "
            "group"
        )
    fatal, codes = judge.kernel_log_faults(host, gpu.spec)
    evidence.record("kernel_log.source", log.source)
    evidence.record("kernel_log.lines_scanned", log.scanned, "lines")
    evidence.record("kernel_log.xid_codes", ", ".join(map(str, codes)) or "none")
    shown = "\n".join(fatal[-10:])
    assert not fatal, (
        f"{len(fatal)} kernel log line(s) on {host.hostname} report a failing or "
        f"lost GPU (fatal Xid codes: {sorted(gpu.spec.fatal_xids)}):\n{shown}\n"
        "drain the host, reset the GPU or reboot, and replace it if this returns"
    )
