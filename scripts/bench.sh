#!/usr/bin/env bash
# Benchmark: generate (once) a synthetic world of N admissions and time the whole run.
#   bash scripts/bench.sh [N=1000000] [extra `shmi run` arguments...]
# Prints the machine, `shmi synth` time, and each stage's seconds from the run's summary.json.
# Worlds and runs go under bench/ (not committed). Quote figures with the machine they came from.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}; shift || true
bash scripts/setup.sh
export PYSPARK_PYTHON="$PWD/.venv/bin/python" PYSPARK_DRIVER_PYTHON="$PWD/.venv/bin/python"
world=bench/world_$N run=bench/run_$N
mkdir -p bench
timed() {  # timed LABEL CMD...: wall seconds and peak RSS where GNU time is installed
  local label=$1; shift
  if [ -x /usr/bin/time ]; then /usr/bin/time -f "$label: %e s wall, %M KB peak RSS" "$@"
  else local t0=$SECONDS; "$@"; echo "$label: $((SECONDS - t0)) s wall"; fi
}
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GB, $(uname -m), load $(cut -d' ' -f1-3 /proc/loadavg)"
if [ ! -f "$world/truth/summary.json" ]; then
  timed synth .venv/bin/shmi synth --out "$world" --admissions "$N" --seed 1
fi
timed "run (driver)" .venv/bin/shmi run --input "$world" --out "$run" --quiet "$@"
.venv/bin/python - "$run/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"{'stage':<14}{'rows in':>14}{'rows out':>12}{'seconds':>10}")
for st in s["stages"]:
    fmt = lambda v: "-" if v is None else f"{v:,}"
    print(f"{st['stage']:<14}{fmt(st['rows_in']):>14}{fmt(st['rows_out']):>12}{st['seconds']:>10.1f}")
print(f"total {s['seconds_total']} s")
PY
