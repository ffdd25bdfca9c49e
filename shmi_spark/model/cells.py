"""Covariate cells: the modelling window's spells aggregated to (group × covariate cell).

METHOD.md §5: the logistic likelihood depends on the data only through the
number of spells and deaths in each cell of the diagnosis group × covariate
cross-classification, so the risk models are fitted on this table (weighted by
``SPELLS``) and give exactly the record-level maximum-likelihood estimates.

Output (docs/tables.md, "covariate cells"):
``DIAG_GROUP, AGE_BAND, SEX_CAT, ADMIMETH_CAT, ADM_MONTH, YEAR_INDEX,
CHARLSON_BAND, BIRWEIT_BAND, ADMISSION_SOURCE, DEPRIVATION_FIFTH,
PALLIATIVE_CARE, PRIOR_EMERGENCY_ADMISSIONS, CHARLSON_INDEX, SPELLS (long),
DEATHS (long)``.

The terms are those of every indicator the engine fits: the SHMI's (METHOD.md
§4) and the HSMR's (:mod:`shmi_spark.indicator.definitions`).  An indicator's
table carries the level ``n/a`` in every term it does not use; a term whose
only level in a group is ``n/a`` has no parameter
(:mod:`shmi_spark.model.design`), so the SHMI's fit is the same as with its
seven terms alone.

A term of :data:`NUMERIC_TERMS` (the HSMR's ``CHARLSON_INDEX``, the Charlson
score itself) is a number, not a set of levels: its cells hold the value as a
string, and its model has one parameter, the slope per unit
(:mod:`shmi_spark.model.design`).

``YEAR_INDEX`` (METHOD.md §4) is 1..k: the 12-month block of the modelling
window that holds the discharge date, counting from ``window_start``; ``k`` is
the number of months in the window divided by 12, rounded up (a partial last
block is block k).  The same rule, as the Column expression :func:`year_index`,
is used by the scorer (:mod:`shmi_spark.model.scoring`), which also clamps spells
outside the window to 1..k.
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

__all__ = ["COVARIATES", "SHMI_COVARIATES", "HSMR_COVARIATES", "NUMERIC_TERMS", "CELL_KEYS", "CELL_COLUMNS",
           "UNKNOWN_LEVEL", "NA_LEVEL", "with_all_terms", "level_expr", "year_index_of",
           "window_years", "year_index", "covariate_cells"]

# The model covariates, in the order of the cells table (METHOD.md §4).
SHMI_COVARIATES = ["AGE_BAND", "SEX_CAT", "ADMIMETH_CAT", "ADM_MONTH", "YEAR_INDEX",
                   "CHARLSON_BAND", "BIRWEIT_BAND"]
# The HSMR's case-mix terms beyond the SHMI's (``n/a`` in the SHMI's tables).
HSMR_COVARIATES = ["ADMISSION_SOURCE", "DEPRIVATION_FIFTH", "PALLIATIVE_CARE", "PRIOR_EMERGENCY_ADMISSIONS",
                   "CHARLSON_INDEX"]
# The terms entered as a number (one slope), not as levels: the HSMR's Charlson score.
NUMERIC_TERMS = frozenset({"CHARLSON_INDEX"})
COVARIATES = [*SHMI_COVARIATES, *HSMR_COVARIATES]
CELL_KEYS = ["DIAG_GROUP", *COVARIATES]
CELL_COLUMNS = [*CELL_KEYS, "SPELLS", "DEATHS"]
# A null covariate is its own level, reported as this (METHOD.md §4: missing -> unknown).
UNKNOWN_LEVEL = "unknown"
# The level of a term that does not apply: birth weight outside the perinatal groups, an indicator's unused terms.
NA_LEVEL = "n/a"


def level_expr(term: str) -> Column:
    """A covariate's level as the string used in the coefficients table (null → ``unknown``)."""
    return F.coalesce(F.col(term).cast("string"), F.lit(UNKNOWN_LEVEL))


def _months_from(d: date, start: date) -> int:
    """Whole months from ``start`` to ``d`` (a month counts once its day is reached)."""
    months = (d.year - start.year) * 12 + (d.month - start.month)
    if d.day < start.day:
        months -= 1
    return months


def year_index_of(d: date, window_start: date) -> int:
    """Python twin of :func:`year_index` for one date (not clamped).

    >>> year_index_of(date(2020, 3, 31), date(2017, 4, 1))
    3
    >>> year_index_of(date(2018, 4, 1), date(2017, 4, 1))
    2
    """
    return _months_from(d, window_start) // 12 + 1


