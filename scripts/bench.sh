#!/usr/bin/env bash
# The benchmark of issue 13: the whole five-year run from raw HES on synthetic worlds of each size.
#   bash scripts/bench.sh [--sizes 1000000,4000000,16000000,36500000] [--driver-memory 8g]
#                         [--bench-dir bench] [--small 100000] [--no-run-sh] [--smoke]
#                         [extra `shmi run` arguments...]
# Generates (once) bench/world_N, runs `shmi run --input bench/world_N --five-year` into
# bench/run_N, measures stages, peak memory of the process tree, shuffle and spill (Spark's
# event log) and the scaling exponent; also the 60,000-patient world and scripts/run.sh's
# default. Writes bench/results.json and prints a Markdown table (scripts/bench.py has the
# details). --smoke: two tiny worlds, a couple of minutes (what tests/test_bench.py runs).
# Worlds and runs go under bench/ (not committed). Quote figures with the machine they came from.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PYSPARK_PYTHON="$PWD/.venv/bin/python" PYSPARK_DRIVER_PYTHON="$PWD/.venv/bin/python"
exec .venv/bin/python scripts/bench.py "$@"
