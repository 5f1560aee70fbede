"""Frozen dataclasses for the reports of the GPU probe and the CUDA smoke test.

The two scripts print JSON; ``parse_probe`` and ``parse_smoke`` turn it into
these types, so the judging code and the suites never read loose dicts. A
reading the device does not support is None, and its name is listed in
``DeviceReading.unsupported``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_stackcheck.errors import ProbeError

PROBE_FORMAT = 1
SMOKE_FORMAT = 1

# NVML return codes from nvml.h that the judging code distinguishes.
NVML_DRIVER_NOT_LOADED = 9
NVML_LIBRARY_NOT_FOUND = 12
NVML_GPU_IS_LOST = 15
NVML_LIB_RM_VERSION_MISMATCH = 18


@dataclass(frozen=True, slots=True)
class NvmlFailure:
    """An NVML call that failed: its return code, class name and message."""

    code: int | None
    name: str
    message: str

    def render(self) -> str:
        code = f" (NVML return code {self.code})" if self.code is not None else ""
        return f"{self.name}: {self.message}{code}"


@dataclass(frozen=True, slots=True)
class DeviceReading:
    """The NVML readings of one GPU; None where the device does not support one."""

    index: int
    name: str | None = None
    uuid: str | None = None
    pci: str | None = None
    memory_total_bytes: int | None = None
    memory_used_bytes: int | None = None
    temperature_c: float | None = None
    slowdown_temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    ecc_enabled: bool | None = None
    ecc_pending: bool | None = None
    ecc_uncorrected_volatile: int | None = None
    ecc_corrected_volatile: int | None = None
    ecc_uncorrected_aggregate: int | None = None
    retired_pages_sbe: int | None = None
    retired_pages_dbe: int | None = None
    retired_pages_pending: bool | None = None
    remapped_rows_correctable: int | None = None
    remapped_rows_uncorrectable: int | None = None
    remapping_pending: bool | None = None
    remapping_failed: bool | None = None
    persistence_mode: bool | None = None
    throttle_reasons: int | None = None
    pcie_generation: int | None = None
    pcie_generation_max: int | None = None
    pcie_width: int | None = None
    pcie_width_max: int | None = None
    unsupported: tuple[str, ...] = ()
    errors: dict[str, NvmlFailure] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Name the device in messages, as ``GPU 0 (NVIDIA GeForce RTX 4080)``."""
        return f"GPU {self.index} ({self.name or 'name unknown'})"


@dataclass(frozen=True, slots=True)
class NvmlReading:
    """NVML as a fresh process found it: whether it initialised, and the devices."""

    imported: bool
    initialised: bool
    error: NvmlFailure | None
    driver_version: str
    cuda_driver_version: int | None
    devices: tuple[DeviceReading, ...]

    @property
    def cuda_version_text(self) -> str:
        """Return the CUDA version as ``12.4`` (NVML reports 12040)."""
        if self.cuda_driver_version is None:
            return ""
        major, rest = divmod(self.cuda_driver_version, 1000)
        return f"{major}.{rest // 10}"


@dataclass(frozen=True, slots=True)
class KernelLog:
    """GPU fault lines (Xid, fallen off the bus) found in the kernel log."""

    readable: bool
    source: str
    scanned: int
    matches: tuple[str, ...]
    match_count: int
    error: str


@dataclass(frozen=True, slots=True)
class HostReading:
    """Everything the probe read on the GPU host."""

    hostname: str
    module_present: bool
    module_version: str
    module_text: str
    library_path: str
    library_version: str
    uvm_device: bool
    device_nodes: tuple[str, ...]
    kernel_log: KernelLog
    nvml: NvmlReading

    @property
    def gpu_present(self) -> bool:
        """Return whether this host has an NVIDIA GPU, working or not.

        A loaded kernel module, a /dev/nvidiaN node or a device NVML lists
        each count, so a GPU whose user-space library is broken still counts.
        """
        numbered = any(node[len("nvidia") :].isdigit() for node in self.device_nodes)
        return self.module_present or numbered or bool(self.nvml.devices)


@dataclass(frozen=True, slots=True)
class SmokeStep:
    """One driver API call of the smoke test and how long it took."""

    step: str
    call: str
    seconds: float


