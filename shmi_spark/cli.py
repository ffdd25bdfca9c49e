"""The ``shmi`` console command.

Sub-commands live in :mod:`shmi_spark.commands`, one module each, with
``add_arguments(parser)`` and ``run(args) -> int``.  Command modules import
Spark only inside ``run`` so that ``--help`` and ``shmi band`` start fast.

Exit codes: 0 success; 2 bad usage or bad input (a clear message naming the
file and field); 1 internal failure.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from . import __version__
from .config import ConfigError
from .errors import InputError

COMMANDS = [
    ("synth", "write a synthetic national HES + ONS world"),
    ("run", "compute SHMI end to end: ingest, spells, models, indicator, files"),
    ("band", "add SHMI, funnel limits and banding to a trust-level CSV (no Spark)"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shmi", description="Summary Hospital-level Mortality Indicator with PySpark.")
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._module.run(args) or 0)
    except (InputError, ConfigError) as exc:
        print(f"shmi {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"shmi {args.command}: interrupted", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the one place internal failures are reported
        traceback.print_exc(file=sys.stderr)
        print(f"shmi {args.command}: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
