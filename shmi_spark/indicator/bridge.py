"""The HSMR of a period and its bridge from the SHMI: the same engine run once per step.

README "SHMI and HSMR".  For a period whose SHMI is computed
(:func:`shmi_spark.indicator.compute.compute_period`, step 1 of the bridge):

1. the HSMR's diagnosis groups are chosen on the modelling window
   (:func:`shmi_spark.indicator.definitions.covered_groups`);
2. each further step of :data:`~shmi_spark.indicator.definitions.BRIDGE` is
   :func:`~shmi_spark.indicator.compute.fit_and_score` on its definition's
   table (one setting changed from the step before); the last is the HSMR;
3. the HSMR's trust and group tables, the bridge, and (with baskets) each
   basket's ratio under both indicators, scored by the models already fitted.

Every step's models go to ``model/<period>/<step>/`` beside the SHMI's.  A
step that only restricts the step before to the covered groups (step 3) takes
the step before's models and sums its trust × group results over those
groups: a group's model is fitted on that group's cells alone, so the run on
the covered groups fits the same models and scores the same spells
(tests/test_hsmr.py runs it directly and compares).  Its folder is then not
written: its models are the step before's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from shmi_spark.config import Config
from shmi_spark.indicator.baskets import Basket, basket_rows, basket_table
from shmi_spark.indicator.compute import PeriodResult, fit_and_score, in_period, model_folder
from shmi_spark.indicator.definitions import BRIDGE, SHMI, Definition, covered_groups, indicator_table
from shmi_spark.indicator.hsmr import bridge_table, hsmr_group_breakdown, hsmr_trust
from shmi_spark.io.publish import disclosure_control, write_table
from shmi_spark.io.reference import DiagLookup
from shmi_spark.model.scoring import expected_by, score_cells

__all__ = ["HsmrResult", "STEP_FOLDERS", "restricts_groups", "covered_sums", "compute_hsmr_period", "basket_sums",
           "write_hsmr_tables"]

#: the model folder of each step after the first (the SHMI's models are the period's own)
STEP_FOLDERS = {2: "bridge-2-in-hospital", 4: "bridge-4-superspells", 5: "hsmr"}


@dataclass(frozen=True)
class HsmrResult:
    """One period's HSMR tables, bridge, baskets, covered groups and summary."""

    trust_rows: pd.DataFrame
    group_rows: pd.DataFrame
    bridge_rows: pd.DataFrame
    basket_rows: pd.DataFrame
    coverage: pd.DataFrame
    summary: dict
    seconds: float


def basket_sums(table: DataFrame, coefficients, baskets: list[Basket], *, period) -> pd.DataFrame:
    """Per basket and trust: ``BASKET, PROCODE3, SPELLS, OBSERVED, EXPECTED`` of ``table``'s period, unscaled."""
    tagged = basket_rows(in_period(table, period), baskets)
    scored = score_cells(tagged, coefficients, window_start=period.window_start, window_end=period.window_end,
                         by=("BASKET", "PROCODE3"))
    return expected_by(scored, ["BASKET", "PROCODE3"]).toPandas()


def restricts_groups(before: Definition, after: Definition) -> bool:
    """``after`` is ``before`` restricted to the covered groups, every other setting the same."""
    return not before.covered_groups_only and after == before.but(after.name, covered_groups_only=True)


def covered_sums(by_trust_group: pd.DataFrame, groups: list[int]) -> pd.DataFrame:
    """Per trust: ``SPELLS, OBSERVED, EXPECTED`` summed over the covered ``groups`` (trusts without any: left out)."""
    covered = by_trust_group[by_trust_group["DIAG_GROUP"].astype(int).isin(groups)]
    return (covered.groupby("PROCODE3", as_index=False, sort=True)[["SPELLS", "OBSERVED", "EXPECTED"]].sum())


