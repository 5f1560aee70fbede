"""Stand-in for the pynvml module (nvidia-ml-py), for machines without a GPU.

It serves the NVML calls the GPU probe makes from a JSON scenario file named
by STACKCHECK_FAKE_NVML, and raises the real nvidia-ml-py error classes, so
the probe handles the same exceptions as on a GPU host. It shadows the
real module when its directory comes first on PYTHONPATH.

Scenario form::

    {"init_error": 18, "driver_version": "550.54.14",
     "cuda_driver_version": 12040,
     "devices": [{"Name": "NVIDIA GeForce RTX 4080", "Temperature": 45,
                  "TotalEccErrors": {"1,0": 2}, "PowerUsage": {"error": 15}}]}

Device keys are NVML function names without ``nvmlDeviceGet``. A key that is
absent raises NVML_ERROR_NOT_SUPPORTED; ``{"error": CODE}`` raises that
code; a table keyed by the comma-joined extra arguments picks by argument.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

HERE = str(Path(__file__).resolve().parent)


def _load_real() -> Any:
    search = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(HERE)]
    spec = importlib.machinery.PathFinder.find_spec("pynvml", search)
    if spec is None or spec.loader is None:
        raise ImportError("the NVML stand-in needs nvidia-ml-py installed")
    module = importlib.util.module_from_spec(spec)
    # The real module builds its error classes on sys.modules["pynvml"], so
    # it takes that name while it runs, then this stand-in takes it back.
    standin = sys.modules["pynvml"]
    sys.modules["pynvml"] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules["pynvml"] = standin
    return module


_real = _load_real()
for _name in dir(_real):
    if _name.startswith(("NVML_", "NVMLError", "nvmlClocks")):
        globals()[_name] = getattr(_real, _name)
NVMLError = _real.NVMLError

_scenario: dict[str, Any] = {}


def _raise_if_error(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"error"}:
        raise NVMLError(int(value["error"]))
    return value


def nvmlInit() -> None:
    global _scenario
    path = os.environ.get("STACKCHECK_FAKE_NVML", "")
    if not path:
        raise NVMLError(_real.NVML_ERROR_LIBRARY_NOT_FOUND)
    _scenario = json.loads(Path(path).read_text(encoding="utf-8"))
    if _scenario.get("init_error") is not None:
        raise NVMLError(int(_scenario["init_error"]))


def nvmlShutdown() -> None:
    return None


def nvmlSystemGetDriverVersion() -> str:
    return str(_raise_if_error(_scenario["driver_version"]))


def nvmlSystemGetCudaDriverVersion() -> int:
    return int(_raise_if_error(_scenario["cuda_driver_version"]))


def nvmlDeviceGetCount() -> int:
    return len(_scenario["devices"])


def nvmlDeviceGetHandleByIndex(index: int) -> dict[str, Any]:
    device: dict[str, Any] = _scenario["devices"][index]
    _raise_if_error(device.get("HandleByIndex"))
    return device


def _reading(key: str, wrap: Any = None) -> Any:
    def read(handle: dict[str, Any], *arguments: Any) -> Any:
        if key not in handle:
            raise NVMLError(_real.NVML_ERROR_NOT_SUPPORTED)
        value = _raise_if_error(handle[key])
        if arguments and isinstance(value, dict):
            value = _raise_if_error(value[",".join(map(str, arguments))])
        return wrap(value) if wrap is not None else value

    read.__name__ = f"nvmlDeviceGet{key}"
    return read


def _namespace(value: dict[str, Any]) -> SimpleNamespace:
    return SimpleNamespace(**value)


nvmlDeviceGetName = _reading("Name")
nvmlDeviceGetUUID = _reading("UUID")
nvmlDeviceGetPciInfo = _reading("PciInfo", _namespace)
nvmlDeviceGetMemoryInfo = _reading("MemoryInfo", _namespace)
nvmlDeviceGetTemperature = _reading("Temperature")
nvmlDeviceGetTemperatureThreshold = _reading("TemperatureThreshold")
nvmlDeviceGetPowerUsage = _reading("PowerUsage")
nvmlDeviceGetEnforcedPowerLimit = _reading("EnforcedPowerLimit")
nvmlDeviceGetEccMode = _reading("EccMode")
nvmlDeviceGetTotalEccErrors = _reading("TotalEccErrors")
nvmlDeviceGetRetiredPages = _reading("RetiredPages")
nvmlDeviceGetRetiredPagesPendingStatus = _reading("RetiredPagesPendingStatus")
nvmlDeviceGetRemappedRows = _reading("RemappedRows", tuple)
nvmlDeviceGetPersistenceMode = _reading("PersistenceMode")
nvmlDeviceGetCurrentClocksEventReasons = _reading("CurrentClocksEventReasons")
nvmlDeviceGetCurrentClocksThrottleReasons = _reading("CurrentClocksThrottleReasons")
nvmlDeviceGetCurrPcieLinkGeneration = _reading("CurrPcieLinkGeneration")
nvmlDeviceGetMaxPcieLinkGeneration = _reading("MaxPcieLinkGeneration")
nvmlDeviceGetCurrPcieLinkWidth = _reading("CurrPcieLinkWidth")
nvmlDeviceGetMaxPcieLinkWidth = _reading("MaxPcieLinkWidth")
