"""GPU faults beyond a version mismatch and a broken cuInit, judged one by one.

There is no NVIDIA GPU here, so each scenario is played by the stand-ins of
``gpu_standin``: the NVML module reads the scenario, the libcuda stand-in
fails or hangs the named driver call, and the dmesg stand-in prints the
kernel log. The probe and smoke scripts run unchanged in fresh processes,
and the judging functions the gpu suite uses decide.
"""

from __future__ import annotations

import copy

import pytest
from gpu_standin import HEALTHY_DEVICE, MIB, RTX_4080, GpuHost, build_libcuda

from pytest_stackcheck.errors import ProbeError
from pytest_stackcheck.gpu import judge, runner
from pytest_stackcheck.gpu.settings import GpuSpec


@pytest.fixture
def host(tmp_path, monkeypatch):
    """A healthy stand-in RTX 4080 host."""
    return GpuHost(tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def libcuda(tmp_path_factory):
    """The libcuda stand-in, built once for this module."""
    return build_libcuda(tmp_path_factory.mktemp("libcuda"))


def probe(spec: GpuSpec | None = None):
    return runner.probe_host(runner.GpuTarget(), spec or GpuSpec())


def smoke(libcuda, **settings):
    spec = GpuSpec(smoke_alloc_mib=4, libcuda=str(libcuda), **settings)
    return spec, runner.smoke_test(runner.GpuTarget(), spec, 0)


def test_healthy_standin_has_no_problems(host):
    """Stand-in: the baseline the other scenarios break passes every check."""
    reading = probe()
    spec = GpuSpec(model=RTX_4080, min_memory_mib=16000, persistence_expected=True)

    assert judge.check_devices(reading, spec) == []
    assert judge.check_memory_errors(reading, spec) == []
    assert judge.check_operating_state(reading, spec) == []
    assert judge.check_uvm(reading) == []
    assert judge.kernel_log_faults(reading, spec) == ([], [])


def test_persistence_off_fails_when_expected(host):
    """Stand-in: persistence mode off fails only where the profile expects it on."""
    host.device["PersistenceMode"] = 0
    host.save()
    reading = probe()

    problems = judge.check_operating_state(reading, GpuSpec(persistence_expected=True))
    assert problems == [
        "GPU 0 (NVIDIA GeForce RTX 4080): persistence mode is off but "
        "gpu.persistence_expected = true; start nvidia-persistenced"
    ]
    assert judge.check_operating_state(reading, GpuSpec()) == []


def test_narrow_link_fails_by_default(host):
    """Stand-in: an x16 card in an x16 slot running at x4 fails with no setting."""
    host.device["CurrPcieLinkWidth"] = 4
    host.save()
    problems = judge.check_operating_state(probe(), GpuSpec())

    assert len(problems) == 1
    assert "runs its PCIe link at x4 (the card supports x16)" in problems[0]
    assert "below the width the card and slot support" in problems[0]
    assert "reseat the card" in problems[0]


def test_declared_narrow_link_passes(host):
    """Stand-in: x4 passes where the profile declares the slot is wired x4."""
    host.device["CurrPcieLinkWidth"] = 4
    host.save()

    assert judge.check_operating_state(probe(), GpuSpec(min_pcie_width=4)) == []


def test_idle_link_generation_passes(host):
    """Stand-in: an idle GPU at PCIe gen 1 of 4 is normal power saving."""
    host.device["CurrPcieLinkGeneration"] = 1
    host.device["MaxPcieLinkGeneration"] = 4
    host.device["CurrentClocksEventReasons"] = 0x1
    host.save()

    assert judge.check_operating_state(probe(), GpuSpec()) == []


@pytest.mark.parametrize(
    ("mask", "name"),
    [
        (0x8, "hw_slowdown"),
        (0x20, "sw_thermal_slowdown"),
        (0x40, "hw_thermal_slowdown"),
        (0x80, "hw_power_brake_slowdown"),
    ],
)
def test_hardware_throttle_reasons_fail(host, mask, name):
    """Stand-in: each hardware or thermal clock event reason fails the check."""
    host.device["CurrentClocksEventReasons"] = mask | 0x1
    host.save()
    problems = judge.check_operating_state(probe(), GpuSpec())

    assert problems == [
        f"GPU 0 (NVIDIA GeForce RTX 4080) is throttled for {name}; check cooling "
        "and the power supply"
    ]


@pytest.mark.parametrize("mask", [0x1, 0x2, 0x4, 0x10, 0x100, 0x1 | 0x2 | 0x4])
def test_benign_clock_reasons_pass(host, mask):
    """Stand-in: idle, application clocks and the software power cap are normal."""
    host.device["CurrentClocksEventReasons"] = mask
    host.save()

    assert judge.check_operating_state(probe(), GpuSpec()) == []


def test_lost_throttle_reading_fails(host):
    """Stand-in: a clock reason reading that fails with GPU_IS_LOST is a problem."""
    host.device["CurrentClocksEventReasons"] = {"error": 15}
    host.save()
    problems = judge.check_operating_state(probe(), GpuSpec())

    assert len(problems) == 1
    assert "reading throttle_reasons failed: NVMLError_GpuIsLost" in problems[0]


def test_retired_pages_pending_fails(host):
    """Stand-in: a page waiting for retirement fails until the GPU is reset."""
    host.device["RetiredPages"] = {"0": [], "1": [4096]}
    host.device["RetiredPagesPendingStatus"] = 1
    host.save()
    problems = judge.check_memory_errors(probe(), GpuSpec())

    assert problems == [
        "GPU 0 (NVIDIA GeForce RTX 4080) has memory pages waiting to be retired; "
        "reset the GPU or reboot so that they are retired"
    ]


def test_row_remapping_failure_fails(host):
    """Stand-in: a failed row remap means the GPU needs replacing."""
    host.device["RemappedRows"] = [0, 2, 0, 1]
    host.save()
    problems = judge.check_memory_errors(probe(), GpuSpec())

    assert problems == [
        "GPU 0 (NVIDIA GeForce RTX 4080) failed to remap a faulty memory row; "
        "the GPU needs replacing"
    ]


def test_uncorrected_volatile_ecc_fails(host):
    """Stand-in: uncorrected ECC errors since the driver loaded fail the check."""
    host.device["EccMode"] = [1, 1]
    host.device["TotalEccErrors"] = {"1,0": 2, "0,0": 7, "1,1": 2}
    host.save()
    problems = judge.check_memory_errors(probe(), GpuSpec(ecc_expected=True))

    assert len(problems) == 1
    assert "has 2 uncorrected ECC error(s) since the driver loaded" in problems[0]


def test_corrected_ecc_only_passes(host):
    """Stand-in: corrected ECC errors alone are ECC doing its job."""
    host.device["EccMode"] = [1, 1]
    host.device["TotalEccErrors"] = {"1,0": 0, "0,0": 7, "1,1": 0}
    host.save()

    assert judge.check_memory_errors(probe(), GpuSpec(ecc_expected=True)) == []


def test_smaller_memory_variant_fails(host):
    """Stand-in: a 12 GiB RTX 4080 Laptop GPU where a 16 GiB card is expected."""
    host.device["Name"] = "NVIDIA GeForce RTX 4080 Laptop GPU"
    host.device["MemoryInfo"] = {"total": 12282 * MIB, "used": 0}
    host.save()
    reading = probe()

    any_model = judge.check_devices(reading, GpuSpec(min_memory_mib=16000))
    assert len(any_model) == 1
    assert "has 12282 MiB of memory, below gpu.min_memory_mib = 16000" in any_model[0]
    assert "lower gpu.min_memory_mib" in any_model[0]
    with_model = judge.check_devices(
        reading, GpuSpec(model=RTX_4080, min_memory_mib=16000)
    )
    assert len(with_model) == 2
    assert "is not the expected model 'NVIDIA GeForce RTX 4080'" in with_model[0]


def test_only_second_gpu_bad_fails(host):
    """Stand-in: two GPUs; the second is hot and thermally throttled."""
    second = copy.deepcopy(HEALTHY_DEVICE)
    second["PciInfo"] = {"busId": "00000000:02:00.0"}
    second["Temperature"] = 93
    second["CurrentClocksEventReasons"] = 0x40
    host.scenario["devices"].append(second)
    host.save()
    reading = probe()
    spec = GpuSpec(count=2, model=RTX_4080)

    assert judge.check_devices(reading, spec) == []
    temperature = judge.check_temperature(reading, spec)
    assert len(temperature) == 2
    assert all(line.startswith("GPU 1 ") for line in temperature)
    state = judge.check_operating_state(reading, spec)
    assert state == [
        "GPU 1 (NVIDIA GeForce RTX 4080) is throttled for hw_thermal_slowdown; "
        "check cooling and the power supply"
    ]


def test_library_not_found_fails(host):
    """Stand-in: the module is loaded but libnvidia-ml.so.1 cannot be found."""
    host.scenario["init_error"] = 12
    host.save()
    reading = probe()

    assert judge.check_presence(reading, GpuSpec(), "here").run
    problems = judge.check_driver_consistency(reading)
    assert len(problems) == 1
    assert "NVMLError_LibraryNotFound" in problems[0]
    assert "install the NVIDIA user-space driver version 550.54.14" in problems[0]


def test_version_mismatch_names_both_versions(host):
    """Stand-in: NVML init fails with the RM mismatch after a driver upgrade."""
    host.set_library_version("550.90.07")
    host.scenario["init_error"] = 18
    host.save()
    problems = judge.check_driver_consistency(probe())

    assert len(problems) == 1
    assert "Driver/library version mismatch" in problems[0]
    assert "kernel module is 550.54.14" in problems[0]
    assert "library is 550.90.07" in problems[0]


def test_nvml_query_failure_named(host):
    """Stand-in: NVML starts, then the driver version query fails."""
    host.scenario["driver_version"] = {"error": 999}
    host.save()
    reading = probe()
    problems = judge.check_driver_consistency(reading)

    assert reading.nvml.initialised
    assert reading.nvml.devices == ()
    assert len(problems) == 1
    assert problems[0].startswith(
        "NVML initialised but then failed: NVMLError_Unknown: Unknown Error "
        "(NVML return code 999)"
    )


@pytest.mark.parametrize(
    ("failure", "step", "hint"),
    [
        ("cuInit=100", "init", "CUDA_VISIBLE_DEVICES"),
        ("cuInit=999", "init", "/dev/nvidia-uvm exists"),
        ("cuCtxCreate_v2=2", "context", "another process holds it"),
        ("cuMemAlloc_v2=2", "allocate", "lower gpu.smoke_alloc_mib"),
        ("cuLaunchKernel=999", "kernel", "/dev/nvidia-uvm exists"),
    ],
)
def test_cuda_failures_name_step_and_fix(libcuda, monkeypatch, failure, step, hint):
    """Stand-in: each failing driver call names its step, CUresult and a fix."""
    monkeypatch.setenv("STACKCHECK_FAKE_CUDA_FAIL", failure)
    spec, result = smoke(libcuda)
    problems = judge.check_smoke(result, spec)
    function, code = failure.split("=")

    assert not result.ok
    assert result.failed_step == step
    assert len(problems) == 1
    assert f"failed at step '{step}'" in problems[0]
    assert f"{function} returned {code} CUDA_ERROR_" in problems[0]
    assert hint in problems[0]


def test_hanging_kernel_is_killed(libcuda, monkeypatch):
    """Stand-in: a kernel that never finishes is killed at the smoke timeout."""
    monkeypatch.setenv("STACKCHECK_FAKE_CUDA_HANG", "cuCtxSynchronize")

    with pytest.raises(ProbeError, match="did not finish within 2 s and was killed"):
        smoke(libcuda, smoke_timeout_s=2.0)


def test_uvm_missing_with_working_cuda_fails(host, libcuda):
    """Stand-in: no /dev/nvidia-uvm at probe time, but cuInit still works."""
    host.remove("dev/nvidia-uvm")
    reading = probe()
    spec, result = smoke(libcuda)

    assert result.ok
    assert judge.check_smoke(result, spec) == []
    problems = judge.check_uvm(reading, result)
    assert len(problems) == 1
    assert "/dev/nvidia-uvm was missing on" in problems[0]
    assert "the CUDA smoke test passed because libcuda created it" in problems[0]
    assert "nvidia-modprobe -u -c=0" in problems[0]


XID_LINES = {
    48: "NVRM: Xid (PCI:0000:01:00): 48, pid=1234, name=python3, An uncorrectable "
    "double bit error (DBE) has been detected on GPU in the framebuffer at "
    "partition 0, subpartition 0.",
    64: "NVRM: Xid (PCI:0000:01:00): 64, pid='<unknown>', name=<unknown>, "
    "Dynamic Page Retirement: Failed to retire page",
    79: "NVRM: Xid (PCI:0000:01:00): 79, pid=0, GPU has fallen off the bus.",
    94: "NVRM: Xid (PCI:0000:01:00): 94, pid=4242, name=llm, Contained: SM "
    "(0x1). RST: No, D-RST: No",
}


@pytest.mark.parametrize("code", sorted(XID_LINES))
def test_fatal_xid_fails(host, code):
    """Stand-in: Xid 48, 64, 79 and 94 in the kernel log fail the gate."""
    host.kernel_log.write_text(
        f"[Fri Dec  4 11:00:00 2026] {XID_LINES[code]}\n", encoding="utf-8"
    )
    fatal, codes = judge.kernel_log_faults(probe(), GpuSpec())

    assert codes == [code]
    assert len(fatal) == 1
    assert f"Xid (PCI:0000:01:00): {code}," in fatal[0]


def test_fallen_off_bus_without_xid_fails(host):
    """Stand-in: the driver's lost-GPU line without an Xid code still fails."""
    host.kernel_log.write_text(
        "[Fri Dec  4 11:00:00 2026] NVRM: GPU 0000:01:00.0: GPU has fallen off "
        "the bus.\n",
        encoding="utf-8",
    )
    fatal, codes = judge.kernel_log_faults(probe(), GpuSpec())

    assert codes == []
    assert fatal == [
        "[Fri Dec  4 11:00:00 2026] NVRM: GPU 0000:01:00.0: GPU has fallen off the bus."
    ]


@pytest.mark.parametrize("code", [13, 31, 43, 63])
def test_recorded_only_xid_passes(host, code):
    """Stand-in: program faults and Xid 63 (a page or row recorded for
    retirement, judged by the pending checks) are recorded but do not fail."""
    host.kernel_log.write_text(
        f"[Fri Dec  4 11:00:00 2026] NVRM: Xid (PCI:0000:01:00): {code}, pid=1, "
        "name=app\n",
        encoding="utf-8",
    )
    fatal, codes = judge.kernel_log_faults(probe(), GpuSpec())

    assert codes == [code]
    assert fatal == []