def window_years(window_start: date, window_end: date) -> int:
    """``k``: the number of 12-month blocks in the window, the last possibly partial.

    >>> window_years(date(2017, 4, 1), date(2020, 3, 31))
    3
    >>> window_years(date(2017, 4, 1), date(2019, 9, 30))
    3
    """
    if window_end < window_start:
        raise ValueError(f"window_end {window_end} is before window_start {window_start}")
    return year_index_of(window_end, window_start)


def year_index(col: Column | str, window_start: date, k: int | None = None) -> Column:
    """YEAR_INDEX of a date column: its 12-month block of the window, from 1.

    Block i holds dates in [window_start + 12(i-1) months, window_start + 12i months).
    With ``k`` the result is clamped to 1..k (spells discharged after the
    window's last full year get k, those before the window get 1); without it,
    dates before the window give values < 1.  Null dates give null.
    """
    c = F.col(col) if isinstance(col, str) else col
    months = ((F.year(c) - F.lit(window_start.year)) * 12
              + (F.month(c) - F.lit(window_start.month))
              - F.when(F.dayofmonth(c) < F.lit(window_start.day), 1).otherwise(0))
    idx = F.floor(months / F.lit(12)).cast("int") + F.lit(1)
    if k is not None:
        # greatest/least skip nulls: keep a null date null
        idx = F.when(c.isNotNull(), F.least(F.greatest(idx, F.lit(1)), F.lit(int(k))))
    return idx.cast("int")


def with_all_terms(table: DataFrame) -> DataFrame:
    """``table`` with a column for each of the HSMR's terms: one it has no column for is ``n/a``.

    The spell table of docs/tables.md has the SHMI's terms only, so it is the
    SHMI's table as it stands (the HSMR's terms not used).
    """
    missing = [t for t in HSMR_COVARIATES if t not in table.columns]
    return table.withColumns({t: F.lit(NA_LEVEL) for t in missing}) if missing else table


def covariate_cells(spells: DataFrame, *, window_start: date, window_end: date,
                    invalid_group: int | None = None) -> DataFrame:
    """Aggregate the spells discharged in [window_start, window_end] to covariate cells.

    The Charlson score is not used for the invalid-primary-diagnosis group
    (METHOD.md §4): its spells' ``CHARLSON_BAND`` (and ``CHARLSON_INDEX``,
    where the indicator uses it) is set to ``0`` here, so the term has one
    level in that group and drops out of its model (scoring then adds nothing
    for it).

    ``spells`` is an indicator's table (:func:`shmi_spark.indicator.definitions.indicator_table`:
    the spells table of docs/tables.md with the HSMR's terms; only ``DISDATE``,
    ``DIAG_GROUP``, ``DIED`` and the covariate columns are read).  Every
    spell in the window is counted: covariates carry explicit ``unknown``
    levels, nothing is dropped for missing values (METHOD.md §2).
    """
    k = window_years(window_start, window_end)
    in_window = with_all_terms(spells).where(F.col("DISDATE").between(F.lit(window_start), F.lit(window_end)))
    with_year = in_window.withColumn("YEAR_INDEX", year_index("DISDATE", window_start, k))
    if invalid_group is not None:
        invalid = F.col("DIAG_GROUP") == invalid_group

        def without_charlson(term: str) -> Column:
            used = F.coalesce(F.col(term).cast("string"), F.lit("")) != F.lit(NA_LEVEL)
            return F.when(invalid & used, F.lit("0")).otherwise(F.col(term))

        with_year = with_year.withColumns({t: without_charlson(t) for t in ("CHARLSON_BAND", "CHARLSON_INDEX")})
    cells = (with_year.groupBy(*CELL_KEYS)
             .agg(F.count(F.lit(1)).cast("long").alias("SPELLS"),
                  F.sum(F.col("DIED").cast("long")).cast("long").alias("DEATHS")))
    return cells.select(
        F.col("DIAG_GROUP").cast("int").alias("DIAG_GROUP"),
        F.col("AGE_BAND").cast("string").alias("AGE_BAND"),
        F.col("SEX_CAT").cast("string").alias("SEX_CAT"),
        F.col("ADMIMETH_CAT").cast("string").alias("ADMIMETH_CAT"),
        F.col("ADM_MONTH").cast("int").alias("ADM_MONTH"),
        F.col("YEAR_INDEX").cast("int").alias("YEAR_INDEX"),
        F.col("CHARLSON_BAND").cast("string").alias("CHARLSON_BAND"),
        F.col("BIRWEIT_BAND").cast("string").alias("BIRWEIT_BAND"),
        *[F.col(t).cast("string").alias(t) for t in HSMR_COVARIATES],
        F.col("SPELLS").cast("long").alias("SPELLS"),
        F.coalesce(F.col("DEATHS"), F.lit(0)).cast("long").alias("DEATHS"),
    )
