"""Compute SHMI end to end: ingest, validate, spells, death linkage, per-group
models, expected deaths, SHMI with funnel limits and banding, contextual
indicators, and the published files, all under one output folder.

Every setting comes from the TOML profile (--conf, default conf/local.toml) and
can be overridden with --set section.key=value.  With no input given, the run
uses the embedded default: a small synthetic world (generated once, beside the
output folder, by `shmi synth`).

examples:
  shmi run                                      # embedded default world
  shmi run --input data/world --out out/run     # rolling 12 months ending with the data
  shmi run --input data/world --five-year       # each year 2005/06-2009/10 and pooled
  shmi run --input hdfs:///hes/2010-09 --conf conf/cluster.toml --out hdfs:///shmi/2010-09
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shmi_spark.config import Config

__all__ = [
    "DEFAULT_WORLD_ADMISSIONS", "DEFAULT_WORLD_SEED", "add_arguments", "settings_from_args",
    "ensure_default_world", "run", "done_lines",
]

DEFAULT_WORLD_ADMISSIONS = 200_000
DEFAULT_WORLD_SEED = 20120201


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--conf", metavar="FILE.toml", help="run profile (default conf/local.toml)")
    parser.add_argument("--input", metavar="DIR", help="folder with hes_apc/, ons_deaths/, reference/trusts.csv")
    parser.add_argument("--hes", metavar="PATH", help="HES episodes (parquet or delimited text)")
    parser.add_argument("--deaths", metavar="PATH", help="ONS deaths (parquet or delimited text)")
    parser.add_argument("--trusts", metavar="FILE.csv", help="trust reference (PROCODE3, NAME, TYPE, REGION)")
    parser.add_argument("--spells", metavar="DIR",
                        help="start from an existing spell table (a previous run's spells/): "
                             "skips ingest, validation, spells and linkage")
    parser.add_argument("--out", metavar="DIR",
                        help="output folder: absent, empty, or an earlier run's output (replaced when the "
                             "new run has written and checked everything)")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--period-end", metavar="YYYY-MM", help="last month of the 12-month reporting period")
    when.add_argument("--five-year", action="store_true",
                      help="the paper's design: each financial year 2005/06-2009/10 and the pooled five")
    parser.add_argument("--stage", choices=("spells", "all"), default="all",
                        help="stop after the spell table ('spells') or run everything (default)")
    parser.add_argument("--publication", action="store_true",
                        help="also write disclosure-controlled CSVs under publication/")
    parser.add_argument("--no-report", action="store_true",
                        help="do not write the HTML report (report/index.html; `shmi report` writes it later)")
    parser.add_argument("--no-hsmr", action="store_true",
                        help="compute the SHMI only: no HSMR, no bridge between them (hsmr.enabled = false)")
    parser.add_argument("--basket", metavar="FILE.csv",
                        help="baskets of diagnoses (BASKET, CODE: ICD-10 code or prefix, or diagnosis group): "
                             "O, E, ratio and banding per trust and basket for both indicators")
    parser.add_argument("--skip-bad-files", action="store_true",
                        help="skip (and list) input files that fail the input contract instead of stopping")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override any setting of the profile (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="no per-stage console lines")
    parser.add_argument("--verbose", action="store_true",
                        help="also show Spark's own progress bars and what the JVM writes to its standard error "
                             "(native-library notes); without it they go to the run's log file")


def settings_from_args(args) -> dict:
    """Command-line flags as a nested settings dict (paths relative to the current folder)."""
    s: dict = {}
    flags = {"input": ("input", "dir"), "hes": ("input", "hes"), "deaths": ("input", "deaths"),
             "trusts": ("input", "trusts"), "spells": ("input", "spells"), "out": ("output", "dir"),
             "period_end": ("method", "period_end")}
    for flag, (section, key) in flags.items():
        value = getattr(args, flag)
        if value:
            s.setdefault(section, {})[key] = value
    if args.five_year:
        s.setdefault("method", {})["five_year"] = True
    if args.publication:
        s.setdefault("output", {})["publication"] = True
    if getattr(args, "no_report", False):
        s.setdefault("output", {})["report"] = False
    if getattr(args, "no_hsmr", False):
        s.setdefault("hsmr", {})["enabled"] = False
    if getattr(args, "basket", None):
        s.setdefault("hsmr", {})["basket_file"] = args.basket
    if args.skip_bad_files:
        s.setdefault("quality", {})["skip_bad_files"] = True
    return s


def ensure_default_world(cfg: Config) -> Config:
    """With no input configured, generate (once) and use the embedded default world."""
    if cfg.input.dir or cfg.input.hes or cfg.input.spells:
        return cfg
    from shmi_spark.errors import InputError
    from shmi_spark.session import under_spark_submit

    if not cfg.output.dir.strip() or under_spark_submit():
        raise InputError("no input given: set --input DIR (the embedded default world is for local runs with an "
                         "output folder)")
    world = Path(cfg.output.dir).resolve().parent / "default_world"
    if not (world / "truth" / "summary.json").is_file():
        import datetime as dt

        from shmi_spark.commands.synth import write_world
        print(f"[shmi] no input given: generating the default synthetic world "
              f"({DEFAULT_WORLD_ADMISSIONS:,} admissions) in {world}", flush=True)
        if write_world(str(world), DEFAULT_WORLD_ADMISSIONS, DEFAULT_WORLD_SEED, dt.date(2005, 4, 1),
                       dt.date(2010, 9, 30), workers=2) is None:
            raise RuntimeError(f"the default world in {world} could not be generated")
    return cfg.replace("input", dir=str(world))


def run(args) -> int:
    import sys

    from shmi_spark.config import load_config
    from shmi_spark.io.runlog import start_run_log
    from shmi_spark.pipeline import prepare_run, run_pipeline
    from shmi_spark.session import build_session

    cfg = load_config(args.conf, overrides=args.set, settings=settings_from_args(args))
    cfg = ensure_default_world(cfg)
    prepared = prepare_run(cfg)  # inputs, references and --out checked before Spark starts
    command = " ".join(["shmi", *sys.argv[1:]])
    log_file = start_run_log(cfg, command)
    if not args.quiet:
        print(f"[shmi] log: {log_file}", flush=True)
    summary = run_pipeline(lambda: build_session(cfg.spark, log_file=str(log_file), verbose=args.verbose), cfg,
                           stage=args.stage,
                           quiet=args.quiet, prepared=prepared, command=command)
    print(done_lines(summary, cfg.output.dir), flush=True)
    return 0


def done_lines(summary: dict, out: str) -> str:
    """The closing console lines of a run."""
    lines = []
    s, link = summary.get("spells", {}), summary.get("linkage")
    v = summary.get("validate")
    head = f"[shmi] done in {summary['seconds_total']}s: "
    if v:
        head += (f"{v['episodes_read']:,} episodes read ({v['episodes_rejected']:,} rejected), "
                 f"{v['deaths_read']:,} death records ({v['deaths_rejected']:,} rejected), ")
    else:
        head += f"spell table {s.get('read_from')}, "
    head += f"{s.get('spells_included', 0):,} spells"
    if link:
        head += f", {link['deaths_linked']:,} deaths linked"
    lines.append(head)
    for p in summary.get("periods", []):
        lines.append(f"[shmi] period {p['period']}: {p['n_trusts']} trusts, SHMI banding "
                     f"{p['n_higher']} higher / {p['n_as_expected']} as expected / {p['n_lower']} lower, "
                     f"{p['n_outliers_998']} above 99.8%; phi={p['phi']:.3f} tau2={p['tau2']:.5f}; "
                     f"C={p['c_statistic_overall'] or float('nan'):.3f}")
    for h in summary.get("hsmr", []):
        steps = h.get("largest_step_count", {})
        lines.append(f"[shmi] HSMR {h['period']}: {h['n_rows']} trusts, banding {h['n_higher']} higher / "
                     f"{h['n_as_expected']} as expected / {h['n_lower']} lower; {h['groups_covered']} groups "
                     f"({100 * h['in_hospital_deaths_covered']:.0f}% of in-hospital deaths); largest bridge step "
                     f"per trust: " + ", ".join(f"step {k}: {v}" for k, v in sorted(steps.items())))
    lines.append(f"[shmi] outputs in {out} (summary.json, shmi_trust.csv, ...)")
    if summary.get("report"):
        lines.append(f"[shmi] report: {summary['report']}")
    return "\n".join(lines)
