/*
 * Stand-in for libcuda.so.1, for machines without an NVIDIA GPU.
 *
 * It exports the CUDA driver API entry points that cuda_smoke.py calls, with
 * the signatures of cuda.h, and does the work on host memory: "device"
 * pointers are malloc'ed, and cuLaunchKernel computes on the CPU what the
 * smoke test's PTX kernel computes. So the ctypes marshalling, the pattern
 * round trip and the kernel check of the real script run unchanged.
 *
 * Faults are injected through environment variables:
 *   STACKCHECK_FAKE_CUDA_FAIL=NAME=CODE  entry point NAME returns CUresult CODE
 *   STACKCHECK_FAKE_CUDA_CORRUPT=1       cuMemcpyDtoH flips one byte
 *   STACKCHECK_FAKE_CUDA_HANG=NAME       entry point NAME never returns
 *   STACKCHECK_FAKE_CUDA_IDLE_KERNEL=1   cuLaunchKernel succeeds but writes nothing
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int CUresult;
typedef uint64_t CUdeviceptr;

static const char KERNEL_NAME[] = "stackcheck_xor";
static int module_token;
static int function_token;
static int context_token;

static CUresult injected(const char *name)
{
    const char *hang = getenv("STACKCHECK_FAKE_CUDA_HANG");
    if (hang != NULL && strcmp(hang, name) == 0) {
        for (;;) {
            pause();
        }
    }
    const char *fail = getenv("STACKCHECK_FAKE_CUDA_FAIL");
    size_t length = strlen(name);
    if (fail != NULL && strncmp(fail, name, length) == 0 && fail[length] == '=') {
        return atoi(fail + length + 1);
    }
    return 0;
}

#define INJECT(name)                       \
    do {                                   \
        CUresult code_ = injected(name);   \
        if (code_ != 0) {                  \
            return code_;                  \
        }                                  \
    } while (0)

CUresult cuInit(unsigned int flags)
{
    INJECT("cuInit");
    return flags == 0 ? 0 : 1;
}

CUresult cuDriverGetVersion(int *version)
{
    INJECT("cuDriverGetVersion");
    *version = 12040;
    return 0;
}

CUresult cuDeviceGet(int *device, int ordinal)
{
    INJECT("cuDeviceGet");
    if (ordinal != 0) {
        return 101; /* CUDA_ERROR_INVALID_DEVICE */
    }
    *device = 0;
    return 0;
}

CUresult cuDeviceGetName(char *name, int length, int device)
{
    INJECT("cuDeviceGetName");
    (void)device;
    strncpy(name, "NVIDIA GeForce RTX 4080 (stand-in)", (size_t)length - 1);
    name[length - 1] = '\0';
    return 0;
}

CUresult cuCtxCreate_v2(void **context, unsigned int flags, int device)
{
    INJECT("cuCtxCreate_v2");
    (void)flags;
    (void)device;
    *context = &context_token;
    return 0;
}

CUresult cuCtxDestroy_v2(void *context)
{
    return context == &context_token ? 0 : 201; /* CUDA_ERROR_INVALID_CONTEXT */
}

CUresult cuCtxSynchronize(void)
{
    INJECT("cuCtxSynchronize");
    return 0;
}

CUresult cuMemAlloc_v2(CUdeviceptr *pointer, size_t size)
{
    INJECT("cuMemAlloc_v2");
    void *memory = malloc(size);
    if (memory == NULL) {
        return 2; /* CUDA_ERROR_OUT_OF_MEMORY */
    }
    *pointer = (CUdeviceptr)(uintptr_t)memory;
    return 0;
}

CUresult cuMemFree_v2(CUdeviceptr pointer)
{
    free((void *)(uintptr_t)pointer);
    return 0;
}

CUresult cuMemAllocHost_v2(void **pointer, size_t size)
{
    INJECT("cuMemAllocHost_v2");
    *pointer = malloc(size);
    return *pointer == NULL ? 2 : 0;
}

