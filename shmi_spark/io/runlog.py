"""The run's log file: every detail a run produces that does not belong on the console.

The console gets one line per stage, warnings, and one line for an error.
Everything else goes to the run's log file: Python's log records (the
``shmi`` logger, py4j's), the traceback of an internal error, and — through
``conf/log4j2-file.properties`` — Spark's own JVM log, Java stack traces
included.  The file lives in ``output.log_dir``: by default ``<out>.logs/``
beside a local output folder (so a failed run, whose staging folder is
removed, still leaves its log), ``logs/`` in the current folder for an output
on a Hadoop URI.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path

from shmi_spark.config import Config
from shmi_spark.io.paths import is_local, local_path

__all__ = ["log_folder", "start_run_log", "stop_run_log", "current_log_file"]


def log_folder(cfg: Config) -> Path:
    """Where the run's log files go (module docstring)."""
    if cfg.output.log_dir:
        return local_path(cfg.output.log_dir)
    out = cfg.output.dir.rstrip("/")
    if is_local(out):
        p = local_path(out)
        return p.parent / f"{p.name}.logs"
    return Path("logs")


def start_run_log(cfg: Config, command: str) -> Path:
    """Create the run's log file and send Python's log records (not the console's) there."""
    folder = log_folder(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = folder / f"{stamp}-{os.getpid()}.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.set_name("shmi-run-log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    logging.getLogger("shmi").info("command: %s", command)
    return path


def _run_handlers() -> list[logging.FileHandler]:
    return [h for h in logging.getLogger().handlers
            if isinstance(h, logging.FileHandler) and h.get_name() == "shmi-run-log"]


def current_log_file() -> str | None:
    """The run log's file, if a run log was started in this process."""
    handlers = _run_handlers()
    return handlers[-1].baseFilename if handlers else None


def stop_run_log() -> None:
    """Close the run log (a process may run several commands, as the tests do)."""
    for handler in _run_handlers():
        logging.getLogger().removeHandler(handler)
        handler.close()
