"""The indicator stage: for each planned period, models → expected deaths → SHMI and banding → files.

METHOD.md §5–§8.  :func:`plan_run_periods` plans the periods from the spell
table's monthly discharges before any model is fitted
(:mod:`shmi_spark.indicator.periods`); :func:`compute_period` fits one
period's group models on its window, scores its spells (through trust × group ×
covariate cell counts) and bands its trusts;
:func:`write_indicator_tables` checks and writes the published tables.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from shmi_spark.config import Config
from shmi_spark.errors import InputError
from shmi_spark.indicator.contextual import contextual_indicators
from shmi_spark.indicator.definitions import SHMI, indicator_table
from shmi_spark.indicator.periods import MonthlyVolume, Period, PeriodPlan, plan_periods
from shmi_spark.indicator.tables import (
    area_summaries,
    group_breakdown,
    outlier_persistence,
    shmi_panel,
    trust_areas,
    trust_indicator,
)
from shmi_spark.io.publish import disclosure_control, write_table
from shmi_spark.io.reference import DiagLookup
from shmi_spark.model.cells import covariate_cells
from shmi_spark.model.fit import GroupModels, fit_group_models
from shmi_spark.model.quality import c_statistics, calibration_deciles, trust_r2
from shmi_spark.model.scoring import expected_by_trust, expected_by_trust_group, score_cells

__all__ = ["PeriodResult", "ModelScores", "IndicatorFiles", "OutputCheckFailed", "plan_run_periods", "in_period",
           "fit_and_score", "compute_period",
           "spells_without_valid_probability", "write_indicator_tables", "check_trust_table", "model_folder"]


class OutputCheckFailed(RuntimeError):
    """A published table breaks a count that must hold: an internal failure, never silent."""


@dataclass(frozen=True)
class PeriodResult:
    """One period: its models, trust and group tables, quality and contextual tables, and its summary."""

    period: Period
    models: GroupModels
    trust_rows: pd.DataFrame
    group_rows: pd.DataFrame
    context: pd.DataFrame
    c_stats: pd.DataFrame
    calibration: pd.DataFrame
    seconds_models: float
    seconds_expected: float
    seconds_indicator: float
    n_cells: int
    summary: dict
    # the trust sums before rescaling (PROCODE3, SPELLS, OBSERVED, EXPECTED): the bridge's step 1
    by_trust: pd.DataFrame


@dataclass(frozen=True)
class IndicatorFiles:
    """What :func:`write_indicator_tables` wrote."""

    files: list[str]
    outliers_by_year: dict | None


def plan_run_periods(spells: DataFrame, cfg: Config) -> PeriodPlan:
    """The reporting periods, from the data's monthly discharges (METHOD.md §5–§6), before any fitting."""
    monthly = (spells.where(F.col("DISDATE").isNotNull())
               .groupBy(F.year("DISDATE").alias("YEAR"), F.month("DISDATE").alias("MONTH"))
               .agg(F.count(F.lit(1)).alias("SPELLS"), F.min("DISDATE").alias("FIRST_DISCHARGE"),
                    F.max("DISDATE").alias("LAST_DISCHARGE"))
               .toPandas())
    return plan_periods(cfg.method, MonthlyVolume.from_frame(monthly), min_month_share=cfg.quality.min_month_share)


def model_folder(out: str, period: Period) -> str:
    """``out/model/<period>``, the period's label made a folder name (``2005-06``, ``2009-10_2010-09``)."""
    return f"{out}/model/{period.label.replace('/', '-').replace('..', '_')}"


def spells_without_valid_probability(scored_cells: DataFrame) -> int:
    """Spells (Σ ``SPELLS``) whose cell's ``P_EXPECTED`` is null, NaN or outside [0, 1]; 0 when all are valid."""
    p = F.col("P_EXPECTED")
    row = scored_cells.where(p.isNull() | F.isnan(p) | (p < 0) | (p > 1)).agg(F.sum("SPELLS")).first()
    return int(row[0] or 0) if row is not None else 0


@dataclass(frozen=True)
class ModelScores:
    """One indicator's models for a period and its period's spells scored by them (:func:`fit_and_score`)."""

    models: GroupModels
    by_trust: pd.DataFrame
    by_group: pd.DataFrame
    c_stats: pd.DataFrame
    calibration: pd.DataFrame
    n_cells: int
    seconds_models: float
    seconds_expected: float


