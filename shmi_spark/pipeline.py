"""The run: ingest → validate → spells → linkage → models → expected → indicator → files.

Each stage is a pure function in its own module; this module only wires them,
materialises the stage tables, prints one line per stage (rows in and out,
seconds) and collects ``summary.json``.

A run is safe by construction (:mod:`shmi_spark.io.outputs`):

1. :func:`prepare_run`, before Spark starts: every local input file is
   inspected against the input contract (:mod:`shmi_spark.io.ingest`), the trust
   and reference tables are loaded and checked, and the output folder is
   checked (never an input, never a user's folder).
2. The run takes the output folder's lock and writes everything into a
   staging folder beside it; the previous output stays untouched.
3. Validation's counts go through the data-quality gate
   (:mod:`shmi_spark.hes.quality_gate`), and the periods are planned from the
   data (:func:`shmi_spark.indicator.periods.plan_periods`) before any model is fitted.
4. Before the staging folder is moved into place, the outputs are checked:
   every input row accounted for, one row per trust and period, national
   ``ΣE = ΣO`` after rescaling, no non-finite value in any table.

Output folder (``output.dir``)::

    spells/                    the spell table (docs/tables.md), by DIS_FYEAR, with
                               _SUCCESS and _SHMI_SPELLS.json (rows per year, schema)
    rejects/                   rejected input rows with reasons (no patient id)
    model/<period>/            coefficients and diagnostics per fitted period
    shmi_trust.csv/.parquet    one row per trust and period
    shmi_trust_diag_group.csv  per trust × diagnosis group
    shmi_area.csv              national, regional and peer-group summaries
    contextual.csv             METHOD.md §7 per trust and period
    model_quality.csv          C statistics per group and period
    shmi_panel.csv, outliers.csv   (five-year runs) the paper's Table 4
    publication/               (publication mode) disclosure-controlled CSVs
    summary.json               counts in and out of every stage, settings, timings
    _SHMI_OUTPUT.json          the run's marker and manifest, written last
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import platform
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from shmi_spark import __version__
from shmi_spark.model.cells import covariate_cells
from shmi_spark.config import Config
from shmi_spark.io.contract import DEATH_CONTRACT, EPISODE_CONTRACT
from shmi_spark.indicator.contextual import contextual_indicators
from shmi_spark.hes.diagnosis import lookup_tables
from shmi_spark.errors import InputError
from shmi_spark.model.scoring import expected_by_trust, expected_by_trust_group, score_spells
from shmi_spark.indicator.tables import (area_summaries, group_breakdown, outlier_persistence, shmi_panel,
                        trust_indicator)
from shmi_spark.io.ingest import (InputSet, check_exists, inspect_input, is_local, local_path, read_input, read_trusts,
                     read_trusts_uri, resolve_inputs, resolve_trusts)
from shmi_spark.hes.linkage import linkage_counts
from shmi_spark.model.fit import fit_group_models
from shmi_spark.io.outputs import OutputFolder, check_destination
from shmi_spark.indicator.periods import MonthlyVolume, Period, PeriodPlan, plan_periods
from shmi_spark.io.publish import disclosure_control, write_json, write_table
from shmi_spark.model.quality import c_statistics, trust_r2
from shmi_spark.hes.quality_gate import (InputReport, check_quality, format_report, gate_failures, input_report,
                           invalid_report)
from shmi_spark.io.reference import load_charlson, load_diag_lookup
from shmi_spark.hes.spell_table import SPELL_COLUMNS, spell_table
from shmi_spark.hes.spells import EXCLUSION_REASONS, build_spells
from shmi_spark.hes.validate import (REJECT_COLUMNS, duplicate_keys, flag_deaths, flag_episodes, invalid_code_counts,
                       split_deaths, split_flagged)

__all__ = ["Prepared", "prepare_run", "run_pipeline", "execute", "ReconciliationError",
           "SPELLS_MANIFEST", "check_spell_table"]

STAGES = ("spells", "all")
# Up to this many duplicated EPIKEYs are joined back by broadcast (a few MB); more, by shuffle.
BROADCAST_DUP_KEYS = 200_000
#: The spell table's own manifest, beside Spark's _SUCCESS marker.
SPELLS_MANIFEST = "_SHMI_SPELLS.json"

log = logging.getLogger("shmi")


class ReconciliationError(RuntimeError):
    """Counts that must add up did not: an internal failure, never silent."""


@dataclass
class StageLog:
    """One console line per stage, kept for summary.json (and the run's log)."""

    quiet: bool = False
    rows: list = field(default_factory=list)

    def record(self, stage: str, rows_in: int | None, rows_out: int | None, started: float) -> None:
        seconds = round(time.perf_counter() - started, 2)
        self.rows.append({"stage": stage, "rows_in": rows_in, "rows_out": rows_out, "seconds": seconds})
        fmt = lambda v: "-" if v is None else f"{v:,}"  # noqa: E731
        line = f"{stage:<12} in {fmt(rows_in):>12}  out {fmt(rows_out):>12}  {seconds:8.1f}s"
        log.info(line)
        if not self.quiet:
            print(f"[shmi] {line}", flush=True)

    def say(self, text: str) -> None:
        log.info(text)
        if not self.quiet:
            print(f"[shmi] {text}", flush=True)

    def warn(self, text: str) -> None:
        """Warnings reach the console even when quiet."""
        log.warning(text)
        print(f"[shmi] warning: {text}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Prepared:
    """What :func:`prepare_run` checked and loaded before Spark starts."""

    cfg: Config
    inputs: tuple[str, ...]               # every input path (for the output-folder checks)
    hes: str = ""
    deaths: str = ""
    trusts_path: str = ""
    spells: str = ""
    episodes_set: InputSet | None = None  # local inputs, inspected; URIs are inspected once Spark runs
    deaths_set: InputSet | None = None
    trusts: pd.DataFrame | None = None
    lookup: object = None
    charlson: pd.DataFrame | None = None
    latest_date: dt.date = field(default_factory=dt.date.today)


def _check_trusts(trusts: pd.DataFrame, path: str) -> pd.DataFrame:
    if not (trusts["TYPE"] == "acute").any():
        raise InputError(f"trusts reference {path} has no acute trust (TYPE acute): the SHMI covers "
                         "acute general trusts only")
    return trusts


def prepare_run(cfg: Config) -> Prepared:
    """Check everything that can be checked before Spark starts (module docstring, step 1)."""
    q = cfg.quality
    latest = dt.date.fromisoformat(q.latest_date) if q.latest_date else dt.date.today()
    ref = cfg.reference
    lookup = load_diag_lookup(ref.diag_lookup, fmt=ref.diag_lookup_format, labels_path=ref.diag_labels)
    charlson = load_charlson(ref.charlson, fmt=ref.charlson_format, source=ref.charlson_source)
    trusts_path = resolve_trusts(cfg.input)
    check_exists(trusts_path, "trusts reference")
    trusts = _check_trusts(read_trusts(trusts_path), trusts_path) if is_local(trusts_path) else None
    references = [p for p in (ref.diag_lookup, ref.diag_labels, ref.charlson) if p]
    if cfg.input.spells:
        check_exists(cfg.input.spells, "spells")
        if is_local(cfg.input.spells):
            check_spell_table(cfg.input.spells)
        inputs = (cfg.input.spells, trusts_path, *references)
        prepared = Prepared(cfg=cfg, inputs=inputs, trusts_path=trusts_path, spells=cfg.input.spells,
                            trusts=trusts, lookup=lookup, charlson=charlson, latest_date=latest)
    else:
        paths = resolve_inputs(cfg.input)
        sets = {}
        for what, path, contract in (("hes episodes", paths.hes, EPISODE_CONTRACT),
                                     ("deaths", paths.deaths, DEATH_CONTRACT)):
            check_exists(path, what)
            if is_local(path):
                sets[what] = inspect_input(path, what, contract, fmt=cfg.input.format,
                                           delimiter=cfg.input.delimiter, skip_bad_files=q.skip_bad_files)
        inputs = tuple(p for p in (cfg.input.dir, paths.hes, paths.deaths, trusts_path, *references) if p)
        prepared = Prepared(cfg=cfg, inputs=inputs, hes=paths.hes, deaths=paths.deaths,
                            trusts_path=trusts_path, episodes_set=sets.get("hes episodes"),
                            deaths_set=sets.get("deaths"), trusts=trusts, lookup=lookup, charlson=charlson,
                            latest_date=latest)
    if not cfg.output.dir.strip():
        raise InputError("no output folder: set --out DIR or output.dir")
    check_destination(cfg.output.dir, inputs, overwrite=cfg.output.overwrite, kind="run")
    return prepared


def run_pipeline(spark: SparkSession | Callable[[], SparkSession], cfg: Config, *, stage: str = "all",
                 quiet: bool = False, prepared: Prepared | None = None, command: str = "") -> dict:
    """Run the pipeline into ``cfg.output.dir`` through a staging folder; return the summary.

    ``spark`` is a session, or a function returning one (called once the
    inputs and the output folder have been checked and the lock taken, so a
    bad input or a busy folder fails before Spark starts).
    """
    if stage not in STAGES:
        raise InputError(f"unknown stage '{stage}' (known: {', '.join(STAGES)})")
    prepared = prepared or prepare_run(cfg)
    owned = callable(spark)
    session = None if owned else spark
    if session is None and not is_local(cfg.output.dir):
        session = spark()  # Hadoop's file system is needed for the lock
    o = cfg.output
    try:
        with OutputFolder(o.dir, prepared.inputs, kind="run", overwrite=o.overwrite,
                          command=command or " ".join(sys.argv), spark=session,
                          stale_seconds=o.lock_stale_seconds, warn=StageLog().warn) as out:
            try:
                session = session or spark()
                summary = execute(session, prepared, out.staging, stage=stage, log=StageLog(quiet=quiet))
                work = _inner(out, f"{out.staging}/_work")
                if out.fs.exists(work):  # the run's own intermediate tables
                    out.fs.delete(work)
                summary["output"] = {"dir": o.dir, "run_id": out.run_id}
                write_json(session, summary, out.staging, "summary.json")
                out.commit(run_fingerprint(prepared, summary))
            finally:
                if owned and session is not None:  # stopped before the staging folder is discarded
                    stop_session(session)
                    session = None
    finally:
        if owned and session is not None:
            stop_session(session)
    return summary


def stop_session(spark: SparkSession) -> None:
    """Stop Spark; after Ctrl-C the gateway may already be gone, which is logged, not raised."""
    from py4j.protocol import Py4JError

    try:
        spark.stop()
    except (Py4JError, ConnectionError) as exc:
        log.warning("stopping Spark: %s", exc)


def _inner(out: OutputFolder, path: str) -> str:
    """A staging path in the style the output folder's file system expects."""
    return path[7:] if path.startswith("file://") and not out.dest.startswith("file:") else path


def execute(spark: SparkSession, prepared: Prepared, out: str, *, stage: str, log: StageLog) -> dict:
    """Every stage, writing under ``out`` (the staging folder); returns the summary."""
    cfg = prepared.cfg
    started = time.perf_counter()
    summary: dict = {
        "shmi_spark_version": __version__, "spark_version": spark.version,
        "python": platform.python_version(), "started_utc": dt.datetime.now(dt.timezone.utc).isoformat(),
        "command": " ".join(sys.argv), "config": cfg.to_dict(),
    }
    trusts = prepared.trusts
    if trusts is None:
        trusts = _check_trusts(read_trusts_uri(spark, prepared.trusts_path), prepared.trusts_path)
    if prepared.spells:
        spells = stage_from_spells(spark, prepared, log, summary)
    else:
        spells = stage_spells(spark, prepared, trusts, out, log, summary)
    plan = stage_plan_periods(spells, cfg, log, summary)
    if stage == "all":
        run_indicator(spark, cfg, spells, trusts, prepared.lookup, plan, out, log, summary)
    summary["stages"] = log.rows
    summary["seconds_total"] = round(time.perf_counter() - started, 1)
    return summary


# --------------------------------------------------------------------------- validation

def _validation_counts(flagged: DataFrame) -> pd.DataFrame:
    """``SOURCE_FILE, FYEAR, REASON, FIELD, N, EXAMPLE`` (the commonest value) of a flagged input."""
    return (flagged.groupBy("SOURCE_FILE", "FYEAR", "REASON", "FIELD")
            .agg(F.count(F.lit(1)).alias("N"), F.mode("VALUE", deterministic=True).alias("EXAMPLE")).toPandas())


def _inspected(spark: SparkSession, prepared: Prepared, what: str) -> InputSet:
    known = prepared.episodes_set if what == "hes episodes" else prepared.deaths_set
    if known is not None:
        return known
    cfg = prepared.cfg
    path = prepared.hes if what == "hes episodes" else prepared.deaths
    return inspect_input(path, what, EPISODE_CONTRACT if what == "hes episodes" else DEATH_CONTRACT,
                         fmt=cfg.input.format, delimiter=cfg.input.delimiter,
                         skip_bad_files=cfg.quality.skip_bad_files, spark=spark)


def stage_validate(spark: SparkSession, prepared: Prepared, trusts: pd.DataFrame, work: str,
                   log: StageLog, summary: dict) -> tuple[DataFrame, DataFrame, DataFrame]:
    """Read and validate episodes and deaths; apply the data-quality gate.

    Returns (accepted episodes, accepted deaths, rejects), read back from
    ``work`` where the flagged rows were materialised once.
    """
    cfg = prepared.cfg
    t0 = time.perf_counter()
    ep_set, de_set = _inspected(spark, prepared, "hes episodes"), _inspected(spark, prepared, "deaths")
    for s in (ep_set, de_set):
        for f, why in s.skipped:
            log.warn(f"skipped {s.what} file {f}: {why}")
    raw_episodes = read_input(spark, ep_set, EPISODE_CONTRACT)
    raw_deaths = read_input(spark, de_set, DEATH_CONTRACT)
    summary["inputs"] = {"hes": ep_set.to_dict(), "deaths": de_set.to_dict(), "trusts": prepared.trusts_path,
                         "diag_lookup": cfg.reference.diag_lookup, "charlson": cfg.reference.charlson}
    episodes_read, deaths_read = raw_episodes.count(), raw_deaths.count()
    log.record("ingest", None, episodes_read + deaths_read, t0)

    t0 = time.perf_counter()
    bounds = {"earliest": dt.date.fromisoformat(cfg.quality.earliest_date), "latest": prepared.latest_date}
    dup_keys = duplicate_keys(raw_episodes).persist(StorageLevel.MEMORY_AND_DISK)
    n_dup_keys = dup_keys.count()
    flag_episodes(raw_episodes, sorted(trusts["PROCODE3"]), dup_keys=dup_keys,
                  broadcast_dup_keys=n_dup_keys <= BROADCAST_DUP_KEYS, **bounds).write.parquet(
        f"{work}/episodes_flagged")
    dup_keys.unpersist()
    flag_deaths(raw_deaths, **bounds).write.parquet(f"{work}/deaths_flagged")
    flagged = spark.read.parquet(f"{work}/episodes_flagged")
    d_flagged = spark.read.parquet(f"{work}/deaths_flagged")
    ep_report = input_report("hes episodes", _validation_counts(flagged))
    de_report = input_report("deaths", _validation_counts(d_flagged))
    invalid = invalid_report(invalid_code_counts(flagged).toPandas())
    if ep_report.read != episodes_read or de_report.read != deaths_read:
        raise ReconciliationError(f"input rows do not reconcile: episodes read {episodes_read} vs "
                                  f"{ep_report.read} validated; deaths read {deaths_read} vs {de_report.read}")
    summary["validate"] = validate_summary(ep_report, de_report, invalid)
    for rep in (ep_report, de_report):
        for line in format_report(rep):
            log.say(line)
    for field_name, info in invalid.items():
        log.say(f"invalid {field_name} (counted as unknown, METHOD.md §2): {info['total']:,}, e.g. "
                + ", ".join(f"{v!r}: {n:,}" for v, n in list(info["values"].items())[:3]))
    failures = gate_failures(ep_report, de_report, invalid, cfg.quality)
    summary["validate"]["quality_gate"] = {"passed": not failures, "failures": failures}
    for failure in failures[1:]:
        log.warn(failure)
    check_quality(failures)

    episodes, ep_rejects = split_flagged(flagged)
    deaths, de_rejects = split_deaths(d_flagged)
    log.record("validate", episodes_read + deaths_read, ep_report.accepted + de_report.accepted, t0)
    return episodes, deaths, ep_rejects.unionByName(de_rejects).select(*REJECT_COLUMNS)


def validate_summary(episodes: InputReport, deaths: InputReport, invalid: dict) -> dict:
    """summary.json's ``validate`` section: every input row accepted or rejected, by reason and file."""
    ep, de = episodes.to_dict(), deaths.to_dict()
    return {
        "episodes_read": episodes.read, "episodes_accepted": episodes.accepted,
        "episodes_rejected": episodes.rejected, "episode_rejects_by_reason": ep["rejects_by_reason"],
        "deaths_read": deaths.read, "deaths_accepted": deaths.accepted, "deaths_rejected": deaths.rejected,
        "death_rejects_by_reason": de["rejects_by_reason"],
        "reconciled": True,
        "invalid_codes": invalid,
        "episodes": ep, "deaths": de,
    }


# --------------------------------------------------------------------------- spells and linkage

def _counts_by(df: DataFrame, col: str) -> dict:
    return {(r[col] if r[col] is not None else "ACCEPTED"): int(r["n"])
            for r in df.groupBy(col).agg(F.count(F.lit(1)).alias("n")).collect()}


def stage_spells(spark: SparkSession, prepared: Prepared, trusts: pd.DataFrame, out: str, log: StageLog,
                 summary: dict) -> DataFrame:
    """Validate, build spells, link deaths; write ``spells/`` and ``rejects/``; return the spell table."""
    cfg = prepared.cfg
    work = f"{out}/_work"
    episodes, deaths, rejects = stage_validate(spark, prepared, trusts, work, log, summary)
    rejects.coalesce(1).write.parquet(f"{out}/rejects")
    n_accepted = summary["validate"]["episodes_accepted"]

    t0 = time.perf_counter()
    acute = sorted(trusts.loc[trusts["TYPE"] == "acute", "PROCODE3"])
    build_spells(episodes, acute_trusts=acute).write.parquet(f"{work}/spells_all")
    spells_all = spark.read.parquet(f"{work}/spells_all")
    unfinished = episodes.where(F.coalesce(F.col("EPISTAT"), F.lit("")) != "3").count()
    by_reason = _counts_by(spells_all, "EXCLUSION")
    in_spells = spells_all.agg(F.sum("N_EPISODES")).first()[0] or 0
    if in_spells + unfinished != n_accepted:
        raise ReconciliationError(f"episodes in spells {in_spells} + unfinished {unfinished} "
                                  f"!= accepted episodes {n_accepted}")
    n_included = by_reason.get("ACCEPTED", 0)
    if n_included == 0:
        raise InputError("no spells left after the exclusions (METHOD.md §2): nothing to model; "
                         f"exclusions: {', '.join(f'{k} {v:,}' for k, v in sorted(by_reason.items()))}")
    log.record("spells", n_accepted, n_included, t0)

    t0 = time.perf_counter()
    l4, l3 = lookup_tables(spark, prepared.lookup.codes)
    included = spells_all.where(F.col("EXCLUSION").isNull())
    linked = spell_table(included, deaths, lookup4=l4, lookup3=l3, charlson=prepared.charlson,
                         perinatal_groups=prepared.lookup.perinatal_groups, method=cfg.method)
    linked.write.parquet(f"{work}/linked")
    linked = spark.read.parquet(f"{work}/linked")
    spells = write_spell_table(spark, linked.select(*SPELL_COLUMNS), f"{out}/spells")
    n_table = sum(spells[1].values())
    if n_table != n_included:
        raise ReconciliationError(f"spell table has {n_table} rows, {n_included} spells were included")
    counts = linkage_counts(linked, deaths)
    table = spells[0]
    invalid = table.where(F.col("DIAG_GROUP") == cfg.method.invalid_diagnosis_group).count()
    summary["spells"] = {
        "episodes_unfinished": unfinished, "episodes_in_spells": int(in_spells),
        "spells_built": sum(by_reason.values()), "spells_included": n_included,
        "exclusions_by_reason": {r: by_reason.get(r, 0) for r in EXCLUSION_REASONS},
        "invalid_primary_diagnosis": invalid,
        "symptom_second_episode": cfg.method.symptom_second_episode,
        "rows_by_financial_year": {str(k): v for k, v in sorted(spells[1].items())},
    }
    summary["linkage"] = counts
    log.record("linkage", n_included, counts["deaths_linked"], t0)
    return table


def write_spell_table(spark: SparkSession, table: DataFrame, path: str) -> tuple[DataFrame, dict]:
    """Write the spell table by ``DIS_FYEAR`` with its manifest; return (the table read back, rows by year)."""
    (table.repartition("DIS_FYEAR").sortWithinPartitions("PROCODE3", "SPELL_ID")
     .write.partitionBy("DIS_FYEAR").parquet(path))
    spells = spark.read.parquet(path)
    by_year = {int(r["DIS_FYEAR"]): int(r["n"])
               for r in spells.groupBy("DIS_FYEAR").agg(F.count(F.lit(1)).alias("n")).collect()}
    manifest = {"rows_by_financial_year": {str(k): v for k, v in sorted(by_year.items())},
                "rows": sum(by_year.values()),
                "schema": {f.name: f.dataType.simpleString() for f in spells.schema.fields}}
    write_json(spark, manifest, path, SPELLS_MANIFEST)
    return spells, by_year


def check_spell_table(path: str) -> dict | None:
    """A local spell table must carry Spark's ``_SUCCESS`` marker; returns its manifest (or None).

    A table without the marker was not completely written (a killed run, a
    partial copy) and is refused.
    """
    root = local_path(path)
    if not root.is_dir():
        raise InputError(f"spells input {path} is not a folder (a previous run's spells/)")
    if not (root / "_SUCCESS").is_file():
        raise InputError(f"spells input {path} has no _SUCCESS marker: it was not completely written "
                         "(use the spells/ folder of a run that finished)")
    manifest = root / SPELLS_MANIFEST
    if not manifest.is_file():
        return None
    try:
        return json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"spells input {path}: unreadable {SPELLS_MANIFEST}: {exc}") from None


def stage_from_spells(spark: SparkSession, prepared: Prepared, log: StageLog, summary: dict) -> DataFrame:
    """Read an existing spell table (``input.spells``) instead of building one.

    The table must have the columns of docs/tables.md (``SPELL_COLUMNS``), and
    when it carries its manifest, the same types and the same rows in every
    financial year as when it was written: a year's folder missing or cut
    short is an error.
    """
    t0 = time.perf_counter()
    path = prepared.spells
    manifest = check_spell_table(path) if is_local(path) else None
    spells = spark.read.parquet(path)
    missing = [c for c in SPELL_COLUMNS if c not in spells.columns]
    if missing:
        raise InputError(f"spells input {path}: not a spell table, missing column(s) {', '.join(missing)}")
    by_year = {str(r["DIS_FYEAR"]): int(r["n"])
               for r in spells.groupBy("DIS_FYEAR").agg(F.count(F.lit(1)).alias("n")).collect()}
    if manifest is not None:
        types = {f.name: f.dataType.simpleString() for f in spells.schema.fields}
        wrong = [c for c, t in manifest.get("schema", {}).items() if types.get(c) != t]
        if wrong:
            raise InputError(f"spells input {path}: column {wrong[0]} is {types.get(wrong[0])}, "
                             f"written as {manifest['schema'][wrong[0]]}")
        expected = manifest.get("rows_by_financial_year", {})
        for year, n in sorted(expected.items()):
            if by_year.get(year, 0) != n:
                raise InputError(f"spells input {path}: financial year DIS_FYEAR={year} has "
                                 f"{by_year.get(year, 0):,} rows, {n:,} were written: the table is incomplete")
        extra = sorted(set(by_year) - set(expected))
        if extra:
            raise InputError(f"spells input {path}: DIS_FYEAR={extra[0]} was not in the table as written")
    n = sum(by_year.values())
    summary["inputs"] = {"spells": path, "trusts": prepared.trusts_path,
                         "diag_lookup": prepared.cfg.reference.diag_lookup,
                         "charlson": prepared.cfg.reference.charlson}
    summary["spells"] = {"spells_included": n, "read_from": path, "rows_by_financial_year": by_year,
                         "manifest_checked": manifest is not None}
    log.record("spells read", None, n, t0)
    return spells


# --------------------------------------------------------------------------- periods and indicator

def stage_plan_periods(spells: DataFrame, cfg: Config, log: StageLog, summary: dict) -> PeriodPlan:
    """The reporting periods, from the data's monthly discharges (METHOD.md §5–§6), before any fitting."""
    monthly = (spells.where(F.col("DISDATE").isNotNull())
               .groupBy(F.year("DISDATE").alias("YEAR"), F.month("DISDATE").alias("MONTH"))
               .agg(F.count(F.lit(1)).alias("SPELLS"), F.min("DISDATE").alias("FIRST_DISCHARGE"),
                    F.max("DISDATE").alias("LAST_DISCHARGE"))
               .toPandas())
    plan = plan_periods(cfg.method, MonthlyVolume.from_frame(monthly),
                        min_month_share=cfg.quality.min_month_share)
    for warning in plan.warnings:
        log.warn(warning)
    summary["period_plan"] = {"data_cover": plan.data_cover, "spells_after_last_period": plan.spells_after,
                              "periods": [p.label for p in plan.periods], "warnings": list(plan.warnings)}
    return plan


def stage_period(spark: SparkSession, cfg: Config, spells: DataFrame, period: Period, out: str,
                 lookup, log: StageLog) -> dict:
    """Fit the period's models on its window, score its spells; return its small tables."""
    t0 = time.perf_counter()
    cells = covariate_cells(spells, window_start=period.window_start, window_end=period.window_end,
                            invalid_group=cfg.method.invalid_diagnosis_group)
    models = fit_group_models(spark, cells, config=cfg.model,
                              groups_meta=lookup.groups[["DIAG_GROUP", "LABEL"]])
    safe = period.label.replace("/", "-").replace("..", "_")
    for name, table in (("coefficients", models.coefficients), ("diagnostics", models.diagnostics)):
        write_table(spark, table, f"{out}/model/{safe}", name)
    n_cells = int(models.diagnostics["N_CELLS"].sum()) if len(models.diagnostics) else 0
    log.record(f"models {period.label}"[:12], n_cells, len(models.diagnostics), t0)

    t0 = time.perf_counter()
    in_period = spells.where(F.col("DISDATE").between(F.lit(period.start), F.lit(period.end)))
    scored = score_spells(in_period, models.coefficients, window_start=period.window_start,
                          window_end=period.window_end).cache()
    by_trust = expected_by_trust(scored).toPandas()
    by_group = expected_by_trust_group(scored).toPandas()
    c_stats = c_statistics(scored)
    context = contextual_indicators(scored, invalid_group=cfg.method.invalid_diagnosis_group).toPandas()
    bad = scored.where(F.col("P_EXPECTED").isNull() | F.isnan("P_EXPECTED")
                       | (F.col("P_EXPECTED") < 0) | (F.col("P_EXPECTED") > 1)).count()
    scored.unpersist()
    if bad:
        raise ReconciliationError(f"{bad} spells of period {period.label} have no valid expected probability")
    log.record("expected", int(by_trust["SPELLS"].sum()), len(by_trust), t0)
    return {"models": models, "by_trust": by_trust, "by_group": by_group, "c_stats": c_stats,
            "context": context}


def run_indicator(spark: SparkSession, cfg: Config, spells: DataFrame, trusts: pd.DataFrame, lookup,
                  plan: PeriodPlan, out: str, log: StageLog, summary: dict) -> None:
    """Models, expected deaths, SHMI and banding for every planned period; the published files."""
    periods = list(plan.periods)
    trust_rows, group_rows, context_rows, quality_rows, period_summaries = [], [], [], [], []
    m = cfg.method
    for period in periods:
        res = stage_period(spark, cfg, spells, period, out, lookup, log)
        t0 = time.perf_counter()
        if res["by_trust"].empty:
            raise InputError(f"period {period.label} has no spells")
        rows, stats = trust_indicator(res["by_trust"], trusts, period, rescale=m.rescale_expected,
                                      trim_fraction=m.trim_fraction, min_expected=m.min_expected_deaths)
        trust_rows.append(rows)
        group_rows.append(group_breakdown(res["by_group"], period, factor=stats["rescale_factor"],
                                          trim_fraction=m.trim_fraction, min_expected=m.min_expected_deaths))
        context_rows.append(res["context"].assign(PERIOD=period.label))
        quality_rows.append(res["c_stats"].assign(PERIOD=period.label))
        overall = res["c_stats"][res["c_stats"]["DIAG_GROUP"].isna()]
        diag = res["models"].diagnostics
        period_summaries.append({
            "period": period.label, "start": period.start, "end": period.end,
            "window_start": period.window_start, "window_end": period.window_end,
            "spells": int(res["by_trust"]["SPELLS"].sum()), "observed": int(res["by_trust"]["OBSERVED"].sum()),
            "expected_unscaled": float(res["by_trust"]["EXPECTED"].sum()),
            **stats,
            "c_statistic_overall": float(overall["C_STATISTIC"].iloc[0]) if len(overall) else None,
            "r2_crude_on_expected": trust_r2(res["by_trust"]),
            "groups_fitted": int(len(diag)),
            "groups_by_rule": diag["RULE"].value_counts().to_dict() if len(diag) else {},
            "groups_not_converged": int((~diag["CONVERGED"]).sum()) if len(diag) else 0,
        })
        log.record("indicator", len(rows), int(rows["BANDING"].notna().sum()), t0)

    t0 = time.perf_counter()
    trust_all = pd.concat(trust_rows, ignore_index=True)
    check_trust_table(trust_all, period_summaries, rescaled=m.rescale_expected)
    group_all = pd.concat(group_rows, ignore_index=True)
    context_all = pd.concat(context_rows, ignore_index=True)
    areas = area_summaries(trust_all, trusts)
    write_table(spark, trust_all, out, "shmi_trust")
    write_table(spark, group_all, out, "shmi_trust_diag_group")
    write_table(spark, context_all, out, "contextual")
    write_table(spark, areas, out, "shmi_area")
    write_table(spark, pd.concat(quality_rows, ignore_index=True), out, "model_quality")
    files = ["shmi_trust", "shmi_trust_diag_group", "contextual", "shmi_area", "model_quality"]
    if m.five_year:
        yearly = [p.label for p in periods[:-1]]
        write_table(spark, shmi_panel(trust_all, yearly), out, "shmi_panel")
        outliers = outlier_persistence(trust_all, yearly)
        write_table(spark, outliers, out, "outliers")
        files += ["shmi_panel", "outliers"]
        summary["outliers_by_year"] = {y: sorted(outliers.loc[outliers["PERIOD"] == y, "PROVIDER_CODE"])
                                       for y in yearly}
    if cfg.output.publication:
        pub = f"{out}/publication"
        o = cfg.output
        for name, table in (("shmi_trust", trust_all), ("shmi_trust_diag_group", group_all),
                            ("contextual", context_all), ("shmi_area", areas)):
            write_table(spark, disclosure_control(table, suppress_min=o.suppress_min,
                                                  suppress_max=o.suppress_max, round_to=o.round_to),
                        pub, name, formats=("csv",))
    summary["periods"] = period_summaries
    summary["files"] = files
    log.record("files", len(trust_all), len(files), t0)


def check_trust_table(trust_all: pd.DataFrame, period_summaries: list[dict], *, rescaled: bool) -> None:
    """The published trust table before it is written: one row per trust and period, national O = E.

    ``EXPECTED`` is printed to 4 dp per trust, so the national sums may differ
    by the rounding: at most 5e-5 per trust.
    """
    for p in period_summaries:
        rows = trust_all[trust_all["PERIOD"] == p["period"]]
        if len(rows) != p["n_rows"] or rows["PROVIDER_CODE"].duplicated().any():
            raise ReconciliationError(f"period {p['period']}: {len(rows)} trust rows for {p['n_rows']} trusts")
        if rows["OBSERVED"].sum() != p["observed"]:
            raise ReconciliationError(f"period {p['period']}: observed deaths {rows['OBSERVED'].sum()} in the "
                                      f"table, {p['observed']} scored")
        if rescaled and abs(rows["EXPECTED"].sum() - rows["OBSERVED"].sum()) > 5e-5 * len(rows) + 1e-9:
            raise ReconciliationError(f"period {p['period']}: expected deaths {rows['EXPECTED'].sum():.4f} "
                                      f"after rescaling, observed {rows['OBSERVED'].sum()}")


def _sha256(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _file_stamps(paths: list[str]) -> list[tuple[str, int, int]]:
    stamps = []
    for p in paths:
        if is_local(p) and local_path(p).exists():
            root = local_path(p)
            files = [root] if root.is_file() else sorted(f for f in root.rglob("*") if f.is_file())
            stamps += [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
        else:
            stamps.append((p, -1, -1))
    return stamps


def run_fingerprint(prepared: Prepared, summary: dict) -> dict:
    """What identifies a run's result: version, config, and each input's files (paths, sizes, times)."""
    stamps = _file_stamps(list(prepared.inputs))
    return {
        "shmi_spark_version": __version__,
        "config_sha256": _sha256(prepared.cfg.to_dict()),
        "inputs_sha256": _sha256(stamps),
        "input_files": len(stamps),
        "input_bytes": int(np.sum([s[1] for s in stamps if s[1] > 0])) if stamps else 0,
        "periods": [p["period"] for p in summary.get("periods", [])],
    }
