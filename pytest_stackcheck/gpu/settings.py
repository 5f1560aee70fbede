"""The ``[gpu]`` table of a stack profile: which GPU the host must have, and limits.

Every limit is optional in the sense that its default accepts any healthy
GPU; the production profile sets the model, memory and versions it was
deployed with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pytest_stackcheck.schema import SchemaError, spec

VERSION_FORM = re.compile(r"^\d+(\.\d+)*$")

# Xid codes that mean failing hardware or a lost device rather than a faulty
# program, after NVIDIA's Xid catalog (docs.nvidia.com/deploy/xid-errors):
#   48       double-bit ECC error
#   61, 62   internal micro-controller fault
#   64       ECC page retirement or row remapping failure
#   74       NVLink error
#   79       GPU has fallen off the bus
#   92       high single-bit ECC error rate
#   94, 95   contained or uncontained ECC error
#   119, 120 GSP RPC timeout or GSP error
# NOTE: these meanings were not rechecked code by code against the current
# catalog; a profile can replace the list with gpu.fatal_xids.
DEFAULT_FATAL_XIDS = (48, 61, 62, 64, 74, 79, 92, 94, 95, 119, 120)


@dataclass(frozen=True, slots=True)
class KubernetesGpuSpec:
    """How to reach the Kubernetes API that schedules the GPU workloads."""

    api_url: str = spec(
        "",
        help="set the API server URL, for example 'https://10.0.0.1:6443', or "
        "leave empty when the stack does not run on Kubernetes",
    )
    token_env: str = spec(
        "", help="name the environment variable that holds the bearer token"
    )
    ca_file: str = spec(
        "", help="set the CA bundle that signed the API server's certificate"
    )
    namespace: str = spec("default", help="set the namespace of the test pod")
    node_selector: str = spec(
        "",
        help="set a label selector for the GPU nodes, for example "
        "'nvidia.com/gpu.present=true', or leave empty for all nodes",
    )
    pod_check: bool = spec(
        True,
        help="set pod_check = false to skip starting a pod that requests one GPU",
    )
    image: str = spec(
        "nvidia/cuda:12.4.1-base-ubuntu22.04",
        help="set the image of the test pod; it runs nvidia-smi -L",
    )
    runtime_class: str = spec(
        "", help="set the RuntimeClass GPU pods need, for example 'nvidia', or ''"
    )
    timeout_s: float = spec(
        180.0, help="set seconds the test pod may take to be scheduled and finish"
    )

    def __post_init__(self) -> None:
        if self.api_url and not self.api_url.startswith(("https://", "http://")):
            raise SchemaError(
                "gpu.kubernetes.api_url",
                self.api_url,
                "not an http or https URL",
                "write it as 'https://HOST:6443'",
            )
        if self.token_env and not self.token_env.isidentifier():
            raise SchemaError(
                "gpu.kubernetes.token_env",
                self.token_env,
                "not an environment variable name",
                "name a variable such as KUBE_TOKEN",
            )
        if self.timeout_s <= 0:
            raise SchemaError(
                "gpu.kubernetes.timeout_s",
                self.timeout_s,
                "must be greater than 0",
                "set gpu.kubernetes.timeout_s to a positive number",
            )


@dataclass(frozen=True, slots=True)
class GpuSpec:
    """The GPU the host must have and the limits it is judged against."""

    required: bool = spec(
        False,
        help="set required = true if the host must have a working NVIDIA GPU; "
        "with false the gpu gate is skipped on hosts without one",
    )
    count: int = spec(1, help="set the number of GPUs the host must have at least")
    model: str = spec(
        "",
        help="set the model name as NVML reports it, for example "
        "'NVIDIA GeForce RTX 4080', or leave empty to accept any",
    )
    min_memory_mib: int = spec(
        0, help="set the lowest acceptable total memory per GPU, in MiB"
    )
    min_driver: str = spec(
        "", help="set the lowest acceptable driver version, for example '550.54'"
    )
    min_cuda: str = spec(
        "",
        help="set the lowest CUDA version the driver must support, for example '12.4'",
    )
    max_temperature_c: float = spec(
        85.0, help="set the highest acceptable GPU temperature, in degrees Celsius"
    )
    max_power_fraction: float = spec(
        0.95,
        help="set the highest acceptable power draw as a fraction of the "
        "enforced power limit, for example 0.95",
    )
    ecc_expected: bool = spec(
        False,
        help="set ecc_expected = true if ECC must be enabled (data-centre GPUs); "
        "GeForce cards have no ECC",
    )
    persistence_expected: bool = spec(
        False, help="set persistence_expected = true if persistence mode must be on"
    )
    min_pcie_width: int = spec(
        0,
        help="set the lowest acceptable PCIe link width (8 for x8), or 0 to "
        "require the widest link the card and slot support",
    )
    fatal_xids: tuple[int, ...] = spec(
        DEFAULT_FATAL_XIDS,
        help="list the Xid codes in the kernel log that fail the gate",
    )
    smoke_alloc_mib: int = spec(
        256, help="set the device memory the CUDA smoke test allocates, in MiB"
    )
    min_bandwidth_gib_s: float = spec(
        0.0,
        help="set the lowest acceptable host-device copy bandwidth in GiB/s, "
        "or 0 to only record it",
    )
    smoke_timeout_s: float = spec(
        120.0, help="set seconds the CUDA smoke test may run before it is killed"
    )
    probe_timeout_s: float = spec(
        60.0, help="set seconds the NVML probe may run before it is killed"
    )
    python: str = spec(
        "python3",
        help="set the Python interpreter on the stack's host that runs the probes",
    )
    libcuda: str = spec(
        "",
        help="set the path of libcuda.so.1 if the loader cannot find it, or "
        "leave empty",
    )
    kubernetes: KubernetesGpuSpec = spec(
        factory=KubernetesGpuSpec, help="write a [gpu.kubernetes] table"
    )

    def __post_init__(self) -> None:
        for name in ("min_driver", "min_cuda"):
            value = getattr(self, name)
            if value and not VERSION_FORM.match(value):
                raise SchemaError(
                    f"gpu.{name}",
                    value,
                    "not a dotted version number",
                    "write it as digits and dots, for example '550.54'",
                )
        positive = {
            "count": self.count,
            "smoke_alloc_mib": self.smoke_alloc_mib,
            "smoke_timeout_s": self.smoke_timeout_s,
            "probe_timeout_s": self.probe_timeout_s,
            "max_power_fraction": self.max_power_fraction,
        }
        for name, number in positive.items():
            if number <= 0:
                raise SchemaError(
                    f"gpu.{name}",
                    number,
                    "must be greater than 0",
                    f"set gpu.{name} to a positive number",
                )
