#!/usr/bin/env bash
# Run any `shmi` command on a cluster with spark-submit (docs/cluster.md has an example per cluster manager).
#
#   scripts/submit.sh [--master URL] [--deploy-mode client|cluster] [--conf FILE.toml] [--dry-run]
#                     [other spark-submit options] -- SHMI_ARGS
#
#   scripts/submit.sh --master spark://head:7077 --conf conf/cluster.toml -- run --input W --out O --five-year
#   scripts/submit.sh --master yarn --deploy-mode client -- refresh --as-of 2010-03 --input W --out /srv/shmi
#
# SHMI_ARGS are exactly the arguments of the `shmi` command; they run through jobs/shmi.py.
#
# Options (before `--`):
#   --master URL          local[*], spark://HOST:7077, yarn, k8s://https://HOST:443 (default: $SPARK_MASTER,
#                         else spark-submit's default, local[*])
#   --deploy-mode MODE    client (the driver runs here; default) or cluster (the driver runs on the cluster:
#                         YARN and Kubernetes; a standalone cluster cannot run a Python driver)
#   --conf FILE.toml      the run profile (default: $SHMI_CONF, else conf/cluster.toml). It is shipped with
#                         --files and given to shmi as --conf (its local path in client mode, its name in the
#                         driver's working folder in cluster mode). `--conf KEY=VALUE` (with '=') is
#                         spark-submit's own option and is passed on, and wins over the profile's
#                         `[spark.extra]` setting of the same key.
#   --dry-run             print the spark-submit command line and exit 0 (nothing is built or run)
#   anything else         passed to spark-submit as it is, after the options below (so it wins), e.g.
#                         --num-executors 12 --executor-memory 12g --conf spark.eventLog.enabled=true
#
# Environment:
#   SPARK_HOME            the Spark whose bin/spark-submit is used (default: the pyspark package in .venv)
#   SPARK_MASTER          default master
#   SHMI_CONF             default run profile
#   SHMI_DEPLOY_MODE      default deploy mode (client)
#   SHMI_NUM_EXECUTORS    executors (--num-executors on YARN and Kubernetes; on a standalone cluster with
#                         SHMI_EXECUTOR_CORES, --total-executor-cores NUM*CORES)
#   SHMI_EXECUTOR_CORES   cores per executor (--executor-cores)
#   SHMI_EXECUTOR_MEMORY  memory per executor (--executor-memory, e.g. 12g)
#   SHMI_DRIVER_MEMORY    driver memory (--driver-memory, e.g. 8g)
#   SHMI_PYTHON           the local Python (the driver's in client mode; it builds the artefacts):
#                         default .venv/bin/python
#   SHMI_PYTHON_PREFIX    where Python lives on the cluster's nodes, if not where it lives here (venv-pack's
#                         --python-prefix: the packed environment links to the nodes' python3.11)
#   SHMI_BUILD_DIR        where the artefacts are built (default build/submit/)
#
# What executors need is built once and reused while the sources and dependencies are unchanged
# (scripts/submit_build.py): build/submit/lib-<hash>/shmi_spark.zip (the package: --py-files) and, for a
# cluster, build/submit/env-<hash>/env.tar.gz (a venv-pack archive of the third-party packages pinned to
# the local versions: --archives ...#environment, run as ./environment/bin/python on the executors).
# On a local[...] master there are no executors: the local Python runs everything and no archive is built.
#
# Exit code: shmi's (0, 2 bad input or usage, 130 interrupted, 1 internal failure), or spark-submit's own.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
die() { echo "submit: $*" >&2; exit 2; }

master=${SPARK_MASTER:-}
deploy_mode=${SHMI_DEPLOY_MODE:-client}
profile=${SHMI_CONF:-$ROOT/conf/cluster.toml}
dry_run=0
passthrough=()
shmi_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --) shift; shmi_args=("$@"); break ;;
    --master) [ $# -ge 2 ] || die "--master needs a URL"; master=$2; shift 2 ;;
    --master=*) master=${1#*=}; shift ;;
    --deploy-mode) [ $# -ge 2 ] || die "--deploy-mode needs client or cluster"; deploy_mode=$2; shift 2 ;;
    --deploy-mode=*) deploy_mode=${1#*=}; shift ;;
    --conf|-c)
      [ $# -ge 2 ] || die "$1 needs FILE.toml (or KEY=VALUE for spark-submit)"
      if [[ $2 == *=* ]]; then passthrough+=("$1" "$2"); else profile=$2; fi
      shift 2 ;;
    --conf=*) v=${1#*=}; if [[ $v == *=* ]]; then passthrough+=("--conf" "$v"); else profile=$v; fi; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) passthrough+=("$1"); shift ;;
  esac
done
[ ${#shmi_args[@]} -gt 0 ] || die "no shmi command: give it after '--', e.g. -- run --input DIR --out DIR"
case $deploy_mode in client|cluster) ;; *) die "--deploy-mode must be client or cluster, got '$deploy_mode'" ;; esac
[ -f "$profile" ] || die "run profile not found: $profile"
profile=$(cd "$(dirname "$profile")" && pwd)/$(basename "$profile")
for a in "${shmi_args[@]}"; do
  case $a in --conf|--conf=*) die "give the run profile to submit.sh (--conf FILE.toml before '--'), not to shmi" ;; esac
