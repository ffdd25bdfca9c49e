"""The run: ingest → validate → spells → linkage → models → expected → indicator → files.

Each stage is a pure function in its own module; this module only wires them,
materialises the stage tables under the run's one output folder, prints one
line per stage (rows in and out, seconds) and collects ``summary.json``.

Output folder (``output.dir``)::

    spells/                    the spell table (docs/tables.md), by DIS_FYEAR
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
"""

from __future__ import annotations

import datetime as dt
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from . import __version__
from .cells import covariate_cells
from .config import Config
from .contextual import contextual_indicators
from .diagnosis import lookup_tables
from .errors import InputError
from .expected import expected_by_trust, expected_by_trust_group, score_spells
from .indicator import (area_summaries, group_breakdown, outlier_persistence, shmi_panel,
                        trust_indicator)
from .ingest import (check_exists, is_local, read_deaths, read_episodes, read_trusts, resolve_inputs,
                     resolve_trusts)
from .linkage import linkage_counts
from .models import fit_group_models
from .periods import Period, five_year_periods, rolling_period
from .publish import disclosure_control, write_json, write_table
from .quality import c_statistics, trust_r2
from .reference import load_charlson, load_diag_lookup
from .spell_table import SPELL_COLUMNS, spell_table
from .spells import EXCLUSION_REASONS, build_spells
from .validate import REJECT_COLUMNS, duplicate_keys, flag_episodes, split_flagged, validate_deaths

STAGES = ("spells", "all")
# Up to this many duplicated EPIKEYs are joined back by broadcast (a few MB); more, by shuffle.
BROADCAST_DUP_KEYS = 200_000


class ReconciliationError(RuntimeError):
    """Counts that must add up did not: an internal failure, never silent."""


@dataclass
class StageLog:
    """One console line per stage, kept for summary.json."""

    quiet: bool = False
    rows: list = field(default_factory=list)

    def record(self, stage: str, rows_in: int | None, rows_out: int | None, started: float) -> None:
        seconds = round(time.perf_counter() - started, 2)
        self.rows.append({"stage": stage, "rows_in": rows_in, "rows_out": rows_out, "seconds": seconds})
        if not self.quiet:
            fmt = lambda v: "-" if v is None else f"{v:,}"  # noqa: E731
            print(f"[shmi] {stage:<12} in {fmt(rows_in):>12}  out {fmt(rows_out):>12}  {seconds:8.1f}s",
                  flush=True)


def _clear(path: str) -> None:
    if is_local(path):
        p = Path(path[5:] if path.startswith("file:") else path)
        if p.exists():
            shutil.rmtree(p)


def _counts_by(df: DataFrame, col: str) -> dict:
    return {(r[col] if r[col] is not None else "ACCEPTED"): int(r["n"])
            for r in df.groupBy(col).agg(F.count(F.lit(1)).alias("n")).collect()}


def load_references(cfg: Config):
    """(diag lookup, Charlson table) from the configured files and formats."""
    ref = cfg.reference
    lookup = load_diag_lookup(ref.diag_lookup, fmt=ref.diag_lookup_format, labels_path=ref.diag_labels)
    charlson = load_charlson(ref.charlson, fmt=ref.charlson_format, source=ref.charlson_source)
    return lookup, charlson


