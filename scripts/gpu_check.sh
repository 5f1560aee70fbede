#!/usr/bin/env bash
# Run the gpu gate once on a machine that has an NVIDIA GPU, and print the
# evidence: nvidia-smi, the raw probe and CUDA smoke reports, and the gate
# report of the gpu suite run against a profile written for this device.
#
# Usage: bash scripts/gpu_check.sh [OUTPUT_DIR]
#   OUTPUT_DIR defaults to $OUT if set, else ./gpu-check-output.
# Environment (optional):
#   GPU_MODEL        expected model (default: the name NVML reports for GPU 0)
#   GPU_MIN_DRIVER   lowest acceptable driver version (default: none)
#   GPU_MIN_CUDA     lowest acceptable CUDA version (default: none)
#   GPU_ALLOC_MIB    smoke test allocation in MiB (default: 256)
#
# It needs no network when .venv already contains the plugin with its gpu
# extra; otherwise it creates .venv and installs '.[gpu,dev]' with pip.
set -euo pipefail

cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu-check-output}}"
mkdir -p "$out"

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
    .venv/bin/python -m pip install -q -e '.[gpu,dev]'
fi
python=.venv/bin/python

echo "== nvidia-smi"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi | tee "$out/nvidia-smi.txt" || true
else
    echo "nvidia-smi is not installed" | tee "$out/nvidia-smi.txt"
fi

echo "== NVML probe (fresh process)"
"$python" pytest_stackcheck/gpu/probe_script.py | tee "$out/probe.json"

echo "== CUDA smoke test on GPU 0"
"$python" pytest_stackcheck/gpu/cuda_smoke.py --alloc-mib "${GPU_ALLOC_MIB:-256}" \
    | tee "$out/cuda-smoke.json"

model="${GPU_MODEL:-$("$python" - "$out/probe.json" <<'PY'
import json
import sys

with open(sys.argv[1], encoding="utf-8") as handle:
    devices = json.load(handle)["nvml"]["devices"]
print(devices[0].get("name") or "" if devices else "")
PY
)}"

profile="$out/gpu-host.toml"
cat >"$profile" <<TOML
# Written by scripts/gpu_check.sh for this machine's GPU.
[stack]
name = "gpu-check"
provisioner = "existing"

[policy]
blocking_gates = ["gpu"]

[postgres]
databases = ["none"]

[nats]

[nginx]
routes = [{ prefix = "/", service = "none" }]

[services.none]
port = 1

[gpu]
required = true
model = "${model}"
min_driver = "${GPU_MIN_DRIVER:-}"
min_cuda = "${GPU_MIN_CUDA:-}"
smoke_alloc_mib = ${GPU_ALLOC_MIB:-256}
TOML
echo "== profile"
cat "$profile"

echo "== gpu suite"
status=0
"$python" -m pytest suites/gpu -p no:cacheprovider -m gpu -rA -v \
    --stack-file "$profile" --gate-report "$out/report" || status=$?

echo "== gate report"
cat "$out/report/signoff.md" 2>/dev/null || echo "no sign-off was written"
echo "gpu suite exit status: $status"
exit "$status"
