"""The one SparkSession factory.

Local mode (an analyst's laptop, the tests) is sized from ``[spark]`` of the
config: master, driver memory, shuffle partitions, Arrow on, UI off unless
asked.  Under ``spark-submit`` the master and resources come from the
submitter, so nothing that would override them is set: only the application
name, the session time zone (UTC, for deterministic dates) and those of
``extra`` that spark-submit did not set (a ``--conf`` on its command line wins
over the profile).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator

from shmi_spark.config import SparkConfig
from shmi_spark.data import packaged_file

__all__ = ["build_session", "executor_environment", "under_spark_submit", "size_shuffles",
           "ROWS_PER_SHUFFLE_PARTITION"]

#: With ``spark.shuffle_partitions = 0``, one shuffle partition per this many episode rows.
ROWS_PER_SHUFFLE_PARTITION = 500_000

#: Spark's JVM logging in local mode (packaged with shmi_spark.data): errors only, on the
#: console, or everything from WARN up into the run's log file.
LOG4J_CONSOLE = "log4j2-console.properties"
LOG4J_FILE = "log4j2-file.properties"

# Settings that make results deterministic and match the method, in any mode (a profile's
# [spark.extra] or spark-submit may override them).
_ALWAYS = {
    # HotSpot never JIT-compiles a method over 8,000 bytes of bytecode: a whole-stage method
    # above it (the input contract's ~90-column projection is ~10 kB) runs interpreted, row by
    # row. Above this limit Spark falls back to per-expression code, as its documentation
    # advises on HotSpot: about half the CPU of the input's parsing (issue 13).
    "spark.sql.codegen.hugeMethodLimit": "8000",
    "spark.sql.session.timeZone": "UTC",
    # a cached table (the duplicate keys, a period's scored cells) gets adaptive execution's
    # coalesced partitions too, not all of spark.sql.shuffle.partitions (108 locally at full
    # scale, 400 on a cluster), nearly empty
    "spark.sql.optimizer.canChangeCachedPlanOutputPartitioning": "true",
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


@contextlib.contextmanager
def _stderr_to(path: str | None) -> Iterator[None]:
    """While it is open, this process's file descriptor 2 writes to ``path`` (a JVM started now inherits it)."""
    if path is None:
        yield
        return
    saved = os.dup(2)
    target = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.dup2(target, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(target)


def _submitted_values() -> dict[str, str]:
    """The settings spark-submit set (its ``--conf``, resources, defaults): they win over the profile's ``extra``."""
    if not under_spark_submit():
        return {}
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()  # the gateway spark-submit started: its JVM holds the submitted settings
    return dict(SparkConf().getAll())


def _submitted_settings() -> set[str]:
    return set(_submitted_values())


def _make_local_event_log_dir(settings: dict[str, str]) -> None:
    """Spark refuses to start when the event log's folder is missing: create it when it is local."""
    if settings.get("spark.eventLog.enabled", "false").lower() != "true":
        return
    folder = settings.get("spark.eventLog.dir", "file:///tmp/spark-events")
    if folder.startswith("file:") or "://" not in folder:
        os.makedirs(folder.removeprefix("file://").removeprefix("file:"), exist_ok=True)


def build_session(conf: SparkConfig, *, testing: bool = False, log_file: str | None = None,
                  verbose: bool = False):
    """Return a SparkSession for ``conf``.

    ``log_file``: in local mode, the JVM's log (log4j, from WARN up, Java stack
    traces included) goes to this file instead of the console, and so does
    everything the JVM itself writes to its standard error: the launcher's
    notes and native libraries' messages such as netlib's "dlopen(libblas.so.3)
    failed" (see :mod:`shmi_spark.io.runlog`).  ``verbose`` keeps the JVM's
    standard error and Spark's own progress bars on the console.

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
            "spark.sql.shuffle.partitions": str(conf.shuffle_partitions or conf.parallelism),
            "spark.default.parallelism": str(conf.parallelism),
            "spark.ui.enabled": "true" if (conf.ui and not testing) else "false",
            "spark.ui.showConsoleProgress": "true" if ((conf.console_progress or verbose) and not testing) else "false",
            "spark.sql.adaptive.enabled": "true",
            "spark.driver.extraJavaOptions": (
                f"-Dlog4j2.configurationFile={packaged_file(LOG4J_FILE).as_uri()} -Dshmi.log.file=\"{log_file}\""
                if log_file else f"-Dlog4j2.configurationFile={packaged_file(LOG4J_CONSOLE).as_uri()}"),
        })
        if conf.local_dir:
            settings["spark.local.dir"] = conf.local_dir
    settings.update({k: v for k, v in conf.extra.items() if k not in _submitted_settings()})
    _make_local_event_log_dir({**_submitted_values(), **settings})
    for key, value in settings.items():
        builder = builder.config(key, value)
    quiet_jvm = log_file is not None and not verbose and not under_spark_submit()
    with _stderr_to(log_file if quiet_jvm else None):
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(conf.log_level)
    return spark


def _python_of_this_worker(_: Iterable[int]) -> Iterator[tuple[str, str, str, str]]:
    import platform
    import socket

    import numpy
    import pandas
    import pyarrow
    yield (socket.gethostname(), sys.executable,
           f"python {platform.python_version()}, numpy {numpy.__version__}, pandas {pandas.__version__}, "
           f"pyarrow {pyarrow.__version__}", str(os.getpid()))


def executor_environment(spark) -> dict:
    """Which Python the executors run, and with which packages: recorded in ``summary.json``.

    A small job with two tasks per core asks each Python worker for its host,
    interpreter (``sys.executable``: on a cluster, the shipped archive's
    ``./environment/bin/python``), package versions and process id; the answer
    is the distinct values.  It is what proves a cluster run used the
    environment ``scripts/submit.sh`` shipped.
    """
    slices = max(2, 2 * spark.sparkContext.defaultParallelism)
    rows = spark.sparkContext.parallelize(range(slices), slices).mapPartitions(_python_of_this_worker).collect()
    return {
        "hosts": sorted({r[0] for r in rows}),
        "python": sorted({r[1] for r in rows}),
        "packages": sorted({r[2] for r in rows}),
        "python_workers": len({(r[0], r[3]) for r in rows}),
    }


def size_shuffles(spark, conf: SparkConfig, episode_rows: int) -> int | None:
    """Set ``spark.sql.shuffle.partitions`` from the input's size; returns the number set (None: left alone).

    Only in local mode with ``spark.shuffle_partitions = 0`` (the default):
    one partition per :data:`ROWS_PER_SHUFFLE_PARTITION` episode rows, at
    least ``spark.parallelism``.  A handful of partitions keeps a small
    world's many small shuffles cheap; the full world's sort of 53.6M
    episodes by patient then runs in ~100 partitions that fit in memory
    instead of 8 that spill.  Under spark-submit the submitted setting stands.
    """
    if conf.shuffle_partitions or under_spark_submit():
        return None
    n = max(conf.parallelism, -(-episode_rows // ROWS_PER_SHUFFLE_PARTITION))
    spark.conf.set("spark.sql.shuffle.partitions", str(n))
    return n
