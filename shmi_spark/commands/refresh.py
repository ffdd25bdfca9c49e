"""The monthly refresh: compute the 12-month reporting period ending --as-of and
publish it as ROOT/periods/YYYY-MM/, with ROOT/index.csv (one row per published
period: period, run time, git revision, config hash, input fingerprint, counts,
banding) and ROOT/latest -> periods/<newest>.  Re-running a month replaces it;
the next month adds one.  Schedule, backfill, rollback: docs/schedule.md.

A period is exactly `shmi run --period-end YYYY-MM --publication` (its
modelling window included) into ROOT/periods/YYYY-MM: staged beside it, checked,
moved into place atomically, the earlier output untouched until then.  Its
spell table is not rebuilt when nothing it depends on has changed: spell tables
live in ROOT/spells/<key>/ (each the output of `shmi run --stage spells`:
spells/, rejects/, summary.json), keyed by the code revision, the input files'
fingerprint (paths, sizes, modification times) and every setting but the
period, model, output and Spark-sizing ones.  A refresh reuses the table of its
key when there is one (and its manifest, marker and summary check out), else
builds it there first; the period is then computed from it (`input.spells`), so
a period folder never holds patient-level rows and every period of one input
extract shares one table.  Tables no published period uses are deleted.

One refresh per ROOT at a time (ROOT/.refresh.lock; a dead refresh's lock is
taken over).  At its start a refresh clears what a killed one left (staging
folders, locks, temporary files) and rebuilds index.csv and latest from the
published periods; at its end it rebuilds them again.  The index is never
edited in place: it is written beside and renamed over the old one.

examples:
  shmi refresh --as-of 2010-03 --input data/hes-2010-06 --out /srv/shmi
  shmi refresh --as-of 2010-03 --input data/hes-2010-06 --out /srv/shmi --set method.death_window_days=30
  for m in 2009-10 2009-11 2009-12; do shmi refresh --as-of $m --input data/x --out /srv/shmi; done  # backfill
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

__all__ = ["DEFAULT_ROOT", "REPORT_TREND_MONTHS", "add_arguments", "run", "refresh_settings", "earlier_periods"]

#: The report's trend of a refresh spans this many monthly periods, the new one included.
REPORT_TREND_MONTHS = 24

DEFAULT_ROOT = "out/refresh"
_AS_OF = re.compile(r"\d{4}-(0[1-9]|1[0-2])")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--as-of", required=True, metavar="YYYY-MM",
                        help="last month of the 12-month reporting period to compute and publish")
    parser.add_argument("--input", metavar="DIR", help="folder with hes_apc/, ons_deaths/, reference/trusts.csv")
    parser.add_argument("--hes", metavar="PATH", help="HES episodes (parquet or delimited text)")
    parser.add_argument("--deaths", metavar="PATH", help="ONS deaths (parquet or delimited text)")
    parser.add_argument("--trusts", metavar="FILE.csv", help="trust reference (PROCODE3, NAME, TYPE, REGION)")
    parser.add_argument("--out", metavar="ROOT", default=None,
                        help=f"refresh root: absent, empty or an earlier refresh root (default {DEFAULT_ROOT}); "
                             "a local folder (or file: URI)")
    parser.add_argument("--conf", metavar="FILE.toml", help="run profile (default conf/local.toml)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override any setting of the profile (repeatable)")
    parser.add_argument("--skip-bad-files", action="store_true",
                        help="skip (and list) input files that fail the input contract instead of stopping")
    parser.add_argument("--rebuild-spells", action="store_true",
                        help="build the spell table again even when an unchanged one could be reused")
    parser.add_argument("--quiet", action="store_true", help="no per-stage console lines")
    parser.add_argument("--verbose", action="store_true",
                        help="also show Spark's own progress bars and what the JVM writes to its standard error")


def refresh_settings(args, root: Path) -> dict:
    """The command line as the settings of the period's run (``shmi run`` flags, then the refresh's own)."""
    from shmi_spark.commands.run import settings_from_args

    as_run = argparse.Namespace(input=args.input, hes=args.hes, deaths=args.deaths, trusts=args.trusts, spells=None,
                                out=None, period_end=None, five_year=False, publication=False,
                                skip_bad_files=args.skip_bad_files)
    settings = settings_from_args(as_run)
    settings.setdefault("method", {}).update(period_end=args.as_of, five_year=False)
    settings.setdefault("output", {}).update(dir=str(root / "periods" / args.as_of), publication=True)
    return settings


def earlier_periods(root: Path, as_of: str, *, months: int = REPORT_TREND_MONTHS) -> list[str]:
    """The published periods before ``as_of`` under ``ROOT/periods/`` (oldest first), for the report's trend."""
    from shmi_spark.io import publication as pub

    folder = root / pub.PERIODS
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and pub.is_period_name(p.name)
                   and p.name < as_of and (p / "summary.json").is_file()) if folder.is_dir() else []
    return [str(folder / name) for name in names[-(months - 1):]] if months > 1 else []


