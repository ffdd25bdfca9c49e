"""The one SparkSession factory.

Local mode (an analyst's laptop, the tests) is sized from ``[spark]`` of the
config: master, driver memory, shuffle partitions, Arrow on, UI off unless
asked.  Under ``spark-submit`` the master and resources come from the
submitter, so nothing that would override them is set: only the application
name, the session time zone (UTC, for deterministic dates) and ``extra``.
"""

from __future__ import annotations

import os
import sys

from shmi_spark.config import SparkConfig
from shmi_spark.data import packaged_file

__all__ = ["build_session", "under_spark_submit"]

#: Spark's JVM logging in local mode (packaged with shmi_spark.data): errors only, on the
#: console, or everything from WARN up into the run's log file.
LOG4J_CONSOLE = "log4j2-console.properties"
LOG4J_FILE = "log4j2-file.properties"

# Settings that make results deterministic and match the method, in any mode.
_ALWAYS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.ansi.enabled": "true",
    "spark.scheduler.mode": "FAIR",
    # parse every field of a delimited line, so a short or long line is always a malformed
    # record (rejected as MALFORMED_LINE) whichever columns a query happens to need
    "spark.sql.csv.parser.columnPruning.enabled": "false",
    # pandas writes dates as parquet TIMESTAMP(NANOS), which Spark cannot read as timestamps:
    # read them as their 64-bit count of nanoseconds; the input contract turns them into dates
    "spark.sql.legacy.parquet.nanosAsLong": "true",
}


def under_spark_submit() -> bool:
    """True when this Python driver was started by spark-submit."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_session(conf: SparkConfig, *, testing: bool = False, log_file: str | None = None):
    """Return a SparkSession for ``conf``.

    ``log_file``: in local mode, the JVM's log goes to this file instead of the
    console (see :mod:`shmi_spark.io.runlog`).

    >>> from shmi_spark.config import SparkConfig
    >>> spark = build_session(SparkConfig(), testing=True)  # doctest: +SKIP
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(conf.app_name)
    settings = dict(_ALWAYS)
    if not under_spark_submit():
        settings.update({
            "spark.master": conf.master,
            "spark.driver.memory": conf.driver_memory,
            "spark.sql.shuffle.partitions": str(conf.shuffle_partitions),
            "spark.default.parallelism": str(conf.shuffle_partitions),
            "spark.ui.enabled": "true" if (conf.ui and not testing) else "false",
            "spark.ui.showConsoleProgress": "true" if (conf.console_progress and not testing) else "false",
            "spark.sql.adaptive.enabled": "true",
            "spark.driver.extraJavaOptions": (
                f"-Dlog4j2.configurationFile={packaged_file(LOG4J_FILE).as_uri()} -Dshmi.log.file=\"{log_file}\""
                if log_file else f"-Dlog4j2.configurationFile={packaged_file(LOG4J_CONSOLE).as_uri()}"),
        })
        if conf.local_dir:
            settings["spark.local.dir"] = conf.local_dir
    settings.update(conf.extra)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(conf.log_level)
    return spark
