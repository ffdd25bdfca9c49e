#!/usr/bin/env bash
# Install (if needed) and run the test suite with local[2].
#   bash scripts/test.sh           the whole suite (what CI runs)
#   bash scripts/test.sh --fast    every rule test, without the whole-pipeline tests and the
#                                  bad-input corpus (the tests marked slow): the quick loop
# Other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PYSPARK_PYTHON="$PWD/.venv/bin/python" PYSPARK_DRIVER_PYTHON="$PWD/.venv/bin/python" SPARK_TESTING=1
args=()
for a in "$@"; do
  if [ "$a" = "--fast" ]; then args+=(-m "not slow"); else args+=("$a"); fi
done
exec .venv/bin/python -m pytest "${args[@]}"
