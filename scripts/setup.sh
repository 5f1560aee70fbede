#!/usr/bin/env bash
# Install everything pytest-stackcheck needs on a fresh Debian 12 machine:
# PostgreSQL, nginx, a virtual environment in .venv with the plugin, its
# local-stack extras (supervisord, nats-server), the NVML bindings, the
# load extra (locust) and its development tools. gcc builds the libcuda
# stand-in of the GPU tests; the monitoring tests run a real Prometheus,
# and the tests of the remote host checks start an sshd of their own on
# loopback.
# Runs as root or through sudo; safe to run again.
set -euo pipefail

cd "$(dirname "$0")/.."

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
    sudo_cmd=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    postgresql postgresql-contrib nginx-light python3 python3-venv \
    ca-certificates gcc libc6-dev openssh-client openssh-server prometheus \
    >/dev/null

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[local,gpu,load,chaos,dev]'
