#!/usr/bin/env bash
# Create .venv with Python 3.11 and install shmi-spark with its test tools.
# Checks for Java 17+ (Spark 4 needs it) and says clearly if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for c in python3.11 python3; do
    if command -v "$c" >/dev/null 2>&1; then PY=$c; break; fi
  done
fi
[ -n "$PY" ] || { echo "setup: Python 3.11 is needed (python3.11 or python3 on PATH)" >&2; exit 2; }
"$PY" - <<'PYEOF' || { echo "setup: Python 3.11 or 3.12 is needed; $PY is $("$PY" --version 2>&1)" >&2; exit 2; }
import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] <= (3, 12) else 1)
PYEOF

if ! command -v java >/dev/null 2>&1 && [ -z "${JAVA_HOME:-}" ]; then
  echo "setup: Java 17 is needed by Spark 4 and was not found (no 'java' on PATH, JAVA_HOME unset)." >&2
  echo "       Install it, e.g. 'apt-get install openjdk-17-jre-headless', then run this again." >&2
  exit 2
fi
JAVA_BIN=${JAVA_HOME:+$JAVA_HOME/bin/}java
jv=$("$JAVA_BIN" -version 2>&1 | awk -F'"' '/version/ {print $2}' | cut -d. -f1)
if [ -z "$jv" ] || [ "$jv" -lt 17 ]; then
  echo "setup: Spark 4 needs Java 17 or newer; found '$("$JAVA_BIN" -version 2>&1 | head -1)'." >&2
  exit 2
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[test]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