def compute_hsmr_period(spark: SparkSession, cfg: Config, spells: DataFrame, superspells: DataFrame,
                        shmi: PeriodResult, *, lookup: DiagLookup, trusts: pd.DataFrame, out: str,
                        baskets: list[Basket], listed_groups: list[int] | None) -> HsmrResult:
    """The period's HSMR, bridge and baskets (module doc); ``shmi`` is the period's SHMI (step 1)."""
    t0 = time.perf_counter()
    period, m = shmi.period, cfg.method
    coverage = covered_groups(spells, window_start=period.window_start, window_end=period.window_end,
                              coverage=cfg.hsmr.coverage, invalid_group=m.invalid_diagnosis_group,
                              listed=listed_groups)
    groups = sorted(int(g) for g in coverage.loc[coverage["COVERED"], "DIAG_GROUP"])
    steps = [(BRIDGE[0][0], BRIDGE[0][1], shmi.by_trust)]
    tables: dict[Definition, DataFrame] = {}
    scores = None
    previous = BRIDGE[0][2]
    seconds: dict[int, float] = {}
    for step, name, definition in BRIDGE[1:]:
        t1 = time.perf_counter()
        if scores is not None and restricts_groups(previous, definition):
            # the same models: each group's is fitted on its own cells (module doc)
            by_trust = covered_sums(scores.by_group, groups)
        else:
            table = indicator_table(spells, definition, superspells=superspells, groups=groups)
            tables[definition] = table
            scores = fit_and_score(spark, cfg, table, period, lookup=lookup, quality=False,
                                   model_dir=f"{model_folder(out, period)}/{STEP_FOLDERS[step]}")
            by_trust = scores.by_trust
        steps.append((step, name, by_trust))
        seconds[step] = round(time.perf_counter() - t1, 1)
        previous = definition
    assert scores is not None  # BRIDGE ends with the HSMR
    rows, stats = hsmr_trust(scores.by_trust, trusts, period, min_expected=m.min_expected_deaths)
    group_rows = hsmr_group_breakdown(scores.by_group, period, factor=stats["rescale_factor"])
    bridge = bridge_table(steps, period, shmi=shmi.trust_rows, hsmr=rows)
    basket_frames = []
    if baskets:
        shmi_table = indicator_table(spells, SHMI)
        hsmr_definition = BRIDGE[-1][2]
        for indicator, table, coefficients, factor in (
                ("SHMI", shmi_table, shmi.models.coefficients, shmi.summary["rescale_factor"]),
                ("HSMR", tables[hsmr_definition], scores.models.coefficients, stats["rescale_factor"])):
            sums = basket_sums(table, coefficients, baskets, period=period)
            basket_frames.append(basket_table(sums, period, indicator=indicator, factor=factor,
                                              min_expected=m.min_expected_deaths))
    basket_all = pd.concat(basket_frames, ignore_index=True) if basket_frames else pd.DataFrame()
    largest = bridge[bridge["LARGEST_CHANGE"]]
    summary = {"period": period.label, "groups_covered": len(groups),
               "in_hospital_deaths_covered": float(coverage.loc[coverage["COVERED"], "SHARE"].sum()),
               **stats,
               "groups_by_rule": scores.models.diagnostics["RULE"].value_counts().to_dict(),
               "seconds_by_step": seconds,
               "largest_step_count": {int(k): int(v) for k, v in largest["STEP"].value_counts().items()}}
    return HsmrResult(rows, group_rows, bridge, basket_all, coverage.assign(PERIOD=period.label), summary,
                      time.perf_counter() - t0)


def write_hsmr_tables(spark: SparkSession, cfg: Config, results: list[HsmrResult], out: str) -> list[str]:
    """Write the HSMR's files of every period (README "Outputs"); returns their names.

    ``hsmr_trust``, ``hsmr_trust_diag_group``, ``shmi_vs_hsmr`` (the bridge),
    ``hsmr_groups`` (the covered groups and their share of in-hospital deaths)
    and, with baskets, ``basket_trust``; in publication mode the tables with
    counts also go through disclosure control under ``publication/``.
    """
    tables = {
        "hsmr_trust": pd.concat([r.trust_rows for r in results], ignore_index=True),
        "hsmr_trust_diag_group": pd.concat([r.group_rows for r in results], ignore_index=True),
        "shmi_vs_hsmr": pd.concat([r.bridge_rows for r in results], ignore_index=True),
        "hsmr_groups": pd.concat([r.coverage for r in results], ignore_index=True),
    }
    if any(len(r.basket_rows) for r in results):
        tables["basket_trust"] = pd.concat([r.basket_rows for r in results], ignore_index=True)
    for name, table in tables.items():
        write_table(spark, table, out, name)
    if cfg.output.publication:
        o = cfg.output
        for name in ("hsmr_trust", "hsmr_trust_diag_group", "shmi_vs_hsmr", "basket_trust"):
            if name in tables:
                write_table(spark, disclosure_control(tables[name], suppress_min=o.suppress_min,
                                                      suppress_max=o.suppress_max, round_to=o.round_to),
                            f"{out}/publication", name, formats=("csv",))
    return list(tables)
