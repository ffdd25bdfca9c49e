#!/usr/bin/env bash
# The cluster test alone: a Spark standalone master and two workers on 127.0.0.1 (from the installed
# pyspark), the whole pipeline submitted to them through scripts/submit.sh and compared with a
# local[2] run, then a run that loses a worker mid-way (tests/test_cluster.py; a few minutes).
# It is also part of the whole suite (scripts/test.sh). Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PYSPARK_PYTHON="$PWD/.venv/bin/python" PYSPARK_DRIVER_PYTHON="$PWD/.venv/bin/python" SPARK_TESTING=1
exec .venv/bin/python -m pytest tests/test_cluster.py "$@"
