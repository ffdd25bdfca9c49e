"""The ``shmi`` console command.

Sub-commands live in :mod:`shmi_spark.commands`, one module each, with
``add_arguments(parser)`` and ``run(args) -> int``.  Command modules import
Spark only inside ``run`` so that ``--help`` and ``shmi band`` start fast.

Exit codes: 0 success; 2 bad usage or bad input (one line naming the file and
field, or the setting); 130 interrupted (Ctrl-C); 1 internal failure (one
line on the console, the traceback — Java's included — in the run's log file).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
import traceback

from shmi_spark import __version__
from shmi_spark.config import ConfigError
from shmi_spark.errors import InputError

__all__ = ["COMMANDS", "build_parser", "unreadable_file", "main"]

COMMANDS = [
    ("synth", "write a synthetic national HES + ONS world"),
    ("run", "compute SHMI end to end: ingest, spells, models, indicator, files"),
    ("refresh", "compute and publish one month's 12-month period under ROOT/periods/, with index.csv and latest"),
    ("report", "write the HTML report of a finished run (report/index.html)"),
    ("band", "add SHMI, funnel limits and banding to a trust-level CSV (no Spark)"),
]
EXIT_INTERNAL, EXIT_INPUT, EXIT_INTERRUPTED = 1, 2, 130

_READ_FAILURE = re.compile(r"FAILED_READ_FILE[^\]]*\][^\n]*?reading file (\S+?)\.?(?:\s+SQLSTATE|\s*$)", re.M)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shmi", description="Summary Hospital-level Mortality Indicator with PySpark.",
        epilog="exit codes: 0 success, 2 bad input or usage, 130 interrupted, 1 internal failure")
    parser.add_argument("--version", action="version", version=f"shmi-spark {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, help_text in COMMANDS:
        module = importlib.import_module(f"shmi_spark.commands.{name}")
        p = sub.add_parser(name, help=help_text, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def unreadable_file(exc: BaseException) -> str | None:
    """The input file named by Spark's FAILED_READ_FILE error (a file corrupt past its footer), if any."""
    match = _READ_FAILURE.search(str(exc))
    return re.sub(r"^file:(//)?", "", match.group(1)) if match else None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from shmi_spark.io.runlog import stop_run_log

    try:
        return _run(args)
    finally:
        stop_run_log()


def _run(args) -> int:
    """Run a sub-command; turn every way it can end into an exit code and one console line."""
    from shmi_spark.io.runlog import current_log_file

    log = logging.getLogger("shmi")
    try:
        return int(args._module.run(args) or 0)
    except (InputError, ConfigError) as exc:
        log.error("%s", exc)
        print(f"shmi {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        log.error("interrupted")
        print(f"shmi {args.command}: interrupted (Ctrl-C); nothing was published, earlier outputs are "
              "unchanged", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the one place internal failures are reported
        log_file = current_log_file()
        log.error("failed", exc_info=exc)
        path = unreadable_file(exc)
        if path:
            print(f"shmi {args.command}: error: cannot read input file {path}: it is corrupt or truncated "
                  f"(details in {log_file})", file=sys.stderr)
            return EXIT_INPUT
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        if log_file is None:
            traceback.print_exc(file=sys.stderr)
        where = f" (details in {log_file})" if log_file else ""
        print(f"shmi {args.command}: internal error: {type(exc).__name__}: {first}{where}", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