CUresult cuMemFreeHost(void *pointer)
{
    free(pointer);
    return 0;
}

CUresult cuMemcpyHtoD_v2(CUdeviceptr target, const void *source, size_t size)
{
    INJECT("cuMemcpyHtoD_v2");
    memcpy((void *)(uintptr_t)target, source, size);
    return 0;
}

CUresult cuMemcpyDtoH_v2(void *target, CUdeviceptr source, size_t size)
{
    INJECT("cuMemcpyDtoH_v2");
    memcpy(target, (const void *)(uintptr_t)source, size);
    const char *corrupt = getenv("STACKCHECK_FAKE_CUDA_CORRUPT");
    if (corrupt != NULL && strcmp(corrupt, "1") == 0 && size > 4096) {
        ((unsigned char *)target)[4096] ^= 0x01;
    }
    return 0;
}

CUresult cuModuleLoadData(void **module, const void *image)
{
    INJECT("cuModuleLoadData");
    if (strstr((const char *)image, ".entry stackcheck_xor(") == NULL) {
        return 218; /* CUDA_ERROR_INVALID_PTX */
    }
    *module = &module_token;
    return 0;
}

CUresult cuModuleUnload(void *module)
{
    return module == &module_token ? 0 : 400; /* CUDA_ERROR_INVALID_HANDLE */
}

CUresult cuModuleGetFunction(void **function, void *module, const char *name)
{
    INJECT("cuModuleGetFunction");
    if (module != &module_token || strcmp(name, KERNEL_NAME) != 0) {
        return 500; /* CUDA_ERROR_NOT_FOUND */
    }
    *function = &function_token;
    return 0;
}

CUresult cuLaunchKernel(void *function, unsigned int grid_x, unsigned int grid_y,
                        unsigned int grid_z, unsigned int block_x,
                        unsigned int block_y, unsigned int block_z,
                        unsigned int shared_bytes, void *stream, void **params,
                        void **extra)
{
    INJECT("cuLaunchKernel");
    (void)shared_bytes;
    (void)stream;
    (void)extra;
    if (function != &function_token || params == NULL) {
        return 400;
    }
    const char *idle = getenv("STACKCHECK_FAKE_CUDA_IDLE_KERNEL");
    if (idle != NULL && strcmp(idle, "1") == 0) {
        return 0;
    }
    uint32_t *data = (uint32_t *)(uintptr_t)(*(CUdeviceptr *)params[0]);
    uint32_t count = *(uint32_t *)params[1];
    uint32_t key = *(uint32_t *)params[2];
    uint64_t threads = (uint64_t)grid_x * grid_y * grid_z * block_x * block_y * block_z;
    for (uint64_t index = 0; index < threads && index < count; index++) {
        data[index] = (data[index] ^ key) + (uint32_t)index;
    }
    return 0;
}

static const char *name_of(CUresult code)
{
    switch (code) {
    case 0: return "CUDA_SUCCESS";
    case 1: return "CUDA_ERROR_INVALID_VALUE";
    case 2: return "CUDA_ERROR_OUT_OF_MEMORY";
    case 3: return "CUDA_ERROR_NOT_INITIALIZED";
    case 100: return "CUDA_ERROR_NO_DEVICE";
    case 101: return "CUDA_ERROR_INVALID_DEVICE";
    case 218: return "CUDA_ERROR_INVALID_PTX";
    case 500: return "CUDA_ERROR_NOT_FOUND";
    case 999: return "CUDA_ERROR_UNKNOWN";
    default: return NULL;
    }
}

CUresult cuGetErrorName(CUresult code, const char **name)
{
    *name = name_of(code);
    return *name == NULL ? 1 : 0;
}

CUresult cuGetErrorString(CUresult code, const char **text)
{
    *text = code == 999 ? "unknown error" : name_of(code);
    return *text == NULL ? 1 : 0;
}
