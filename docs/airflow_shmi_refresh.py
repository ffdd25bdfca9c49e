"""Example Airflow DAG: the monthly SHMI refresh (docs/schedule.md).

An example to adapt, not part of the package: nothing imports it and Airflow
is not a dependency of shmi-spark.  Copy it into the DAGs folder of an Airflow
(2.4+ or 3) with ``apache-airflow-providers-apache-spark`` installed, and set
the paths below (or the environment variables they are read from).

One task a month, on the 15th at 02:00 UTC, refreshing the previous month:

    shmi refresh --as-of <previous month> --input INPUT --out ROOT --quiet

run on the cluster with spark-submit through ``jobs/shmi.py`` (the `shmi`
command's arguments, exit code passed on).  Two ways, pick one with
``USE_SUBMIT_SH``:

* ``SparkSubmitOperator`` (default): Airflow's Spark connection ``shmi_spark``
  holds the master and the deploy mode, e.g.
  ``AIRFLOW_CONN_SHMI_SPARK='spark://yarn?deploy-mode=client'`` (host ``yarn``,
  or ``spark://head`` with port 7077).  It ships what ``scripts/submit.sh``
  builds: the package zip (``--py-files``) and, for a cluster, the packed
  Python environment (``--archives ...#environment``).  Build them at deploy
  time (``scripts/submit.sh --dry-run --master yarn -- run`` prints their
  paths: ``build/submit/lib-<hash>/shmi_spark.zip`` and
  ``build/submit/env-<hash>/env.tar.gz``) and copy them to ``dist/`` (or point
  ``SHMI_LIB_ZIP`` and ``SHMI_ENV_ARCHIVE`` at them).
* ``BashOperator`` calling ``scripts/submit.sh``, which builds (or reuses) those
  artefacts itself and sets the same options.

The deploy mode must be **client**, with the refresh root ``SHMI_ROOT`` on a
file system the Airflow worker (the driver) and every executor mount at the
same path: a refresh root is a local folder (``latest`` is a symlink, the index
is replaced by an atomic rename; see docs/schedule.md).

With inputs on a Hadoop URI (as below) each refresh builds its spell table
(a URI's files cannot be fingerprinted before Spark starts); with local inputs
a month of an unchanged extract reuses it.

``max_active_runs=1``: one refresh at a time (the refresh's own root lock
would fail a second one with exit 2 anyway).  A failed run alerts and leaves
what was published untouched; fix the cause and clear the task to re-run it.
To backfill or roll back a month, trigger the DAG with a configuration
``{"as_of": "2010-03"}``.
"""

from __future__ import annotations

import datetime as dt
import os

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG, Param
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.models import Param
    from airflow.operators.bash import BashOperator
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.timetables.trigger import CronTriggerTimetable

USE_SUBMIT_SH = False

# Deployment settings: the Airflow worker's environment, else these defaults (read when the DAG is parsed;
# nothing here touches Airflow's database)
SHMI_HOME = os.environ.get("SHMI_HOME", "/opt/shmi-spark")                        # the deployed checkout
SHMI_PYTHON = os.environ.get("SHMI_PYTHON", f"{SHMI_HOME}/.venv/bin/python")      # the driver's Python
SHMI_PROFILE = os.environ.get("SHMI_CONF", f"{SHMI_HOME}/conf/cluster.toml")      # the run profile
SHMI_INPUT = os.environ.get("SHMI_INPUT", "hdfs:///data/shmi/hes/current")        # hes_apc/, ons_deaths/, reference/
SHMI_ROOT = os.environ.get("SHMI_ROOT", "/mnt/shared/shmi")                       # the refresh root (a shared mount)
SHMI_LIB_ZIP = os.environ.get("SHMI_LIB_ZIP", f"{SHMI_HOME}/dist/shmi_spark.zip")  # copied from build/submit/lib-*/
SHMI_ENV_ARCHIVE = os.environ.get("SHMI_ENV_ARCHIVE", f"{SHMI_HOME}/dist/env.tar.gz")  # from build/submit/env-*/

# The month to publish: the "as_of" of the trigger's configuration, else the month before the run's date
# (the timetable below makes logical_date the day the run is due, in Airflow 2 and 3 alike).
AS_OF = ("{{ params.as_of or (logical_date.replace(day=1) - macros.timedelta(days=1)).strftime('%Y-%m') }}")

REFRESH_ARGS = ["refresh", "--as-of", AS_OF, "--input", SHMI_INPUT, "--out", SHMI_ROOT, "--quiet"]

with DAG(
    dag_id="shmi_refresh",
    description="Monthly SHMI: publish the 12-month period ending last month (docs/schedule.md)",
    schedule=CronTriggerTimetable("0 2 15 * *", timezone="UTC"),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    params={"as_of": Param("", type="string", description="YYYY-MM to publish; empty: the previous month")},
    default_args={"owner": "shmi", "retries": 1, "retry_delay": dt.timedelta(hours=1),
                  "execution_timeout": dt.timedelta(hours=12)},
    tags=["shmi"],
) as dag:
    if USE_SUBMIT_SH:
        refresh = BashOperator(
            task_id="refresh",
            cwd=SHMI_HOME,
            bash_command=(
                "scripts/submit.sh --deploy-mode client --conf " + SHMI_PROFILE
                + " -- " + " ".join(REFRESH_ARGS)
            ),
            env={"SPARK_MASTER": "yarn", "SHMI_PYTHON": SHMI_PYTHON, "SHMI_NUM_EXECUTORS": "12",
                 "SHMI_EXECUTOR_CORES": "4", "SHMI_EXECUTOR_MEMORY": "12g", "SHMI_DRIVER_MEMORY": "8g"},
            append_env=True,
        )
    else:
        refresh = SparkSubmitOperator(
            task_id="refresh",
            conn_id="shmi_spark",
            name="shmi-refresh",
            application=f"{SHMI_HOME}/jobs/shmi.py",
            py_files=SHMI_LIB_ZIP,
            archives=f"{SHMI_ENV_ARCHIVE}#environment",
            files=SHMI_PROFILE,
            conf={
                "spark.pyspark.python": "./environment/bin/python",   # the executors' Python: the shipped env
                "spark.pyspark.driver.python": SHMI_PYTHON,           # the driver's (client mode: this host)
            },
            num_executors=12,
            executor_cores=4,
            executor_memory="12g",
            driver_memory="8g",
            # the `shmi` arguments; the profile after the sub-command (client mode: its local path)
            application_args=[REFRESH_ARGS[0], "--conf", SHMI_PROFILE, *REFRESH_ARGS[1:]],
            verbose=False,
        )
