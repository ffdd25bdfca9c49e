#!/usr/bin/env bash
# Install (if needed) and run the whole SHMI job. With no arguments: the embedded
# default synthetic world, outputs in out/run/. Arguments go to `shmi run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PYSPARK_PYTHON="$PWD/.venv/bin/python" PYSPARK_DRIVER_PYTHON="$PWD/.venv/bin/python"
exec .venv/bin/shmi run "$@"
