"""Contextual indicators per trust and period (METHOD.md §7).

Palliative care coding (% of spells and of deaths); crude mortality for
elective and non-elective admissions; depth of coding (mean secondary
diagnoses, elective and non-elective); % of deaths in and outside hospital;
spells and deaths by deprivation fifth (with unknown); % missing for each model
covariate, which the paper recommends publishing.  One Spark aggregation over
the period's spells.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

IMD_LEVELS = ("1", "2", "3", "4", "5", "unknown")


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
    perinatal = F.col("BIRWEIT_BAND") != "n/a"
    aggs = [
        F.count(F.lit(1)).alias("SPELLS"), _count(died).alias("DEATHS"),
        _count(pall).alias("_pall_spells"), _count(pall & died).alias("_pall_deaths"),
        _count(elective).alias("_el"), _count(elective & died).alias("_el_d"),
        _count(non_elective).alias("_ne"), _count(non_elective & died).alias("_ne_d"),
        _mean(F.col("N_SECONDARY"), elective).alias("MEAN_SECONDARY_ELECTIVE"),
        _mean(F.col("N_SECONDARY"), non_elective).alias("MEAN_SECONDARY_NON_ELECTIVE"),
        _count(died & (F.col("DEATH_IN_HOSPITAL") == 1)).alias("_d_in"),
        _count(F.col("AGE_BAND") == "unknown").alias("_m_age"),
        _count(F.col("SEX_CAT") == "unknown").alias("_m_sex"),
        _count(F.col("ADMIMETH_CAT") == "unknown").alias("_m_meth"),
        _count(perinatal).alias("_perinatal"),
        _count(perinatal & (F.col("BIRWEIT_BAND") == "unknown")).alias("_m_bw"),
        _count(F.col("DIAG_GROUP") == invalid_group).alias("_invalid"),
        _count(F.col("IMD_FIFTH") == "unknown").alias("_m_imd"),
    ]
    for level in IMD_LEVELS:
        tag = level.upper()
        aggs += [_count(F.col("IMD_FIFTH") == level).alias(f"SPELLS_IMD_{tag}"),
                 _count((F.col("IMD_FIFTH") == level) & died).alias(f"DEATHS_IMD_{tag}")]
    g = spells.groupBy("PROCODE3").agg(*aggs)
    n, d = F.col("SPELLS"), F.col("DEATHS")
    return g.select(
        F.col("PROCODE3").alias("PROVIDER_CODE"), "SPELLS", "DEATHS",
        _pct(F.col("_pall_spells"), n).alias("PCT_SPELLS_PALLIATIVE"),
        _pct(F.col("_pall_deaths"), d).alias("PCT_DEATHS_PALLIATIVE"),
        _pct(F.col("_el_d"), F.col("_el")).alias("CRUDE_RATE_ELECTIVE"),
        _pct(F.col("_ne_d"), F.col("_ne")).alias("CRUDE_RATE_NON_ELECTIVE"),
        "MEAN_SECONDARY_ELECTIVE", "MEAN_SECONDARY_NON_ELECTIVE",
        _pct(F.col("_d_in"), d).alias("PCT_DEATHS_IN_HOSPITAL"),
        _pct(d - F.col("_d_in"), d).alias("PCT_DEATHS_OUTSIDE_HOSPITAL"),
        _pct(F.col("_m_age"), n).alias("PCT_MISSING_AGE"),
        _pct(F.col("_m_sex"), n).alias("PCT_MISSING_SEX"),
        _pct(F.col("_m_meth"), n).alias("PCT_MISSING_ADMIMETH"),
        _pct(F.col("_m_bw"), F.col("_perinatal")).alias("PCT_MISSING_BIRTH_WEIGHT"),
        _pct(F.col("_invalid"), n).alias("PCT_INVALID_PRIMARY_DIAGNOSIS"),
        _pct(F.col("_m_imd"), n).alias("PCT_MISSING_DEPRIVATION"),
        *[F.col(f"{kind}_IMD_{lv.upper()}") for lv in IMD_LEVELS for kind in ("SPELLS", "DEATHS")],
    ).orderBy("PROVIDER_CODE")
