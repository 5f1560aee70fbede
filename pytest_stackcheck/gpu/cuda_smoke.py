"""Run real work on one GPU through the CUDA driver API and print JSON.

This file runs as a standalone script in a fresh process on the machine
that has the GPU, so it needs only the standard library and the driver's
libcuda.so.1: no compiler and no CUDA toolkit. Its steps:

1. load libcuda.so.1, cuInit, cuDriverGetVersion, cuDeviceGet, cuCtxCreate;
2. cuMemAlloc the requested size (256 MiB by default), copy a seeded random
   pattern there and back, and compare every byte;
3. load a tiny kernel from PTX text with cuModuleLoadData, launch it with
   cuLaunchKernel over the start of that buffer, and check each word it wrote;
4. time copies between a pinned host buffer and the device, in both
   directions, for the bandwidth.

The first failing step ends the run; the output names it with the CUresult
code and the driver's name for it, such as CUDA_ERROR_UNKNOWN (999).

Usage: ``python3 cuda_smoke.py [--device N] [--alloc-mib M] [--libcuda PATH]``.
"""

from __future__ import annotations

import argparse
import array
import ctypes
import json
import random
import sys
import time
from typing import Any

SMOKE_FORMAT = 1
LIBCUDA_CANDIDATES = (
    "libcuda.so.1",
    # NixOS exposes the driver here instead of the loader's default path.
    "/run/opengl-driver/lib/libcuda.so.1",
    # WSL2 exposes the Windows driver here.
    "/usr/lib/wsl/lib/libcuda.so.1",
)
PATTERN_SEED = 0x5EED
KERNEL_NAME = b"stackcheck_xor"
KERNEL_KEY = 0xA5A5A5A5
KERNEL_MAX_WORDS = 1 << 18
THREADS_PER_BLOCK = 256
BANDWIDTH_MAX_BYTES = 64 << 20
BANDWIDTH_REPEATS = 3
COMPARE_CHUNK_BYTES = 1 << 20

# data[i] = (data[i] ^ key) + i for i < count, on 32-bit words. PTX ISA 6.0
# for sm_50 is accepted by every driver since CUDA 9 and JIT-compiled for the
# device's own architecture.
PTX = b"""
.version 6.0
.target sm_50
.address_size 64

.visible .entry stackcheck_xor(
    .param .u64 stackcheck_xor_data,
    .param .u32 stackcheck_xor_count,
    .param .u32 stackcheck_xor_key
)
{
    .reg .pred %p<2>;
    .reg .b32 %r<9>;
    .reg .b64 %rd<5>;

    ld.param.u64 %rd1, [stackcheck_xor_data];
    ld.param.u32 %r1, [stackcheck_xor_count];
    ld.param.u32 %r2, [stackcheck_xor_key];
    mov.u32 %r3, %ctaid.x;
    mov.u32 %r4, %ntid.x;
    mov.u32 %r5, %tid.x;
    mad.lo.s32 %r6, %r3, %r4, %r5;
    setp.ge.u32 %p1, %r6, %r1;
    @%p1 bra $L__done;
    cvta.to.global.u64 %rd2, %rd1;
    mul.wide.u32 %rd3, %r6, 4;
    add.s64 %rd4, %rd2, %rd3;
    ld.global.u32 %r7, [%rd4];
    xor.b32 %r8, %r7, %r2;
    add.s32 %r8, %r8, %r6;
    st.global.u32 [%rd4], %r8;
$L__done:
    ret;
}
\x00"""

c_ptr = ctypes.c_void_p
c_ptr_p = ctypes.POINTER(ctypes.c_void_p)
CUdeviceptr = ctypes.c_uint64

# Argument types of every driver API entry point used, from cuda.h. The _v2
# names are the ABI symbols behind the cuda.h macros of the same base name.
SIGNATURES: dict[str, list[Any]] = {
    "cuInit": [ctypes.c_uint],
    "cuDriverGetVersion": [ctypes.POINTER(ctypes.c_int)],
    "cuDeviceGet": [ctypes.POINTER(ctypes.c_int), ctypes.c_int],
    "cuDeviceGetName": [ctypes.c_char_p, ctypes.c_int, ctypes.c_int],
    "cuCtxCreate_v2": [c_ptr_p, ctypes.c_uint, ctypes.c_int],
    "cuCtxDestroy_v2": [c_ptr],
    "cuCtxSynchronize": [],
    "cuMemAlloc_v2": [ctypes.POINTER(CUdeviceptr), ctypes.c_size_t],
    "cuMemFree_v2": [CUdeviceptr],
    "cuMemAllocHost_v2": [c_ptr_p, ctypes.c_size_t],
    "cuMemFreeHost": [c_ptr],
    "cuMemcpyHtoD_v2": [CUdeviceptr, c_ptr, ctypes.c_size_t],
    "cuMemcpyDtoH_v2": [c_ptr, CUdeviceptr, ctypes.c_size_t],
    "cuModuleLoadData": [c_ptr_p, c_ptr],
    "cuModuleUnload": [c_ptr],
    "cuModuleGetFunction": [c_ptr_p, c_ptr, ctypes.c_char_p],
    "cuLaunchKernel": [
        c_ptr,
        *[ctypes.c_uint] * 6,
        ctypes.c_uint,
        c_ptr,
        c_ptr_p,
        c_ptr_p,
    ],
    "cuGetErrorName": [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)],
    "cuGetErrorString": [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)],
}


