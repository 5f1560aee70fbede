"""The GPU readings of one test session, taken once and shared by the gpu suite.

``GpuSession.host()`` is where the gate decides to run, skip or fail: a host
without an NVIDIA GPU skips every check when the profile does not require
one, and fails every check when it does. The failures happen in the test
call, not in a fixture, so that they count as failed checks rather than
errors of the harness.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest

from pytest_stackcheck.errors import ProbeError
from pytest_stackcheck.gpu.judge import check_presence
from pytest_stackcheck.gpu.readings import DeviceReading, HostReading, SmokeResult
from pytest_stackcheck.gpu.runner import GpuTarget, parse_target, probe_host, smoke_test

if TYPE_CHECKING:
    from pytest_stackcheck.evidence import EvidenceRecorder
    from pytest_stackcheck.gpu.settings import GpuSpec
    from pytest_stackcheck.provision.base import LiveStack

log = logging.getLogger("pytest_stackcheck")


class GpuSession:
    """Probe the stack's GPU host once and hand the readings to each check."""

    def __init__(self, stack: LiveStack) -> None:
        self.spec: GpuSpec = stack.profile.doc.gpu
        self.connection = stack.profile.doc.stack.host
        ssh_config = stack.profile.doc.stack.ssh_config
        self.ssh_config = str(stack.profile.resolve(ssh_config)) if ssh_config else ""
        self._target: GpuTarget | None = None
        self._reading: HostReading | None = None
        self._error = ""
        self._probed = False
        self._smokes: dict[int, SmokeResult | str] = {}

    @property
    def target(self) -> GpuTarget:
        """Return where the scripts run, failing the check on a bad stack.host."""
        if self._target is None:
            try:
                self._target = parse_target(self.connection, self.ssh_config)
            except ProbeError as exc:
                pytest.fail(str(exc), pytrace=False)
        return self._target

    def _probe(self) -> None:
        if self._probed:
            return
        self._probed = True
        try:
            self._reading = probe_host(self.target, self.spec)
        except ProbeError as exc:
            log.error("GPU probe on %s failed: %s", self.target.label, exc)
            self._error = str(exc)

    def host(self) -> HostReading:
        """Return the host's readings; skip or fail the check if there is no GPU."""
        self._probe()
        if self._reading is None:
            pytest.fail(f"GPU probe failed: {self._error}", pytrace=False)

        presence = check_presence(self._reading, self.spec, self.target.label)
        if presence.skip_reason:
            pytest.skip(presence.skip_reason)
        if presence.fail_reason:
            pytest.fail(presence.fail_reason, pytrace=False)
        return self._reading

    def devices(self) -> tuple[DeviceReading, ...]:
        """Return the devices NVML read, failing the check if it read none.

        Without this a per-device check would pass on a host whose NVML is
        broken, having no device to judge.
        """
        host = self.host()
        nvml = host.nvml
        if not nvml.devices:
            reason = nvml.error.render() if nvml.error else "it lists no device"
            pytest.fail(
                f"NVML on {host.hostname} returned no GPU to check ({reason}); "
                "the driver consistency check names the cause",
                pytrace=False,
            )
        return nvml.devices

    def smoke_outcome(self, device_index: int) -> SmokeResult | str:
        """Run the smoke test on one device once; a str is why it gave no report."""
        if device_index not in self._smokes:
            try:
                result: SmokeResult | str = smoke_test(
                    self.target, self.spec, device_index
                )
            except ProbeError as exc:
                result = str(exc)
            self._smokes[device_index] = result
        return self._smokes[device_index]

    def smoke(self, device_index: int) -> SmokeResult:
        """Run the CUDA smoke test on one device once, failing the check on error."""
        outcome = self.smoke_outcome(device_index)
        if isinstance(outcome, str):
            pytest.fail(
                f"CUDA smoke test on GPU {device_index} did not report: {outcome}",
                pytrace=False,
            )
        return outcome


def record_device(
    evidence: EvidenceRecorder, device: DeviceReading, names: dict[str, str]
) -> None:
    """Record the readings ``names`` (reading to unit) of one device as evidence.

    A reading the device does not support is recorded as "not supported", so
    the report shows it was looked for.
    """
    for name, unit in names.items():
        value = getattr(device, name)
        key = f"gpu{device.index}.{name}"
        if value is not None:
            evidence.record(key, value, unit)
        elif name in device.unsupported:
            evidence.record(key, "not supported")
        elif name in device.errors:
            evidence.record(key, f"failed: {device.errors[name].render()}")
