"""Model covariates with their ``unknown`` levels (METHOD.md §4), and context fields.

Level spellings are :mod:`shmi_spark.hes.levels` (docs/tables.md).  HES codes: ``STARTAGE``
7001–7007 under one year, 999/blank unknown; ``SEX`` 1 male, 2 female, 0/9/blank
unknown; ``ADMIMETH`` 11–13 elective, 21–25, 2A–2D, 28, 31, 32, 81–84, 89, 98
non-elective, 99/blank unknown; ``BIRWEIT_1`` grams, 9999/blank/out of range
unknown.  ``IMD04_DECILE`` follows HES: 1 = most deprived tenth; the fifth is
reported as in the paper's Table 3, ``1`` least deprived … ``5`` most deprived.

For the HSMR: ``ADMISORC`` grouped into ``home``, ``other_hospital``,
``care_home``, ``birth``, ``other`` and ``unknown`` (the code sets:
:mod:`shmi_spark.hes.codes`); an emergency admission is ``ADMIMETH`` 21–25,
2A–2D or 28.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

from shmi_spark.hes.codes import (
    ADMIMETH_ELECTIVE,
    ADMIMETH_EMERGENCY,
    ADMIMETH_NON_ELECTIVE,
    ADMISORC_BIRTH,
    ADMISORC_CARE_HOME,
    ADMISORC_HOME,
    ADMISORC_OTHER,
    ADMISORC_OTHER_HOSPITAL,
)
from shmi_spark.hes.levels import NOT_APPLICABLE, UNKNOWN

__all__ = ["age_band", "sex_category", "admission_method_category", "birth_weight_band", "imd_fifth",
           "admission_source_category", "emergency_admission"]


def age_band(startage: Column) -> Column:
    """Five-year bands, except <1 and 1–4; 90+; ``unknown``."""
    five = (F.floor(startage / 5) * 5).cast("int")
    return (
        F.when(startage.between(7001, 7007) | (startage == 0), F.lit("<1"))
        .when(startage.between(1, 4), F.lit("1-4"))
        .when(startage.between(5, 89), F.concat(five.cast("string"), F.lit("-"), (five + 4).cast("string")))
        .when(startage.between(90, 120), F.lit("90+"))
        .otherwise(F.lit(UNKNOWN))
    )


def sex_category(sex: Column) -> Column:
    return F.when(sex == "1", "male").when(sex == "2", "female").otherwise(UNKNOWN)


def admission_method_category(admimeth: Column) -> Column:
    return (F.when(admimeth.isin(*ADMIMETH_ELECTIVE), "elective")
            .when(admimeth.isin(*ADMIMETH_NON_ELECTIVE), "non-elective")
            .otherwise(UNKNOWN))


def birth_weight_band(grams: Column, perinatal: Column) -> Column:
    """Birth-weight band in perinatal groups, ``n/a`` elsewhere."""
    band = (F.when(grams.between(1, 999), "<1000")
            .when(grams.between(1000, 2499), "1000-2499")
            .when(grams.between(2500, 4499), "2500-4499")
            .when(grams.between(4500, 7000), "4500+")
            .otherwise(UNKNOWN))
    return F.when(perinatal, band).otherwise(F.lit(NOT_APPLICABLE))


def imd_fifth(quintile_most_deprived_first: Column) -> Column:
    """``1`` least deprived … ``5`` most deprived, ``unknown``."""
    q = quintile_most_deprived_first
    return F.when(q.between(1, 5), (F.lit(6) - q).cast("string")).otherwise(F.lit(UNKNOWN))


def admission_source_category(admisorc: Column) -> Column:
    """``home`` (19, 29), ``other_hospital`` (30, 48–53, 87), ``care_home`` (54, 65, 69, 85, 86, 88),
    ``birth`` (79), ``other`` (the other valid codes), ``unknown`` (null, 98, 99 or not a code)."""
    return (F.when(admisorc.isin(*ADMISORC_HOME), F.lit("home"))
            .when(admisorc.isin(*ADMISORC_OTHER_HOSPITAL), F.lit("other_hospital"))
            .when(admisorc.isin(*ADMISORC_CARE_HOME), F.lit("care_home"))
            .when(admisorc.isin(*ADMISORC_BIRTH), F.lit("birth"))
            .when(admisorc.isin(*ADMISORC_OTHER), F.lit("other"))
            .otherwise(F.lit(UNKNOWN)))


def emergency_admission(admimeth: Column) -> Column:
    """1 when ``ADMIMETH`` is an emergency admission (21–25, 2A–2D, 28), else 0 (null included)."""
    return F.coalesce(admimeth.isin(*ADMIMETH_EMERGENCY), F.lit(False)).cast("int")