done

python=${SHMI_PYTHON:-$ROOT/.venv/bin/python}
[ -x "$python" ] || die "no local Python at $python: run scripts/setup.sh (or set SHMI_PYTHON)"
if [ -n "${SPARK_HOME:-}" ]; then
  submit=$SPARK_HOME/bin/spark-submit
else
  submit=$("$python" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "bin", "spark-submit"))')
fi
[ -x "$submit" ] || die "spark-submit not found at $submit (set SPARK_HOME)"

local_master=0
case $master in ""|local|local\[*) local_master=1 ;; esac
[ $local_master = 1 ] && [ "$deploy_mode" = cluster ] && die "a local master runs the driver here: use --deploy-mode client"
case $master in spark://*) [ "$deploy_mode" = cluster ] && \
  die "a standalone cluster cannot run a Python driver in cluster mode: use --deploy-mode client" ;; esac

build=(--build-dir "${SHMI_BUILD_DIR:-$ROOT/build/submit}")
[ $local_master = 1 ] && build+=(--no-env)
[ $dry_run = 1 ] && build+=(--dry-run)
LIB_ZIP='' ENV_ARCHIVE=''
built=$("$python" "$ROOT/scripts/submit_build.py" "${build[@]}") || exit $?
eval "$built"

# the shmi arguments: the profile after the sub-command (`synth` and `band` take none)
shmi=("${shmi_args[0]}")
case ${shmi_args[0]} in
  synth|band|-*) ;;
  *) if [ "$deploy_mode" = cluster ]; then shmi+=(--conf "$(basename "$profile")"); else shmi+=(--conf "$profile"); fi ;;
esac
shmi+=("${shmi_args[@]:1}")

cmd=("$submit")
[ -n "$master" ] && cmd+=(--master "$master")
cmd+=(--deploy-mode "$deploy_mode" --name "shmi-${shmi_args[0]}")
[ -n "${SHMI_DRIVER_MEMORY:-}" ] && cmd+=(--driver-memory "$SHMI_DRIVER_MEMORY")
if [ $local_master = 0 ]; then
  [ -n "${SHMI_EXECUTOR_MEMORY:-}" ] && cmd+=(--executor-memory "$SHMI_EXECUTOR_MEMORY")
  [ -n "${SHMI_EXECUTOR_CORES:-}" ] && cmd+=(--executor-cores "$SHMI_EXECUTOR_CORES")
  if [ -n "${SHMI_NUM_EXECUTORS:-}" ]; then
    case $master in
      spark://*) [ -n "${SHMI_EXECUTOR_CORES:-}" ] || die "on a standalone cluster SHMI_NUM_EXECUTORS needs SHMI_EXECUTOR_CORES"
                 cmd+=(--total-executor-cores "$((SHMI_NUM_EXECUTORS * SHMI_EXECUTOR_CORES))") ;;
      *) cmd+=(--num-executors "$SHMI_NUM_EXECUTORS") ;;
    esac
  fi
  cmd+=(--archives "$ENV_ARCHIVE#environment" --conf spark.pyspark.python=./environment/bin/python)
  if [ "$deploy_mode" = client ]; then
    cmd+=(--conf "spark.pyspark.driver.python=$python")
  else  # YARN's application master takes its Python from its own environment
    cmd+=(--conf spark.yarn.appMasterEnv.PYSPARK_PYTHON=./environment/bin/python)
  fi
else
  cmd+=(--conf "spark.pyspark.python=$python" --conf "spark.pyspark.driver.python=$python")
fi
cmd+=(--py-files "$LIB_ZIP" --files "$profile")
cmd+=(${passthrough[@]+"${passthrough[@]}"})
cmd+=("$ROOT/jobs/shmi.py" "${shmi[@]}")

if [ $dry_run = 1 ]; then
  printf '%q ' "${cmd[@]}" | sed 's/ $//'
  echo
  exit 0
fi
exec "${cmd[@]}"