class SmokeFailure(Exception):
    """A step of the smoke test failed; carries the step and CUresult code."""

    def __init__(self, step: str, code: int | None, detail: str) -> None:
        super().__init__(detail)
        self.step = step
        self.code = code
        self.detail = detail


def load_driver(candidates: list[str]) -> tuple[ctypes.CDLL, str]:
    """Load the first libcuda that opens and declare the entry points used."""
    errors: list[str] = []
    for candidate in candidates:
        try:
            library = ctypes.CDLL(candidate)
        except OSError as exc:
            errors.append(f"{candidate}: {exc}")
            continue
        for name, argtypes in SIGNATURES.items():
            try:
                function = getattr(library, name)
            except AttributeError as exc:
                raise SmokeFailure(
                    "load libcuda", None, f"{candidate} has no symbol {name}"
                ) from exc
            function.argtypes = argtypes
            function.restype = ctypes.c_int
        return library, candidate
    raise SmokeFailure(
        "load libcuda", None, "no libcuda.so.1 could be loaded: " + "; ".join(errors)
    )


class Driver:
    """Call driver API functions, turning a non-zero CUresult into SmokeFailure."""

    def __init__(self, library: ctypes.CDLL) -> None:
        self.library = library
        self.steps: list[dict[str, Any]] = []

    def error_name(self, code: int) -> tuple[str, str]:
        name = ctypes.c_char_p()
        text = ctypes.c_char_p()
        self.library.cuGetErrorName(code, ctypes.byref(name))
        self.library.cuGetErrorString(code, ctypes.byref(text))
        return (
            (name.value or b"").decode("utf-8", errors="replace"),
            (text.value or b"").decode("utf-8", errors="replace"),
        )

    def call(self, step: str, function: str, *args: Any) -> None:
        started = time.perf_counter()
        code = getattr(self.library, function)(*args)
        seconds = time.perf_counter() - started
        self.steps.append({"step": step, "call": function, "seconds": seconds})
        if code != 0:
            name, text = self.error_name(code)
            raise SmokeFailure(step, code, f"{function} returned {code} {name}: {text}")


def make_pattern(size: int) -> bytes:
    """Return ``size`` seeded random bytes, so no two MiB of the buffer repeat.

    A pattern that repeats would let an aliased address read back correctly.
    """
    generator = random.Random(PATTERN_SEED)
    chunks = [
        generator.randbytes(min(COMPARE_CHUNK_BYTES, size - start))
        for start in range(0, size, COMPARE_CHUNK_BYTES)
    ]
    return b"".join(chunks)


def first_difference(expected: bytes, actual: bytearray) -> int:
    """Return the offset of the first differing byte, or -1 if equal."""
    view_expected = memoryview(expected)
    view_actual = memoryview(actual)
    for start in range(0, len(expected), COMPARE_CHUNK_BYTES):
        end = start + COMPARE_CHUNK_BYTES
        if view_expected[start:end] != view_actual[start:end]:
            for offset in range(start, min(end, len(expected))):
                if expected[offset] != actual[offset]:
                    return offset
    return -1


def kernel_expected(pattern: bytes, words: int) -> array.array[int]:
    """Compute on the host what the PTX kernel writes into the first words."""
    values = array.array("I")
    values.frombytes(pattern[: words * 4])
    for index in range(words):
        values[index] = ((values[index] ^ KERNEL_KEY) + index) & 0xFFFFFFFF
    return values


