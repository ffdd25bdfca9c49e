"""What a run says on the console: one line per stage, warnings, and a progress line for long stages.

Every stage ends with one line — rows in, rows out, seconds — kept for
``summary.json`` and written to the run's log.  While a stage runs, on a
terminal (not when the output is piped or in a log), a single line shows
how far Spark's current jobs are (tasks done of tasks, across the active
stages) and the seconds spent; it is cleared when the stage ends.  Spark's
own multi-line progress bars are off (``spark.console_progress``,
``--verbose``).  Warnings reach the console even with ``--quiet``.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TextIO

from pyspark.sql import SparkSession

__all__ = ["StageLog", "progress_text"]

log = logging.getLogger("shmi")


def progress_text(name: str, done: int, total: int, seconds: float, width: int = 24) -> str:
    """``[shmi] models 2005/06  [██████······]  120/240 tasks    14s``"""
    filled = int(width * done / total) if total else 0
    bar = "█" * filled + "·" * (width - filled)
    tasks = f"{done:,}/{total:,} tasks" if total else "starting"
    return f"[shmi] {name:<12} [{bar}] {tasks:>18} {seconds:6.0f}s"


@dataclass
class StageLog:
    """One console line per stage, kept for summary.json (and the run's log)."""

    quiet: bool = False
    rows: list = field(default_factory=list)
    stream: TextIO = field(default_factory=lambda: sys.stderr)

    def record(self, stage: str, rows_in: int | None, rows_out: int | None, seconds: float) -> None:
        seconds = round(seconds, 2)
        self.rows.append({"stage": stage, "rows_in": rows_in, "rows_out": rows_out, "seconds": seconds})
        fmt = lambda v: "-" if v is None else f"{v:,}"  # noqa: E731
        self.say(f"{stage:<12} in {fmt(rows_in):>12}  out {fmt(rows_out):>12}  {seconds:8.1f}s")

    def say(self, text: str) -> None:
        log.info(text)
        if not self.quiet:
            print(f"[shmi] {text}", flush=True)

    def warn(self, text: str) -> None:
        """Warnings reach the console even when quiet."""
        log.warning(text)
        print(f"[shmi] warning: {text}", file=sys.stderr, flush=True)

    @contextmanager
    def running(self, name: str, spark: SparkSession) -> Iterator[None]:
        """Show a progress line for the stage ``name`` while its block runs (terminal only)."""
        stream = self.stream
        if self.quiet or not stream.isatty():
            yield
            return
        stop = threading.Event()
        started = time.perf_counter()
        tracker = spark.sparkContext.statusTracker()

        def draw() -> None:
            while not stop.wait(0.5):
                done = total = 0
                for stage_id in tracker.getActiveStageIds():
                    info = tracker.getStageInfo(stage_id)
                    if info is not None:
                        done += info.numCompletedTasks
                        total += info.numTasks
                stream.write("\r" + progress_text(name, done, total, time.perf_counter() - started))
                stream.flush()

        thread = threading.Thread(target=draw, name="shmi-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            stream.write("\r\033[K")
            stream.flush()
