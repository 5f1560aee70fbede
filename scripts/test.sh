#!/usr/bin/env bash
# Set up this machine, then lint, type-check and run the plugin's own tests
# (unit tests, and integration tests against real local servers).
set -euo pipefail

cd "$(dirname "$0")/.."
bash scripts/setup.sh

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/pytest tests -p no:cacheprovider -n 2 "$@"