def stage_spells(spark: SparkSession, cfg: Config, out: str, log: StageLog, summary: dict):
    """Ingest, validate, build spells, link deaths; write ``spells/`` and ``rejects/``.

    Returns the spell table (read back from ``spells/``), the trust reference and
    the diagnosis lookup, for the later stages.
    """
    t0 = time.perf_counter()
    paths = resolve_inputs(cfg.input)
    trusts = read_trusts(spark, paths.trusts)
    raw_episodes = read_episodes(spark, paths.hes, cfg.input)
    raw_deaths = read_deaths(spark, paths.deaths, cfg.input)
    lookup, charlson = load_references(cfg)
    summary["inputs"] = {"hes": paths.hes, "deaths": paths.deaths, "trusts": paths.trusts,
                         "diag_lookup": cfg.reference.diag_lookup, "charlson": cfg.reference.charlson}
    episodes_read = raw_episodes.count()
    deaths_read = raw_deaths.count()
    log.record("ingest", None, episodes_read + deaths_read, t0)

    # validate: materialise the validated episodes once (typed + reason) for three readers
    t0 = time.perf_counter()
    work = f"{out}/_work"
    dup_keys = duplicate_keys(raw_episodes).persist(StorageLevel.MEMORY_AND_DISK)
    n_dup_keys = dup_keys.count()
    flag_episodes(raw_episodes, sorted(trusts["PROCODE3"]), dup_keys=dup_keys,
                  broadcast_dup_keys=n_dup_keys <= BROADCAST_DUP_KEYS).write.mode("overwrite").parquet(
        f"{work}/episodes_flagged")
    dup_keys.unpersist()
    episodes, ep_rejects = split_flagged(spark.read.parquet(f"{work}/episodes_flagged"))
    d_ok, d_rejects = validate_deaths(raw_deaths)
    d_ok.write.mode("overwrite").parquet(f"{work}/deaths")
    d_rejects.write.mode("overwrite").parquet(f"{work}/rejects_deaths")
    deaths = spark.read.parquet(f"{work}/deaths")
    de_rejects = spark.read.parquet(f"{work}/rejects_deaths")
    n_accepted, n_d_accepted = episodes.count(), deaths.count()
    ep_reasons = _counts_by(ep_rejects.withColumn("K", F.concat_ws(":", "REASON", "FIELD")), "K")
    de_reasons = _counts_by(de_rejects.withColumn("K", F.concat_ws(":", "REASON", "FIELD")), "K")
    n_rejected, n_d_rejected = sum(ep_reasons.values()), sum(de_reasons.values())
    if episodes_read != n_accepted + n_rejected or deaths_read != n_d_accepted + n_d_rejected:
        raise ReconciliationError(
            f"input rows do not reconcile: episodes read {episodes_read} vs accepted {n_accepted} + "
            f"rejected {n_rejected}; deaths read {deaths_read} vs {n_d_accepted} + {n_d_rejected}")
    (ep_rejects.unionByName(de_rejects).select(*REJECT_COLUMNS)
     .coalesce(1).write.mode("overwrite").parquet(f"{out}/rejects"))
    summary["validate"] = {
        "episodes_read": episodes_read, "episodes_accepted": n_accepted, "episodes_rejected": n_rejected,
        "episode_rejects_by_reason": dict(sorted(ep_reasons.items())),
        "deaths_read": deaths_read, "deaths_accepted": n_d_accepted, "deaths_rejected": n_d_rejected,
        "death_rejects_by_reason": dict(sorted(de_reasons.items())),
        "reconciled": True,
    }
    log.record("validate", episodes_read + deaths_read, n_accepted + n_d_accepted, t0)

    # spells and exclusions
    t0 = time.perf_counter()
    acute = sorted(trusts.loc[trusts["TYPE"] == "acute", "PROCODE3"])
    spells_all = build_spells(episodes, acute_trusts=acute)
    spells_all.write.mode("overwrite").parquet(f"{work}/spells_all")
    spells_all = spark.read.parquet(f"{work}/spells_all")
    unfinished = episodes.where(F.coalesce(F.col("EPISTAT"), F.lit("")) != "3").count()
    by_reason = _counts_by(spells_all, "EXCLUSION")
    in_spells = spells_all.agg(F.sum("N_EPISODES")).first()[0] or 0
    if in_spells + unfinished != n_accepted:
        raise ReconciliationError(f"episodes in spells {in_spells} + unfinished {unfinished} "
                                  f"!= accepted episodes {n_accepted}")
    n_spells = sum(by_reason.values())
    n_included = by_reason.get("ACCEPTED", 0)
    log.record("spells", n_accepted, n_included, t0)

    # diagnosis group, covariates, death linkage
    t0 = time.perf_counter()
    l4, l3 = lookup_tables(spark, lookup.codes)
    included = spells_all.where(F.col("EXCLUSION").isNull())
    linked = spell_table(included, deaths, lookup4=l4, lookup3=l3, charlson=charlson,
                         perinatal_groups=lookup.perinatal_groups, method=cfg.method)
    linked.write.mode("overwrite").parquet(f"{work}/linked")
    linked = spark.read.parquet(f"{work}/linked")
    (linked.select(*SPELL_COLUMNS).repartition("DIS_FYEAR").sortWithinPartitions("PROCODE3", "SPELL_ID")
     .write.mode("overwrite").partitionBy("DIS_FYEAR").parquet(f"{out}/spells"))
    spells = spark.read.parquet(f"{out}/spells")
    n_table = spells.count()
    if n_table != n_included:
        raise ReconciliationError(f"spell table has {n_table} rows, {n_included} spells were included")
    counts = linkage_counts(linked, deaths)
    invalid = spells.where(F.col("DIAG_GROUP") == cfg.method.invalid_diagnosis_group).count()
    summary["spells"] = {
        "episodes_unfinished": unfinished, "episodes_in_spells": int(in_spells),
        "spells_built": n_spells, "spells_included": n_included,
        "exclusions_by_reason": {r: by_reason.get(r, 0) for r in EXCLUSION_REASONS},
        "invalid_primary_diagnosis": invalid,
        "symptom_second_episode": cfg.method.symptom_second_episode,
    }
    summary["linkage"] = counts
    log.record("linkage", n_included, counts["deaths_linked"], t0)
    return spells, trusts, lookup


