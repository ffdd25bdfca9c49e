"""Contextual indicators per trust and period (METHOD.md §7).

Palliative care coding (% of spells and of deaths); crude mortality for
elective and non-elective admissions; depth of coding (mean secondary
diagnoses, elective and non-elective); % of deaths in and outside hospital;
spells and deaths by deprivation fifth (with unknown); % missing for each model
covariate, which the paper recommends publishing.  One Spark aggregation over
the period's spells: only spell columns are read, no expected probability.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from shmi_spark.hes.levels import IMD_LEVELS, NOT_APPLICABLE, UNKNOWN

__all__ = ["contextual_indicators"]



def _pct(num: Column, den: Column) -> Column:
    return F.when(den > 0, F.round(F.lit(100.0) * num / den, 2))


def _count(cond: Column) -> Column:
    return F.sum(F.when(cond, 1).otherwise(0))


def _mean(value: Column, cond: Column) -> Column:
    return F.round(F.avg(F.when(cond, value)), 3)


def contextual_indicators(spells: DataFrame, *, invalid_group: int) -> DataFrame:
    """One row per ``PROCODE3`` with the §7 indicators of the given spells."""
    died = F.col("DIED") == 1
    elective = F.col("ADMIMETH_CAT") == "elective"
    non_elective = F.col("ADMIMETH_CAT") == "non-elective"
    pall = F.col("PALLIATIVE") == 1
    perinatal = F.col("BIRWEIT_BAND") != NOT_APPLICABLE
    aggs = [
        F.count(F.lit(1)).alias("SPELLS"), _count(died).alias("DEATHS"),
        _count(pall).alias("N_SPELLS_PALLIATIVE"), _count(pall & died).alias("N_DEATHS_PALLIATIVE"),
        _count(elective).alias("N_SPELLS_ELECTIVE"), _count(elective & died).alias("N_DEATHS_ELECTIVE"),
        _count(non_elective).alias("N_SPELLS_NON_ELECTIVE"), _count(non_elective & died).alias("N_DEATHS_NON_ELECTIVE"),
        _mean(F.col("N_SECONDARY"), elective).alias("MEAN_SECONDARY_ELECTIVE"),
        _mean(F.col("N_SECONDARY"), non_elective).alias("MEAN_SECONDARY_NON_ELECTIVE"),
        _count(died & (F.col("DEATH_IN_HOSPITAL") == 1)).alias("N_DEATHS_IN_HOSPITAL"),
        _count(F.col("AGE_BAND") == UNKNOWN).alias("N_SPELLS_AGE_UNKNOWN"),
        _count(F.col("SEX_CAT") == UNKNOWN).alias("N_SPELLS_SEX_UNKNOWN"),
        _count(F.col("ADMIMETH_CAT") == UNKNOWN).alias("N_SPELLS_ADMIMETH_UNKNOWN"),
        _count(perinatal).alias("N_SPELLS_PERINATAL"),
        _count(perinatal & (F.col("BIRWEIT_BAND") == UNKNOWN)).alias("N_SPELLS_PERINATAL_BIRTH_WEIGHT_UNKNOWN"),
        _count(F.col("DIAG_GROUP") == invalid_group).alias("N_SPELLS_INVALID_PRIMARY_DIAGNOSIS"),
        _count(F.col("IMD_FIFTH") == UNKNOWN).alias("N_SPELLS_IMD_UNKNOWN"),
    ]
    for level in IMD_LEVELS:
        tag = level.upper()
        aggs += [_count(F.col("IMD_FIFTH") == level).alias(f"SPELLS_IMD_{tag}"),
                 _count((F.col("IMD_FIFTH") == level) & died).alias(f"DEATHS_IMD_{tag}")]
    g = spells.groupBy("PROCODE3").agg(*aggs)
    n, d = F.col("SPELLS"), F.col("DEATHS")
    return g.select(
        F.col("PROCODE3").alias("PROVIDER_CODE"), "SPELLS", "DEATHS",
        _pct(F.col("N_SPELLS_PALLIATIVE"), n).alias("PCT_SPELLS_PALLIATIVE"),
        _pct(F.col("N_DEATHS_PALLIATIVE"), d).alias("PCT_DEATHS_PALLIATIVE"),
        _pct(F.col("N_DEATHS_ELECTIVE"), F.col("N_SPELLS_ELECTIVE")).alias("CRUDE_RATE_ELECTIVE"),
        _pct(F.col("N_DEATHS_NON_ELECTIVE"), F.col("N_SPELLS_NON_ELECTIVE")).alias("CRUDE_RATE_NON_ELECTIVE"),
        "MEAN_SECONDARY_ELECTIVE", "MEAN_SECONDARY_NON_ELECTIVE",
        _pct(F.col("N_DEATHS_IN_HOSPITAL"), d).alias("PCT_DEATHS_IN_HOSPITAL"),
        _pct(d - F.col("N_DEATHS_IN_HOSPITAL"), d).alias("PCT_DEATHS_OUTSIDE_HOSPITAL"),
        _pct(F.col("N_SPELLS_AGE_UNKNOWN"), n).alias("PCT_MISSING_AGE"),
        _pct(F.col("N_SPELLS_SEX_UNKNOWN"), n).alias("PCT_MISSING_SEX"),
        _pct(F.col("N_SPELLS_ADMIMETH_UNKNOWN"), n).alias("PCT_MISSING_ADMIMETH"),
        _pct(F.col("N_SPELLS_PERINATAL_BIRTH_WEIGHT_UNKNOWN"), F.col("N_SPELLS_PERINATAL"))
        .alias("PCT_MISSING_BIRTH_WEIGHT"),
        _pct(F.col("N_SPELLS_INVALID_PRIMARY_DIAGNOSIS"), n).alias("PCT_INVALID_PRIMARY_DIAGNOSIS"),
        _pct(F.col("N_SPELLS_IMD_UNKNOWN"), n).alias("PCT_MISSING_DEPRIVATION"),
        *[F.col(f"{kind}_IMD_{lv.upper()}") for lv in IMD_LEVELS for kind in ("SPELLS", "DEATHS")],
    ).orderBy("PROVIDER_CODE")
