"""The gpu suite against stand-in GPU hosts: each fault fails its check.

This machine has no NVIDIA GPU, so every run here uses the stand-ins of
``gpu_standin`` (an NVML module that reads a scenario file, a libcuda built
from C that computes on the CPU, a /proc and /dev tree, a dmesg that prints
a file). The probe scripts, the runner, the judging and the suite run
unchanged, in a pytester subprocess as an operator would run them.
"""

from __future__ import annotations

import json

import pytest
from gpu_standin import GpuHost, build_libcuda
from helpers import SUITES, local_profile

HOST_SUITE = str(SUITES / "gpu" / "test_gpu.py")
GPU_SUITE = str(SUITES / "gpu")
CHECKS = 10
KUBERNETES_CHECKS = 2


@pytest.fixture(scope="session")
def libcuda(tmp_path_factory):
    """The libcuda stand-in, built once per session."""
    return build_libcuda(tmp_path_factory.mktemp("libcuda"))


@pytest.fixture
def host(tmp_path, monkeypatch):
    """A healthy stand-in RTX 4080 host, to be broken by each test."""
    return GpuHost(tmp_path, monkeypatch)


def run_gpu(run_suite, profile, *args):
    return run_suite(profile, HOST_SUITE, "-m", "gpu", "-rs", *args)


def test_healthy_host_passes(host, libcuda, run_suite, tmp_path):
    """Stand-in: a healthy RTX 4080 host passes every check, with evidence."""
    report = tmp_path / "report"
    result = run_gpu(run_suite, host.profile(libcuda), "--gate-report", str(report))

    result.assert_outcomes(passed=CHECKS)
    result.stdout.fnmatch_lines(["gpu *pass*", "deployment verdict: OK"])
    gates = (report / "gates.json").read_text(encoding="utf-8")
    for name in (
        "gpu0.name",
        "gpu0.temperature_c",
        "gpu0.power_w",
        "gpu0.cuda.host_to_device",
        "kernel_module.version",
        "gpu0.ecc_enabled",
    ):
        assert name in gates, f"evidence {name} missing from gates.json"
    assert "not supported" in gates
    assert json.loads(gates)


def test_g1_version_mismatch_fails(host, libcuda, run_suite):
    """Stand-in: NVML init fails with the RM version mismatch (driver upgraded)."""
    host.set_library_version("550.90.07")
    host.scenario["init_error"] = 18
    host.save()
    result = run_gpu(run_suite, host.profile(libcuda))

    output = result.stdout.str()
    assert "Driver/library version mismatch" in output
    assert "kernel module is 550.54.14" in output
    assert "library is 550.90.07" in output
    assert "reboot the host" in output
    assert "rmmod nvidia_uvm" in output
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == CHECKS - 2
    assert outcomes["passed"] == 2
    assert result.ret == 1


def test_g1_nvml_version_differs_fails(host, libcuda, run_suite):
    """Stand-in: NVML starts but reports another version than the module."""
    host.scenario["driver_version"] = "550.90.07"
    host.save()
    result = run_gpu(run_suite, host.profile(libcuda))

    result.assert_outcomes(passed=CHECKS - 1, failed=1)
    result.stdout.fnmatch_lines(
        ["*kernel module is 550.54.14 but NVML reports 550.90.07*reboot*"]
    )


def test_wrong_model_fails(host, libcuda, run_suite):
    """Stand-in: the host has an RTX 3060 where the profile expects an RTX 4080."""
    host.device["Name"] = "NVIDIA GeForce RTX 3060"
    host.device["MemoryInfo"] = {"total": 12288 << 20, "used": 0}
    host.save()
    result = run_gpu(run_suite, host.profile(libcuda))

    result.assert_outcomes(passed=CHECKS - 1, failed=1)
    output = result.stdout.str()
    assert "GPU 0 (NVIDIA GeForce RTX 3060) is not the expected model" in output
    assert "'NVIDIA GeForce RTX 4080'" in output
    assert "12288 MiB of memory, below gpu.min_memory_mib = 16000" in output


def test_over_temperature_fails(host, libcuda, run_suite):
    """Stand-in: the GPU runs at 92 °C, over the limit and its slowdown point."""
    host.device["Temperature"] = 92
    host.save()
    result = run_gpu(run_suite, host.profile(libcuda))

    result.assert_outcomes(passed=CHECKS - 1, failed=1)
    output = result.stdout.str()
    assert "is at 92 °C, above gpu.max_temperature_c = 85" in output
    assert "slowdown temperature 90 °C" in output


def test_ecc_errors_fail(host, libcuda, run_suite):
    """Stand-in: uncorrected ECC errors and a pending row remap on an ECC GPU."""
    host.device["EccMode"] = [1, 1]
    host.device["TotalEccErrors"] = {"1,0": 3, "0,0": 10, "1,1": 5}
    host.device["RemappedRows"] = [0, 1, 1, 0]
    host.save()
    profile = host.profile(libcuda, ecc_expected="true")
    result = run_gpu(run_suite, profile)

    result.assert_outcomes(passed=CHECKS - 1, failed=1)
    output = result.stdout.str()
    assert "3 uncorrected ECC error(s)" in output
    assert "memory row remapping pending" in output


def test_ecc_expected_but_absent_fails(host, libcuda, run_suite):
    """Stand-in: the profile expects ECC but the GPU does not support it."""
    result = run_gpu(run_suite, host.profile(libcuda, ecc_expected="true"))

    result.assert_outcomes(passed=CHECKS - 1, failed=1)
    result.stdout.fnmatch_lines(["*ECC is not supported but gpu.ecc_expected = true*"])