def stage_from_spells(spark: SparkSession, cfg: Config, log: StageLog, summary: dict):
    """Read an existing spell table (``input.spells``) instead of building one.

    The table must have the columns of docs/tables.md (``SPELL_COLUMNS``);
    summary.json records where it came from.
    """
    t0 = time.perf_counter()
    path, trusts_path = cfg.input.spells, resolve_trusts(cfg.input)
    trusts = read_trusts(spark, trusts_path)
    lookup, _ = load_references(cfg)
    spells = spark.read.parquet(path)
    missing = [c for c in SPELL_COLUMNS if c not in spells.columns]
    if missing:
        raise InputError(f"spells input {path}: not a spell table, missing column(s) {', '.join(missing)}")
    n = spells.count()
    summary["inputs"] = {"spells": path, "trusts": trusts_path,
                         "diag_lookup": cfg.reference.diag_lookup, "charlson": cfg.reference.charlson}
    summary["spells"] = {"spells_included": n, "read_from": path}
    log.record("spells read", None, n, t0)
    return spells, trusts, lookup


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


def run_pipeline(spark: SparkSession, cfg: Config, *, stage: str = "all", quiet: bool = False) -> dict:
    """Run the pipeline into ``cfg.output.dir``; return the summary (also written as summary.json)."""
    if stage not in STAGES:
        raise InputError(f"unknown stage '{stage}' (known: {', '.join(STAGES)})")
    out = cfg.output.dir.rstrip("/")
    if not out:
        raise InputError("no output folder: set --out DIR or output.dir")
    started = time.perf_counter()
    log = StageLog(quiet=quiet)
    summary: dict = {
        "shmi_spark_version": __version__, "spark_version": spark.version,
        "python": platform.python_version(), "started_utc": dt.datetime.now(dt.timezone.utc).isoformat(),
        "command": " ".join(sys.argv), "config": cfg.to_dict(),
    }
    # fail on a missing input before anything is cleared
    if cfg.input.spells:
        check_exists(cfg.input.spells, "spells")
        check_exists(resolve_trusts(cfg.input), "trusts reference")
        if is_local(out) and is_local(cfg.input.spells) and Path(out).resolve() in [
                Path(cfg.input.spells).resolve(), *Path(cfg.input.spells).resolve().parents]:
            raise InputError(f"--spells {cfg.input.spells} is inside the output folder {out}, "
                             "which the run clears: copy it elsewhere or write to another folder")
    else:
        resolve_inputs(cfg.input)
    if cfg.output.overwrite:
        _clear(out)
    if cfg.input.spells:
        spells, trusts, lookup = stage_from_spells(spark, cfg, log, summary)
    else:
        spells, trusts, lookup = stage_spells(spark, cfg, out, log, summary)
    if stage == "all":
        run_indicator(spark, cfg, spells, trusts, lookup, out, log, summary)
    _clear(f"{out}/_work")
    summary["stages"] = log.rows
    summary["seconds_total"] = round(time.perf_counter() - started, 1)
    write_json(spark, summary, out, "summary.json")
    return summary


def run_indicator(spark: SparkSession, cfg: Config, spells: DataFrame, trusts: pd.DataFrame, lookup,
                  out: str, log: StageLog, summary: dict) -> None:
    """Models, expected deaths, SHMI and banding for every period; the published files."""
    if cfg.method.five_year:
        periods = five_year_periods(cfg.method)
    else:
        max_dis = spells.agg(F.max("DISDATE")).first()[0]
        if max_dis is None:
            raise InputError("no spells left after exclusions: nothing to model")
        periods = [rolling_period(cfg.method, max_dis)]
    trust_rows, group_rows, context_rows, quality_rows, period_summaries = [], [], [], [], []
    for period in periods:
        res = stage_period(spark, cfg, spells, period, out, lookup, log)
        t0 = time.perf_counter()
        if res["by_trust"].empty:
            raise InputError(f"period {period.label} has no spells")
        rows, stats = trust_indicator(res["by_trust"], trusts, period, rescale=cfg.method.rescale_expected,
                                      trim_fraction=cfg.method.trim_fraction)
        trust_rows.append(rows)
        group_rows.append(group_breakdown(res["by_group"], period, factor=stats["rescale_factor"],
                                          trim_fraction=cfg.method.trim_fraction))
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
    group_all = pd.concat(group_rows, ignore_index=True)
    context_all = pd.concat(context_rows, ignore_index=True)
    areas = area_summaries(trust_all, trusts)
    write_table(spark, trust_all, out, "shmi_trust")
    write_table(spark, group_all, out, "shmi_trust_diag_group")
    write_table(spark, context_all, out, "contextual")
    write_table(spark, areas, out, "shmi_area")
    write_table(spark, pd.concat(quality_rows, ignore_index=True), out, "model_quality")
    files = ["shmi_trust", "shmi_trust_diag_group", "contextual", "shmi_area", "model_quality"]
    if cfg.method.five_year:
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