@dataclass(frozen=True, slots=True)
class SmokeResult:
    """The outcome of the CUDA smoke test on one device."""

    ok: bool
    device_index: int
    failed_step: str
    error_code: int | None
    error: str
    library: str = ""
    driver_version: int | None = None
    device_name: str = ""
    allocated_bytes: int = 0
    roundtrip_ok: bool = False
    kernel_ok: bool = False
    kernel_words: int = 0
    host_to_device_gib_s: float | None = None
    device_to_host_gib_s: float | None = None
    bandwidth_bytes: int = 0
    steps: tuple[SmokeStep, ...] = ()


def _failure(data: object) -> NvmlFailure | None:
    if not isinstance(data, Mapping):
        return None
    code = data.get("code")
    return NvmlFailure(
        code=int(code) if isinstance(code, int) else None,
        name=str(data.get("name", "NVMLError")),
        message=str(data.get("message", "")),
    )


def _device(data: Mapping[str, Any]) -> DeviceReading:
    known = set(DeviceReading.__dataclass_fields__) - {"unsupported", "errors"}
    values = {key: data[key] for key in known if key in data}
    errors = {
        str(name): failure
        for name, raw in dict(data.get("errors") or {}).items()
        if (failure := _failure(raw)) is not None
    }
    return DeviceReading(
        **values,
        unsupported=tuple(str(name) for name in data.get("unsupported") or ()),
        errors=errors,
    )


def parse_probe(data: object, where: str) -> HostReading:
    """Build a HostReading from the probe's JSON, or raise ProbeError."""
    try:
        assert isinstance(data, Mapping)
        if data.get("format") != PROBE_FORMAT:
            raise ProbeError(
                f"GPU probe on {where} printed format {data.get('format')!r}, "
                f"expected {PROBE_FORMAT}; run the same pytest-stackcheck version"
            )
        module = data["kernel_module"]
        library = data["library"]
        log = data["kernel_log"]
        nvml = data["nvml"]
        return HostReading(
            hostname=str(data["hostname"]),
            module_present=bool(module["present"]),
            module_version=str(module["version"]),
            module_text=str(module["text"]),
            library_path=str(library["path"]),
            library_version=str(library["version"]),
            uvm_device=bool(data["uvm_device"]),
            device_nodes=tuple(str(node) for node in data["device_nodes"]),
            kernel_log=KernelLog(
                readable=bool(log["readable"]),
                source=str(log["source"]),
                scanned=int(log["scanned"]),
                matches=tuple(str(line) for line in log["matches"]),
                match_count=int(log["match_count"]),
                error=str(log["error"]),
            ),
            nvml=NvmlReading(
                imported=bool(nvml["imported"]),
                initialised=bool(nvml["initialised"]),
                error=_failure(nvml["error"]),
                driver_version=str(nvml["driver_version"]),
                cuda_driver_version=nvml["cuda_driver_version"],
                devices=tuple(_device(device) for device in nvml["devices"]),
            ),
        )
    except (AssertionError, KeyError, TypeError, ValueError) as exc:
        raise ProbeError(
            f"GPU probe on {where} printed JSON of an unexpected shape "
            f"({type(exc).__name__}: {exc}); run the same pytest-stackcheck "
            "version on both sides"
        ) from exc


def parse_smoke(data: object, where: str) -> SmokeResult:
    """Build a SmokeResult from the smoke test's JSON, or raise ProbeError."""
    try:
        assert isinstance(data, Mapping)
        if data.get("format") != SMOKE_FORMAT:
            raise ProbeError(
                f"CUDA smoke test on {where} printed format "
                f"{data.get('format')!r}, expected {SMOKE_FORMAT}"
            )
        known = set(SmokeResult.__dataclass_fields__) - {"steps"}
        values = {key: data[key] for key in known if key in data}
        steps = tuple(
            SmokeStep(str(s["step"]), str(s["call"]), float(s["seconds"]))
            for s in data.get("steps") or ()
        )
        return SmokeResult(**values, steps=steps)
    except (AssertionError, KeyError, TypeError, ValueError) as exc:
        raise ProbeError(
            f"CUDA smoke test on {where} printed JSON of an unexpected shape "
            f"({type(exc).__name__}: {exc})"
        ) from exc
