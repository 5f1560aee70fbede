"""The GPU probe, the runner and the judging rules, on this machine.

There is no NVIDIA GPU here, so the probe reads the stand-ins of
``gpu_standin``. The ssh path is checked by running the exact program it
would send to a remote ``python3 -`` with a local interpreter instead.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from gpu_standin import GpuHost, build_libcuda
from helpers import local_profile

from pytest_stackcheck.errors import ProbeError
from pytest_stackcheck.gpu import judge, runner
from pytest_stackcheck.gpu.readings import parse_probe
from pytest_stackcheck.gpu.settings import GpuSpec
from pytest_stackcheck.profile import load_profile


@pytest.fixture
def host(tmp_path, monkeypatch):
    """A healthy stand-in RTX 4080 host."""
    return GpuHost(tmp_path, monkeypatch)


def probe(spec: GpuSpec | None = None):
    return runner.probe_host(runner.GpuTarget(), spec or GpuSpec())


@pytest.mark.parametrize(
    ("found", "minimum", "expected"),
    [
        ("550.54.14", "550.54", True),
        ("550.120", "550.54", True),
        ("550.54", "550.54.14", False),
        ("535.183.01", "550.54", False),
        ("12.4", "12.4", True),
        ("12.2", "12.4", False),
    ],
)
def test_version_at_least(found, minimum, expected):
    assert judge.version_at_least(found, minimum) is expected


def test_throttle_names_flag_hardware_faults():
    assert judge.throttle_names(0x1 | 0x4) == ["gpu_idle", "sw_power_cap"]
    assert judge.throttle_names(0x40) == ["hw_thermal_slowdown"]
    assert judge.throttle_names(0x10000) == ["other (0x10000)"]


def test_parse_target_forms():
    assert runner.parse_target("").is_local
    assert runner.parse_target("local://").is_local
    target = runner.parse_target("ssh://deploy@gpu-1:2222")
    assert (target.user, target.host, target.port) == ("deploy", "gpu-1", 2222)
    assert target.label == "deploy@gpu-1:2222"


def test_parse_target_rejects_docker():
    with pytest.raises(ProbeError, match=r"only over ssh.*'ssh://user@host'"):
        runner.parse_target("docker://gpu-container")


def test_ssh_command_is_bounded():
    target = runner.parse_target("ssh://deploy@gpu-1:2222")
    command = runner._ssh_command(target, "python3", ["--device", "0"], 60)

    assert command[:5] == ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
    assert command[5:8] == ["-p", "2222", "deploy@gpu-1"]
    assert "exec timeout -k 5 60 python3 - --device 0" in command[-1]
    assert "/run/opengl-driver/lib" in command[-1]


def test_ssh_remote_command_runs(host):
    """Stand-in: the command ssh hands to the remote shell runs the probe.

    The remote login shell is played by a local ``sh -c``, so the quoting,
    the timeout(1) wrapper and the program on standard input are exercised.
    """
    target = runner.parse_target("ssh://deploy@gpu-1")
    command = runner._ssh_command(
        target, sys.executable, ["--sysroot", str(host.sysroot)], 60
    )
    program = runner._remote_program(runner.PROBE_SCRIPT, bundle_pynvml=True)
    result = subprocess.run(
        ["sh", "-c", command[-1]],
        input=program,
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )
    reading = parse_probe(json.loads(result.stdout), "gpu-1")

    assert reading.module_version == "550.54.14"
    assert reading.nvml.initialised
    assert reading.nvml.devices[0].name == "NVIDIA GeForce RTX 4080"


def test_remote_program_bundles_pynvml(host):
    """Stand-in: the sent program runs where no pynvml is installed (-S)."""
    host.scenario["devices"][0]["Temperature"] = 55
    host.save()
    program = runner._remote_program(runner.PROBE_SCRIPT, bundle_pynvml=True)
    # -S leaves out site-packages, as on a host without nvidia-ml-py. The
    # bundled copy is the real one, so NVML is not found here: what counts is
    # that the probe ran and reported the real library's error.
    result = subprocess.run(
        [sys.executable, "-S", "-", "--sysroot", str(host.sysroot)],
        input=program,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    reading = parse_probe(json.loads(result.stdout), "test")

    assert reading.nvml.imported
    assert reading.nvml.error is not None
    assert reading.nvml.error.name == "NVMLError_LibraryNotFound"
    assert reading.module_version == "550.54.14"


def test_probe_reads_standin_host(host):
    """Stand-in: every reading arrives, unsupported ones are listed as such."""
    reading = probe()
    device = reading.nvml.devices[0]

    assert reading.module_version == "550.54.14"
    assert reading.library_version == "550.54.14"
    assert reading.uvm_device
    assert reading.nvml.cuda_version_text == "12.4"
    assert device.name == "NVIDIA GeForce RTX 4080"
    assert device.memory_total_bytes == 16376 << 20
    assert device.power_w == 21.5
    assert device.pcie_width == 16
    assert device.ecc_enabled is None
    assert "ecc_enabled" in device.unsupported
    assert "remapping_pending" in device.unsupported
    assert not device.errors


def test_lost_gpu_reading_is_a_problem(host):
    """Stand-in: a reading failing with GPU_IS_LOST fails the check, not skips."""
    host.device["Temperature"] = {"error": 15}
    host.save()
    problems = judge.check_temperature(probe(), GpuSpec())

    assert len(problems) == 1
    assert "reading temperature_c failed: NVMLError_GpuIsLost" in problems[0]
    assert "fallen off the bus" in problems[0]


def test_lost_device_handle_is_reported(host):
    """Stand-in: a device without a handle fails the device check."""
    host.device["HandleByIndex"] = {"error": 15}
    host.save()
    problems = judge.check_devices(probe(), GpuSpec())

    assert problems == [
        "GPU 0 does not answer: NVMLError_GpuIsLost: GPU is lost (NVML return code 15)"
    ]


def test_broken_driver_is_present_when_not_required(host):
    """Stand-in: a loaded module with a failing NVML is checked, not skipped."""
    host.scenario["init_error"] = 9
    host.save()
    reading = probe()
    presence = judge.check_presence(reading, GpuSpec(required=False), "here")
    problems = judge.check_driver_consistency(reading)

    assert presence.run
    assert problems == [
        "a fresh process cannot initialise NVML: NVMLError_DriverNotLoaded: "
        "Driver Not Loaded (NVML return code 9); load the nvidia kernel module "
        "(modprobe nvidia) or reboot"
    ]


def test_hardware_throttle_fails(host):
    """Stand-in: hardware thermal slowdown fails the operating state check."""
    host.device["CurrentClocksEventReasons"] = 0x40 | 0x1
    host.save()
    problems = judge.check_operating_state(probe(), GpuSpec())

    assert problems == [
        "GPU 0 (NVIDIA GeForce RTX 4080) is throttled for hw_thermal_slowdown; "
        "check cooling and the power supply"
    ]


def test_power_over_fraction_fails(host):
    """Stand-in: 310 W of a 320 W limit is over the 0.95 fraction."""
    host.device["PowerUsage"] = 310000
    host.save()
    problems = judge.check_power(probe(), GpuSpec())

    assert len(problems) == 1
    assert "draws 310.0 W of its 320.0 W limit (97%)" in problems[0]


def test_narrow_pcie_link_fails(host):
    """Stand-in: an x16 card running at x4 fails when the profile requires x16."""
    host.device["CurrPcieLinkWidth"] = 4
    host.save()
    problems = judge.check_operating_state(probe(), GpuSpec(min_pcie_width=16))

    assert len(problems) == 1
    assert "PCIe link at x4 (the card supports x16)" in problems[0]


@pytest.fixture(scope="module")
def libcuda(tmp_path_factory):
    """The libcuda stand-in, built once for this module."""
    return build_libcuda(tmp_path_factory.mktemp("libcuda"))


def test_smoke_reports_every_step(libcuda):
    """Stand-in: a healthy smoke run reports the round trip, kernel and bandwidth."""
    spec = GpuSpec(smoke_alloc_mib=4, libcuda=str(libcuda))
    smoke = runner.smoke_test(runner.GpuTarget(), spec, 0)

    assert smoke.ok
    assert smoke.allocated_bytes == 4 << 20
    assert smoke.roundtrip_ok
    assert smoke.kernel_ok
    assert smoke.kernel_words == 1 << 18
    assert smoke.host_to_device_gib_s
    assert smoke.device_to_host_gib_s
    assert {step.call for step in smoke.steps} >= {"cuInit", "cuLaunchKernel"}
    assert judge.check_smoke(smoke, spec) == []


def test_smoke_detects_idle_kernel(libcuda, monkeypatch):
    """Stand-in: a kernel launch that succeeds but writes nothing fails."""
    monkeypatch.setenv("STACKCHECK_FAKE_CUDA_IDLE_KERNEL", "1")
    spec = GpuSpec(smoke_alloc_mib=4, libcuda=str(libcuda))
    smoke = runner.smoke_test(runner.GpuTarget(), spec, 0)
    problems = judge.check_smoke(smoke, spec)

    assert not smoke.ok
    assert smoke.failed_step == "kernel"
    assert len(problems) == 1
    assert f"the kernel wrote {1 << 18} of {1 << 18} words wrong" in problems[0]


def test_slow_copies_fail_bandwidth_limit(libcuda):
    """Stand-in: copies on the CPU are far below a 10 000 GiB/s limit."""
    spec = GpuSpec(smoke_alloc_mib=4, libcuda=str(libcuda), min_bandwidth_gib_s=1e4)
    smoke = runner.smoke_test(runner.GpuTarget(), spec, 0)
    problems = judge.check_smoke(smoke, spec)

    assert smoke.ok
    assert len(problems) == 1
    assert "below gpu.min_bandwidth_gib_s = 10000" in problems[0]


def test_probe_timeout_is_a_probe_error(tmp_path):
    script = tmp_path / "slow.py"
    script.write_text("import time\ntime.sleep(30)\n", encoding="utf-8")

    with pytest.raises(ProbeError, match="did not finish within 1 s and was killed"):
        runner.run_script(runner.GpuTarget(), script, [], 1, python="python3")


def test_probe_without_json_is_a_probe_error(tmp_path):
    script = tmp_path / "broken.py"
    script.write_text("print('not json')\n", encoding="utf-8")

    with pytest.raises(ProbeError, match="last line that is not JSON"):
        runner.run_script(runner.GpuTarget(), script, [], 10, python="python3")


def test_profile_rejects_bad_driver_version(tmp_path):
    path = local_profile(tmp_path, {"required = false": "min_driver = 'latest'"})

    with pytest.raises(pytest.UsageError, match=r"key 'gpu\.min_driver' = 'latest'"):
        load_profile(path)


@pytest.mark.parametrize(
    "first_line",
    [
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 "
        "01:44:30 UTC 2024",
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.14  "
        "Release Build  (dvs-builder@U16-I3-B03-4-3)  Tue Feb 20 2024",
        "NVRM version: NVIDIA UNIX aarch64 Kernel Module  550.54.14  Thu Feb 22 "
        "01:44:30 UTC 2024",
    ],
    ids=["proprietary", "open", "aarch64"],
)
def test_kernel_module_version_forms(tmp_path, first_line):
    from pytest_stackcheck.gpu import probe_script

    path = tmp_path / "proc" / "driver" / "nvidia" / "version"
    path.parent.mkdir(parents=True)
    path.write_text(first_line + "\nGCC version: gcc 12.2.0\n", encoding="utf-8")
    module = probe_script.read_kernel_module(str(tmp_path))

    assert module["present"]
    assert module["version"] == "550.54.14"
