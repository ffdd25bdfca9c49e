"""Model quality (METHOD.md §8; the development paper's figures).

* :func:`c_statistics` — C statistic (area under the ROC curve) per diagnosis
  group and overall, exact: the scored spells, or the scored cells of
  :func:`shmi_spark.model.scoring.score_cells`, are aggregated in Spark to
  their distinct predicted probabilities with death and survivor counts
  (a spell: ``D = DIED``, ``S = 1 − DIED``; a cell: ``D = DEATHS``,
  ``S = SPELLS − DEATHS``), and
  ``C = Σ_p D_p · (S_{<p} + S_p / 2) / (D · S)`` (rank-sum formula, ties
  counted half) is evaluated with a window over those few rows.
* :func:`calibration_deciles` — observed and expected deaths by tenth of
  predicted risk (the calibration of the models, METHOD.md §8).
* :func:`trust_r2` — R² of the least-squares line of each trust's crude death
  rate on its expected death rate.
* :func:`diffsum` — the difference in expected deaths between two models
  against their mean, flagged against the ±5% lines; :func:`rank_correlation`
  — Spearman's rank correlation of two models' values.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from scipy.stats import spearmanr

__all__ = ["c_statistics", "calibration_deciles", "trust_r2", "diffsum", "rank_correlation"]


def _c_from_counts(counts: DataFrame, keys: list[str]) -> DataFrame:
    """counts: keys + P + D + S → keys, SPELLS, DEATHS, C_STATISTIC."""
    w = (Window.partitionBy(*keys).orderBy("P") if keys else Window.orderBy("P")) \
        .rowsBetween(Window.unboundedPreceding, -1)
    below = counts.withColumn("S_BELOW", F.coalesce(F.sum("S").over(w), F.lit(0)).cast("double"))
    agg = below.groupBy(*keys).agg(
        F.sum(F.col("D").cast("double") * (F.col("S_BELOW") + F.col("S").cast("double") / 2)).alias("NUM"),
        F.sum("D").cast("long").alias("DEATHS"),
        F.sum("S").cast("long").alias("SURVIVORS"))
    c = F.when((F.col("DEATHS") > 0) & (F.col("SURVIVORS") > 0),
               F.col("NUM") / (F.col("DEATHS").cast("double") * F.col("SURVIVORS").cast("double")))
    return agg.select(*keys, (F.col("DEATHS") + F.col("SURVIVORS")).alias("SPELLS"), "DEATHS",
                      c.cast("double").alias("C_STATISTIC"))


def _counts(scored: DataFrame) -> DataFrame:
    """(group, P) → deaths ``D`` and survivors ``S``, from scored spells or scored cells."""
    if "SPELLS" in scored.columns and "DEATHS" in scored.columns:
        rows = scored.where(F.col("P_EXPECTED").isNotNull() & F.col("DEATHS").isNotNull())
        d, s = F.col("DEATHS").cast("long"), (F.col("SPELLS") - F.col("DEATHS")).cast("long")
    else:
        rows = scored.where(F.col("P_EXPECTED").isNotNull() & F.col("DIED").isNotNull())
        d = F.col("DIED").cast("long")
        s = F.lit(1) - d
    return (rows.groupBy("DIAG_GROUP", F.col("P_EXPECTED").alias("P"))
            .agg(F.sum(d).alias("D"), F.sum(s).alias("S")))


def c_statistics(scored: DataFrame) -> pd.DataFrame:
    """C statistic per group and overall (pandas).

    ``scored`` is scored spells (``DIAG_GROUP, P_EXPECTED, DIED``) or scored
    cells (``DIAG_GROUP, P_EXPECTED, SPELLS, DEATHS``): a cell counts as its
    ``SPELLS`` spells with its probability, so both give the same result.
    Columns: ``DIAG_GROUP`` (Int64; ``<NA>`` on the overall row, which comes
    last), ``SPELLS, DEATHS, C_STATISTIC`` (null when a group has no deaths or
    no survivors).  Spells without a ``P_EXPECTED`` are left out.
    """
    counts = _counts(scored).cache()
    try:
        per_group = cast(pd.DataFrame, _c_from_counts(counts, ["DIAG_GROUP"]).toPandas())
        overall_counts = counts.groupBy("P").agg(F.sum("D").alias("D"), F.sum("S").alias("S"))
        overall = cast(pd.DataFrame, _c_from_counts(overall_counts, []).toPandas())
    finally:
        counts.unpersist()
    per_group = per_group.sort_values("DIAG_GROUP").reset_index(drop=True)
    overall.insert(0, "DIAG_GROUP", pd.NA)
    out = pd.concat([per_group, overall], ignore_index=True)
    return out.astype({"DIAG_GROUP": "Int64", "SPELLS": "int64", "DEATHS": "int64",
                       "C_STATISTIC": "float64"})


def calibration_deciles(scored: DataFrame, *, tenths: int = 10) -> pd.DataFrame:
    """Observed and expected deaths by tenth of predicted risk, nationally (pandas).

    The spells (or scored cells, each counting as its ``SPELLS`` spells) are
    ordered by ``P_EXPECTED``; a probability's spells all go to one tenth, the
    one holding the middle of their run in the cumulated spells:
    ``DECILE = min(10, floor(10 · (N_below + n_p / 2) / N) + 1)``, so ties are
    never split and a tenth may hold more or fewer than N/10 spells.
    Columns: ``DECILE, SPELLS, OBSERVED, EXPECTED`` (the models' own ΣP, not
    rescaled), ``P_LOW, P_HIGH`` (the tenth's smallest and largest
    probability), one row per tenth that holds spells.  Spells without a
    ``P_EXPECTED`` are left out.
    """
    counts = (_counts(scored).groupBy("P").agg(F.sum("D").alias("D"), F.sum("S").alias("S"))
              .withColumn("N", F.col("D") + F.col("S")))
    ordered = Window.orderBy("P").rowsBetween(Window.unboundedPreceding, -1)
    everything = Window.partitionBy()
    below = F.coalesce(F.sum("N").over(ordered), F.lit(0)).cast("double")
    decile = F.least(F.lit(tenths), F.floor(F.lit(float(tenths)) * (below + F.col("N") / 2)
                                            / F.sum("N").over(everything)).cast("int") + 1)
    rows = (counts.withColumn("DECILE", decile)
            .groupBy("DECILE")
            .agg(F.sum("N").cast("long").alias("SPELLS"), F.sum("D").cast("long").alias("OBSERVED"),
                 F.sum(F.col("N").cast("double") * F.col("P")).alias("EXPECTED"),
                 F.min("P").alias("P_LOW"), F.max("P").alias("P_HIGH"))
            .orderBy("DECILE"))
    out = cast(pd.DataFrame, rows.toPandas())
    return out.astype({"DECILE": "int64", "SPELLS": "int64", "OBSERVED": "int64", "EXPECTED": "float64",
                       "P_LOW": "float64", "P_HIGH": "float64"})


def _to_pandas(table) -> pd.DataFrame:
    return table.toPandas() if isinstance(table, DataFrame) else pd.DataFrame(table)


def trust_r2(by_trust) -> float:
    """R² of the linear regression of crude death rate (O/SPELLS) on expected rate (E/SPELLS).

    ``by_trust`` has ``SPELLS, OBSERVED, EXPECTED`` (Spark or pandas, e.g.
    :func:`shmi_spark.model.scoring.expected_by_trust`).  Trusts with no spells
    are left out; NaN when fewer than two trusts or a rate does not vary.
    """
    t = _to_pandas(by_trust)
    t = t[t["SPELLS"] > 0]
    if len(t) < 2:
        return float("nan")
    crude = t["OBSERVED"].to_numpy(float) / t["SPELLS"].to_numpy(float)
    exp_rate = t["EXPECTED"].to_numpy(float) / t["SPELLS"].to_numpy(float)
    if np.ptp(crude) == 0 or np.ptp(exp_rate) == 0:
        return float("nan")
    r = np.corrcoef(exp_rate, crude)[0, 1]
    return float(r * r)


def _expected_frame(x, key: str, name: str) -> pd.DataFrame:
    if isinstance(x, (DataFrame, pd.DataFrame)):
        f = _to_pandas(x)
        return f[[key, "EXPECTED"]].rename(columns={"EXPECTED": name})
    values = np.asarray(x, dtype=float)
    return pd.DataFrame({key: np.arange(len(values)), name: values})


def diffsum(expected_a, expected_b, *, key: str = "PROCODE3", lines: float = 0.05) -> pd.DataFrame:
    """Model A against model B: difference in expected deaths against their mean.

    ``expected_a`` / ``expected_b``: tables with ``key`` and ``EXPECTED``
    (Spark or pandas, e.g. two :func:`expected_by_trust` results), or two
    aligned sequences of expected deaths (then ``key`` is the position).
    Returns, per unit: ``EXPECTED_A, EXPECTED_B, MEAN = (A+B)/2,
    DIFF = A−B, DIFF_PCT = DIFF/MEAN`` and the flags ``ABOVE`` (DIFF > +lines·MEAN),
    ``BELOW`` (DIFF < −lines·MEAN) and ``OUTSIDE`` (either), i.e. outside the
    paper's ±5% lines.  ``attrs['share_outside']`` is the share of units outside.
    """
    a = _expected_frame(expected_a, key, "EXPECTED_A")
    b = _expected_frame(expected_b, key, "EXPECTED_B")
    if len(a) != len(b) or set(a[key]) != set(b[key]):
        raise ValueError("diffsum: the two models do not cover the same units")
    out = a.merge(b, on=key, how="inner").sort_values(key).reset_index(drop=True)
    out["MEAN"] = (out["EXPECTED_A"] + out["EXPECTED_B"]) / 2
    out["DIFF"] = out["EXPECTED_A"] - out["EXPECTED_B"]
    out["DIFF_PCT"] = np.where(out["MEAN"] > 0, out["DIFF"] / out["MEAN"].where(out["MEAN"] > 0, 1.0), 0.0)
    out["ABOVE"] = out["DIFF"] > lines * out["MEAN"]
    out["BELOW"] = out["DIFF"] < -lines * out["MEAN"]
    out["OUTSIDE"] = out["ABOVE"] | out["BELOW"]
    out.attrs["share_outside"] = float(out["OUTSIDE"].mean()) if len(out) else 0.0
    return out


def rank_correlation(values_a, values_b) -> float:
    """Spearman's rank correlation between two models' values (e.g. SHMI per trust)."""
    a = np.asarray(values_a, dtype=float)
    b = np.asarray(values_b, dtype=float)
    return float(spearmanr(a, b).statistic)