def in_period(table: DataFrame, period: Period) -> DataFrame:
    """The rows of ``table`` discharged in the reporting period."""
    return table.where(F.col("DISDATE").between(F.lit(period.start), F.lit(period.end)))


def fit_and_score(spark: SparkSession, cfg: Config, table: DataFrame, period: Period, *, lookup: DiagLookup,
                  model_dir: str, quality: bool = True) -> ModelScores:
    """The engine every indicator runs: fit the group models on the window, score the period (METHOD.md §5–§6).

    ``table`` is an indicator's table (:func:`shmi_spark.indicator.definitions.indicator_table`).
    The spells are scored through counts (:func:`score_cells`): expected deaths by
    trust and by trust × group, the C statistics (when ``quality``) and the check that
    every spell has a valid probability all come from the scored trust × group ×
    covariate cells, the same sums as scoring every spell.  The models'
    coefficients, diagnostics and separated cells are written to ``model_dir``.
    """
    m = cfg.method
    t0 = time.perf_counter()
    cells = covariate_cells(table, window_start=period.window_start, window_end=period.window_end,
                            invalid_group=m.invalid_diagnosis_group)
    models = fit_group_models(spark, cells, config=cfg.model, groups_meta=lookup.groups[["DIAG_GROUP", "LABEL"]])
    for name, frame in (("coefficients", models.coefficients), ("diagnostics", models.diagnostics),
                        ("separated_cells", models.separated)):
        write_table(spark, frame, model_dir, name)
    seconds_models = time.perf_counter() - t0

    t0 = time.perf_counter()
    # through counts: each trust × group × covariate cell scored once, not every spell (METHOD.md §6)
    scored = score_cells(in_period(table, period), models.coefficients, window_start=period.window_start,
                         window_end=period.window_end).cache()
    try:
        by_trust: pd.DataFrame = expected_by_trust(scored).toPandas()
        by_group: pd.DataFrame = expected_by_trust_group(scored).toPandas()
        c_stats = c_statistics(scored) if quality else pd.DataFrame()
        calibration = calibration_deciles(scored) if quality else pd.DataFrame()
        bad = spells_without_valid_probability(scored)
    finally:
        scored.unpersist()
    if bad:
        raise OutputCheckFailed(f"{bad} spells of period {period.label} have no valid expected probability")
    if by_trust.empty:
        raise InputError(f"period {period.label} has no spells")
    diag = models.diagnostics
    n_cells = int(diag["N_CELLS"].sum()) if len(diag) else 0
    return ModelScores(models, by_trust, by_group, c_stats, calibration, n_cells, seconds_models,
                       time.perf_counter() - t0)


def compute_period(spark: SparkSession, cfg: Config, spells: DataFrame, period: Period, *, lookup: DiagLookup,
                   trusts: pd.DataFrame, out: str) -> PeriodResult:
    """The SHMI of one period: its models and scores (:func:`fit_and_score`), trusts banded (METHOD.md §5–§8).

    The contextual indicators (§7) are one aggregation over the period's spells.
    """
    m = cfg.method
    s = fit_and_score(spark, cfg, indicator_table(spells, SHMI), period, lookup=lookup,
                      model_dir=model_folder(out, period))
    t0 = time.perf_counter()
    context: pd.DataFrame = contextual_indicators(in_period(spells, period),
                                                  invalid_group=m.invalid_diagnosis_group).toPandas()
    seconds_expected = s.seconds_expected + time.perf_counter() - t0
    t0 = time.perf_counter()
    rows, stats = trust_indicator(s.by_trust, trusts, period, rescale=m.rescale_expected,
                                  trim_fraction=m.trim_fraction, min_expected=m.min_expected_deaths)
    groups = group_breakdown(s.by_group, period, factor=stats["rescale_factor"], trim_fraction=m.trim_fraction,
                             min_expected=m.min_expected_deaths)
    overall = s.c_stats[s.c_stats["DIAG_GROUP"].isna()]
    diag = s.models.diagnostics
    summary = {
        "period": period.label, "start": period.start, "end": period.end,
        "window_start": period.window_start, "window_end": period.window_end,
        "spells": int(s.by_trust["SPELLS"].sum()), "observed": int(s.by_trust["OBSERVED"].sum()),
        "expected_unscaled": float(s.by_trust["EXPECTED"].sum()),
        **stats,
        "c_statistic_overall": float(overall["C_STATISTIC"].iloc[0]) if len(overall) else None,
        "r2_crude_on_expected": trust_r2(s.by_trust),
        "groups_fitted": int(len(diag)),
        "groups_by_rule": diag["RULE"].value_counts().to_dict() if len(diag) else {},
        "groups_not_converged": int((~diag["CONVERGED"]).sum()) if len(diag) else 0,
    }
    return PeriodResult(period, s.models, rows, groups, context.assign(PERIOD=period.label),
                        s.c_stats.assign(PERIOD=period.label), s.calibration.assign(PERIOD=period.label),
                        s.seconds_models, seconds_expected,
                        time.perf_counter() - t0, s.n_cells, summary, s.by_trust)