def run_smoke(
    driver: Driver, device_index: int, size: int, out: dict[str, Any]
) -> None:
    """Run every step on device ``device_index``, filling ``out`` as it goes."""
    version = ctypes.c_int()
    device = ctypes.c_int()
    context = ctypes.c_void_p()
    pointer = CUdeviceptr()
    module = ctypes.c_void_p()
    function = ctypes.c_void_p()
    pinned = ctypes.c_void_p()

    driver.call("init", "cuInit", 0)
    driver.call("init", "cuDriverGetVersion", ctypes.byref(version))
    out["driver_version"] = version.value
    driver.call("device", "cuDeviceGet", ctypes.byref(device), device_index)
    name = ctypes.create_string_buffer(256)
    driver.call("device", "cuDeviceGetName", name, 256, device)
    out["device_name"] = name.value.decode("utf-8", errors="replace")

    driver.call("context", "cuCtxCreate_v2", ctypes.byref(context), 0, device)
    try:
        driver.call("allocate", "cuMemAlloc_v2", ctypes.byref(pointer), size)
        out["allocated_bytes"] = size
        try:
            pattern = make_pattern(size)
            readback = bytearray(size)
            target = (ctypes.c_char * size).from_buffer(readback)
            driver.call("copy", "cuMemcpyHtoD_v2", pointer, pattern, size)
            driver.call("copy", "cuMemcpyDtoH_v2", target, pointer, size)
            offset = first_difference(pattern, readback)
            out["roundtrip_ok"] = offset < 0
            if offset >= 0:
                raise SmokeFailure(
                    "copy",
                    None,
                    f"byte {offset} of {size} read back as {readback[offset]}, "
                    f"written as {pattern[offset]}",
                )

            driver.call(
                "kernel", "cuModuleLoadData", ctypes.byref(module), ctypes.c_char_p(PTX)
            )
            driver.call(
                "kernel",
                "cuModuleGetFunction",
                ctypes.byref(function),
                module,
                KERNEL_NAME,
            )
            words = min(size // 4, KERNEL_MAX_WORDS)
            launch_kernel(driver, function, pointer, words)
            result = array.array("I")
            head = bytearray(words * 4)
            head_target = (ctypes.c_char * len(head)).from_buffer(head)
            driver.call("kernel", "cuMemcpyDtoH_v2", head_target, pointer, len(head))
            result.frombytes(bytes(head))
            expected = kernel_expected(pattern, words)
            wrong = [i for i in range(words) if result[i] != expected[i]]
            out["kernel_words"] = words
            out["kernel_ok"] = not wrong
            if wrong:
                index = wrong[0]
                raise SmokeFailure(
                    "kernel",
                    None,
                    f"the kernel wrote {len(wrong)} of {words} words wrong; word "
                    f"{index} is {result[index]:#x}, expected {expected[index]:#x}",
                )

            pinned_size = min(size, BANDWIDTH_MAX_BYTES)
            driver.call(
                "bandwidth", "cuMemAllocHost_v2", ctypes.byref(pinned), pinned_size
            )
            try:
                measure_bandwidth(driver, pinned, pointer, pinned_size, out)
            finally:
                driver.library.cuMemFreeHost(pinned)
        finally:
            if module.value:
                driver.library.cuModuleUnload(module)
            driver.library.cuMemFree_v2(pointer)
    finally:
        driver.library.cuCtxDestroy_v2(context)


def launch_kernel(
    driver: Driver, function: ctypes.c_void_p, pointer: Any, words: int
) -> None:
    """Launch the PTX kernel over ``words`` words and wait for it."""
    data = CUdeviceptr(pointer.value)
    count = ctypes.c_uint32(words)
    key = ctypes.c_uint32(KERNEL_KEY)
    # kernelParams contains one pointer per kernel argument, to its value.
    params = (ctypes.c_void_p * 3)(
        ctypes.addressof(data), ctypes.addressof(count), ctypes.addressof(key)
    )
    blocks = (words + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK
    driver.call(
        "kernel",
        "cuLaunchKernel",
        function,
        blocks,
        1,
        1,
        THREADS_PER_BLOCK,
        1,
        1,
        0,
        None,
        ctypes.cast(params, c_ptr_p),
        None,
    )
    driver.call("kernel", "cuCtxSynchronize")


def measure_bandwidth(
    driver: Driver,
    pinned: ctypes.c_void_p,
    pointer: Any,
    size: int,
    out: dict[str, Any],
) -> None:
    """Record the best of a few pinned copies in each direction, in GiB/s."""
    for direction, function, args in (
        ("host_to_device", "cuMemcpyHtoD_v2", (pointer, pinned, size)),
        ("device_to_host", "cuMemcpyDtoH_v2", (pinned, pointer, size)),
    ):
        best = float("inf")
        for _ in range(BANDWIDTH_REPEATS):
            started = time.perf_counter()
            driver.call("bandwidth", function, *args)
            best = min(best, time.perf_counter() - started)
        out[f"{direction}_gib_s"] = size / (1 << 30) / max(best, 1e-9)
    out["bandwidth_bytes"] = size


def main(argv: list[str]) -> int:
    # The text may run through exec() with no module docstring, so the
    # description is spelled out here.
    parser = argparse.ArgumentParser(description="Run a CUDA smoke test.")
    parser.add_argument("--device", type=int, default=0)
    parser.add_argument("--alloc-mib", type=int, default=256)
    parser.add_argument("--libcuda", default="")
    arguments = parser.parse_args(argv)

    candidates = [arguments.libcuda] if arguments.libcuda else list(LIBCUDA_CANDIDATES)
    out: dict[str, Any] = {
        "format": SMOKE_FORMAT,
        "ok": False,
        "device_index": arguments.device,
        "requested_bytes": arguments.alloc_mib << 20,
        "failed_step": "",
        "error_code": None,
        "error": "",
        "steps": [],
    }
    driver: Driver | None = None
    try:
        library, path = load_driver(candidates)
        out["library"] = path
        driver = Driver(library)
        run_smoke(driver, arguments.device, arguments.alloc_mib << 20, out)
        out["ok"] = True
    except SmokeFailure as exc:
        out["failed_step"] = exc.step
        out["error_code"] = exc.code
        out["error"] = exc.detail
    except MemoryError:
        out["failed_step"] = "host memory"
        out["error"] = "the host could not allocate the pattern buffers"
    if driver is not None:
        out["steps"] = driver.steps
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
