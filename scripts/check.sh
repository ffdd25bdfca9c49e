#!/usr/bin/env bash
# The code-quality gate (CI runs it before the tests): ruff's rules and mypy on the package,
# and no import cycle between shmi_spark's modules. Rules and settings: pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check shmi_spark
.venv/bin/mypy
.venv/bin/python scripts/import_graph.py --check