def check_trust_table(trust_all: pd.DataFrame, results: list[PeriodResult], *, rescaled: bool) -> None:
    """The published trust table before it is written: one row per trust and period, national O = E.

    ``EXPECTED`` is printed to 4 dp per trust, so the national sums may differ
    by the rounding: at most 5e-5 per trust.
    """
    for r in results:
        p = r.summary
        rows = trust_all[trust_all["PERIOD"] == p["period"]]
        if len(rows) != p["n_rows"] or rows["PROVIDER_CODE"].duplicated().any():
            raise OutputCheckFailed(f"period {p['period']}: {len(rows)} trust rows for {p['n_rows']} trusts")
        if rows["OBSERVED"].sum() != p["observed"]:
            raise OutputCheckFailed(f"period {p['period']}: observed deaths {rows['OBSERVED'].sum()} in the "
                                    f"table, {p['observed']} scored")
        if rescaled and abs(rows["EXPECTED"].sum() - rows["OBSERVED"].sum()) > 5e-5 * len(rows) + 1e-9:
            raise OutputCheckFailed(f"period {p['period']}: expected deaths {rows['EXPECTED'].sum():.4f} "
                                    f"after rescaling, observed {rows['OBSERVED'].sum()}")


def write_indicator_tables(spark: SparkSession, cfg: Config, results: list[PeriodResult], trusts: pd.DataFrame,
                           out: str, *, lookup: DiagLookup) -> IndicatorFiles:
    """Check and write the published tables of every period (README "Outputs").

    Beside them, for the report (:mod:`shmi_spark.report`): ``trust_areas``
    (each trust's region and peer group per period), ``diag_groups`` (each
    group's label and supergroup) and ``model_calibration`` (deaths by tenth
    of predicted risk per period).
    """
    trust_all = pd.concat([r.trust_rows for r in results], ignore_index=True)
    check_trust_table(trust_all, results, rescaled=cfg.method.rescale_expected)
    group_all = pd.concat([r.group_rows for r in results], ignore_index=True)
    context_all = pd.concat([r.context for r in results], ignore_index=True)
    areas = area_summaries(trust_all, trusts)
    tables = {"shmi_trust": trust_all, "shmi_trust_diag_group": group_all, "contextual": context_all,
              "shmi_area": areas, "model_quality": pd.concat([r.c_stats for r in results], ignore_index=True),
              "model_calibration": pd.concat([r.calibration for r in results], ignore_index=True),
              "trust_areas": trust_areas(trust_all, trusts), "diag_groups": lookup.supergroups()}
    outliers_by_year = None
    if cfg.method.five_year:
        yearly = [r.period.label for r in results[:-1]]
        outliers = outlier_persistence(trust_all, yearly)
        tables |= {"shmi_panel": shmi_panel(trust_all, yearly), "outliers": outliers}
        outliers_by_year = {y: sorted(outliers.loc[outliers["PERIOD"] == y, "PROVIDER_CODE"]) for y in yearly}
    for name, table in tables.items():
        write_table(spark, table, out, name)
    if cfg.output.publication:
        o = cfg.output
        for name in ("shmi_trust", "shmi_trust_diag_group", "contextual", "shmi_area"):
            write_table(spark, disclosure_control(tables[name], suppress_min=o.suppress_min,
                                                  suppress_max=o.suppress_max, round_to=o.round_to),
                        f"{out}/publication", name, formats=("csv",))
    return IndicatorFiles(files=list(tables), outliers_by_year=outliers_by_year)