def run(args) -> int:
    from shmi_spark.commands.run import done_lines
    from shmi_spark.config import load_config
    from shmi_spark.console import StageLog
    from shmi_spark.errors import InputError
    from shmi_spark.io import publication as pub
    from shmi_spark.io.inputs import input_fingerprint, load_run_inputs
    from shmi_spark.io.paths import is_local
    from shmi_spark.io.runlog import start_run_log
    from shmi_spark.pipeline import run_pipeline
    from shmi_spark.provenance import code_revision
    from shmi_spark.session import build_session

    started = time.perf_counter()
    if not _AS_OF.fullmatch(args.as_of):
        raise InputError(f"--as-of must be a month YYYY-MM (e.g. 2010-03), got {args.as_of!r}")
    root = pub.root_path(args.out or DEFAULT_ROOT)
    cfg = load_config(args.conf, overrides=args.set, settings=refresh_settings(args, root))
    if cfg.input.spells:
        raise InputError("setting 'input.spells' cannot be used with refresh: it builds and reuses its own spell "
                         "tables (ROOT/spells/); give the episodes and deaths (--input DIR)")
    if not (cfg.input.dir or cfg.input.hes):
        raise InputError("no input: give --input DIR (or --hes, --deaths and --trusts), or set input.dir in the "
                         "profile")
    if not cfg.output.log_dir:
        cfg = cfg.replace("output", log_dir=str(root / pub.LOGS))
    inputs = load_run_inputs(cfg)  # every local input checked before the lock and before Spark starts
    pub.check_root(root, inputs.paths)
    command = " ".join(["shmi", *sys.argv[1:]])
    stage_log = StageLog(quiet=args.quiet)
    say, warn = stage_log.say, stage_log.warn

    with pub.RootLock(root, command=command, stale_seconds=cfg.output.lock_stale_seconds, warn=warn):
        pub.check_root(root, inputs.paths)
        pub.mark_root(root)
        log_file = start_run_log(cfg, command)
        if not args.quiet:
            print(f"[shmi] log: {log_file}", flush=True)
        for line in pub.heal(root, warn=warn, stale_seconds=cfg.output.lock_stale_seconds):
            say(f"refresh: {line} (left by a refresh that did not finish)")
        pub.publish_index(root, warn=warn)

        def spark():
            return build_session(cfg.spark, log_file=str(log_file), verbose=args.verbose)

        # the spell table: reused when nothing it depends on changed, else built into ROOT/spells/<key>
        revision = code_revision()
        fingerprint = input_fingerprint(inputs)["inputs_sha256"]
        config = cfg.to_dict()
        key = pub.spell_table_key(config, revision, fingerprint)
        if not all(is_local(p) for p in inputs.paths):  # a URI's files cannot be fingerprinted: never reused
            key = pub.spell_table_key(config, revision, f"{fingerprint}:{time.time_ns()}")
        table = pub.spell_table_dir(root, key)
        marker = None
        if not args.rebuild_spells:
            marker = pub.usable_spell_table(table, config=config, code_revision=revision, inputs_sha256=fingerprint,
                                            warn=warn)
        if marker is not None:
            say(f"refresh: spell table reused from {table} (built {marker.get('created_utc')} by run "
                f"{marker.get('run_id')}): same input files ({fingerprint[:12]}), code revision and spell settings")
        else:
            say(f"refresh: building the spell table in {table}")
            t0 = time.perf_counter()
            # planned on the data's own latest period, not --as-of: a month outside the data fails in the
            # period's run below, after the (costly, reusable) spell table is committed
            table_cfg = cfg.replace("output", dir=str(table), publication=False).replace("method", period_end="")
            built = run_pipeline(spark, table_cfg, stage="spells", quiet=args.quiet, prepared=inputs, command=command)
            v, link = built.get("validate") or {}, built.get("linkage") or {}
            say(f"refresh: spell table built in {time.perf_counter() - t0:.0f}s: {v.get('episodes_read', 0):,} "
                f"episodes read ({v.get('episodes_rejected', 0):,} rejected), {v.get('deaths_read', 0):,} death "
                f"records, {built['spells'].get('spells_included', 0):,} spells, "
                f"{link.get('deaths_linked', 0):,} deaths linked")
        pub.checkpoint("spells-ready")

        # the period, from that spell table, published through its own staged, locked output folder
        period_cfg = cfg.replace("input", spells=str(table / "spells"))
        summary = run_pipeline(spark, period_cfg, quiet=args.quiet, command=command, annotate={"refresh": {
            "as_of": args.as_of, "spell_table": f"{pub.SPELLS}/{key}", "spell_table_reused": marker is not None}},
            report_history=earlier_periods(root, args.as_of))
        pub.checkpoint("period-committed")

        rows = pub.publish_index(root, warn=warn)
        removed = pub.prune_spell_tables(root, keep=[key], warn=warn)
        if removed:
            say(f"refresh: deleted {len(removed)} spell table(s) no published period uses: {', '.join(removed)}")
    print(done_lines(summary, period_cfg.output.dir), flush=True)
    row = next((r for r in rows if r["as_of"] == args.as_of), None)
    reused = "reused" if marker is not None else "built"
    print(f"[shmi] refresh {args.as_of} published in {time.perf_counter() - started:.0f}s (spell table {reused}: "
          f"{table}); {root / pub.INDEX}: {len(rows)} period(s), {root / pub.LATEST} -> "
          f"{pub.PERIODS}/{rows[-1]['as_of'] if rows else '-'}"
          + (f"; run {row['run_id']}" if row else ""), flush=True)
    return 0