def test_g2_failed_cuda_init_fails(host, libcuda, run_suite, monkeypatch):
    """Stand-in: NVML is healthy but cuInit returns 999 (CUDA_ERROR_UNKNOWN)."""
    monkeypatch.setenv("STACKCHECK_FAKE_CUDA_FAIL", "cuInit=999")
    result = run_gpu(run_suite, host.profile(libcuda))

    result.assert_outcomes(passed=CHECKS - 1, failed=1)
    output = result.stdout.str()
    assert "failed at step 'init'" in output
    assert "cuInit returned 999 CUDA_ERROR_UNKNOWN" in output
    assert "/dev/nvidia-uvm" in output


def test_g2_missing_uvm_device_fails(host, libcuda, run_suite, monkeypatch):
    """Stand-in: /dev/nvidia-uvm is missing, so cuInit fails as on real hosts."""
    host.remove("dev/nvidia-uvm")
    monkeypatch.setenv("STACKCHECK_FAKE_CUDA_FAIL", "cuInit=999")
    result = run_gpu(run_suite, host.profile(libcuda))

    result.assert_outcomes(passed=CHECKS - 2, failed=2)
    result.stdout.fnmatch_lines(["*/dev/nvidia-uvm is missing*modprobe nvidia-uvm*"])


def test_uvm_missing_cuda_working_fails(host, libcuda, run_suite):
    """Stand-in: /dev/nvidia-uvm is missing at probe time, yet the smoke passes."""
    host.remove("dev/nvidia-uvm")
    result = run_gpu(run_suite, host.profile(libcuda))

    result.assert_outcomes(passed=CHECKS - 1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_uvm_device _*",
            "*/dev/nvidia-uvm was missing on * when the probe ran; the CUDA smoke "
            "test passed*nvidia-modprobe -u -c=0*",
        ]
    )


def test_g2_corrupt_copy_fails(host, libcuda, run_suite, monkeypatch):
    """Stand-in: the device returns one flipped byte in the round trip."""
    monkeypatch.setenv("STACKCHECK_FAKE_CUDA_CORRUPT", "1")
    result = run_gpu(run_suite, host.profile(libcuda))

    result.assert_outcomes(passed=CHECKS - 1, failed=1)
    result.stdout.fnmatch_lines(["*failed at step 'copy': byte 4096 of 8388608*"])


def test_g2_hanging_cuda_is_killed(host, libcuda, run_suite, monkeypatch):
    """Stand-in: cuCtxCreate never returns; the smoke test is killed in time."""
    monkeypatch.setenv("STACKCHECK_FAKE_CUDA_HANG", "cuCtxCreate_v2")
    result = run_gpu(run_suite, host.profile(libcuda, smoke_timeout_s="3.0"))

    result.assert_outcomes(passed=CHECKS - 1, failed=1)
    result.stdout.fnmatch_lines(["*did not finish within 3 s and was killed*"])


def test_xid_in_kernel_log_fails(host, libcuda, run_suite):
    """Stand-in: the kernel log reports Xid 79, the GPU fell off the bus."""
    host.kernel_log.write_text(
        "[Fri Dec  4 10:00:00 2026] NVRM: Xid (PCI:0000:01:00): 13, pid=4242, "
        "Graphics Exception\n"
        "[Fri Dec  4 11:00:00 2026] NVRM: Xid (PCI:0000:01:00): 79, pid=0, "
        "GPU has fallen off the bus.\n",
        encoding="utf-8",
    )
    result = run_gpu(run_suite, host.profile(libcuda))

    result.assert_outcomes(passed=CHECKS - 1, failed=1)
    output = result.stdout.str()
    assert "1 kernel log line(s)" in output
    assert "Xid (PCI:0000:01:00): 79" in output


def test_unreadable_kernel_log_skips(host, libcuda, run_suite, monkeypatch):
    """Stand-in: dmesg and journalctl are denied, so that one check is skipped."""
    monkeypatch.delenv("STACKCHECK_FAKE_KERNEL_LOG")
    result = run_gpu(run_suite, host.profile(libcuda))

    result.assert_outcomes(passed=CHECKS - 1, skipped=1)
    result.stdout.fnmatch_lines(["*kernel log of * is not readable*"])


def test_no_gpu_local_stack_skips(host, run_suite, tmp_path):
    """Stand-in for a machine without a GPU, real local stack, not required."""
    host.no_gpu()
    profile = local_profile(tmp_path)
    result = run_suite(profile, GPU_SUITE, "-m", "gpu", "-rs")

    result.assert_outcomes(skipped=CHECKS + KUBERNETES_CHECKS)
    result.stdout.fnmatch_lines(
        [
            "deployment verdict: OK",
            "SKIPPED*no NVIDIA GPU on this machine and the profile does not "
            "require one (gpu.required = false)*NVMLError_LibraryNotFound*",
        ]
    )
    assert result.ret == 0


def test_no_gpu_required_fails(host, run_suite, tmp_path):
    """Stand-in for a machine without a GPU, real local stack, required."""
    host.no_gpu()
    replacement = {"required = false": "required = true"}
    profile = local_profile(tmp_path, replacement)
    result = run_suite(profile, GPU_SUITE, "-m", "gpu", "-rs")

    # The Kubernetes checks are skipped: the local stack has no API server.
    result.assert_outcomes(failed=CHECKS, skipped=KUBERNETES_CHECKS)
    result.stdout.fnmatch_lines(
        [
            "*gpu.required = true, but this machine has no NVIDIA GPU*"
            "/proc/driver/nvidia/version is missing*set gpu.required = false*",
            "deployment verdict: BLOCKED*",
        ]
    )
    assert result.ret == 1
