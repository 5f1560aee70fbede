#!/usr/bin/env bash
# Set up this machine, start the embedded local stack, run every acceptance
# gate against it and write the sign-off report into gate-report/.
set -euo pipefail

cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/pytest --stack=local --gate-report=gate-report "$@"
