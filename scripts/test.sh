#!/usr/bin/env bash
# Install (if needed) and run the whole test suite with local[2].
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PYSPARK_PYTHON="$PWD/.venv/bin/python" PYSPARK_DRIVER_PYTHON="$PWD/.venv/bin/python" SPARK_TESTING=1
exec .venv/bin/python -m pytest "$@"
