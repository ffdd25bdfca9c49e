"""Expected deaths: each spell's probability under its group's model (METHOD.md §5, §6).

The rule, :func:`with_probability`, adds ``P_EXPECTED`` (double) to rows
carrying ``DIAG_GROUP``, the covariate columns and a ``YEAR_INDEX`` level:

* a modelled group: ``P = 1 / (1 + exp(-(INTERCEPT + Σ_terms estimate of the
  row's level)))``; a level with no coefficient row — the reference,
  a level dropped or never seen when fitting — contributes 0 (the reference
  effect); a numeric term (:data:`shmi_spark.model.cells.NUMERIC_TERMS`)
  contributes its slope (the ``per unit`` row) times the row's value, 0
  where the group has no slope;
* a crude-rate group (``TERM = 'CRUDE_RATE'``): ``P`` = the group's rate;
* a group with no row in the coefficients table at all: ``P`` is null (this
  cannot happen when the scored spells lie in the modelling window, which
  contains every group they can belong to); the aggregates ignore it.

The lookups are broadcast hash joins with the small coefficients table, one
per term (no Python per row).  ``YEAR_INDEX`` is computed from ``DISDATE`` with
the rule of :mod:`shmi_spark.model.cells`, clamped to 1..k (spells discharged
after the window's last full year get k).  ``k`` comes from ``window_end`` when
given, else from the largest ``YEAR_INDEX`` level in the coefficients.

Two ways to score, with the same rule and so the same probabilities:

* :func:`score_spells` — every spell gets its ``P_EXPECTED``;
* :func:`score_cells` — the spells are first counted by trust × group ×
  covariate cell (``SPELLS``, ``DEATHS``) and each cell is scored once.  The
  probability depends on the spell only through its cell, so expected deaths
  ``Σ_spells P = Σ_cells SPELLS · P`` (METHOD.md §6), at the cost of scoring a
  few rows per trust and group instead of every spell.

:func:`expected_by_trust` and :func:`expected_by_trust_group` sum either table.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shmi_spark.model.cells import level_expr, window_years, with_all_terms, year_index
from shmi_spark.model.design import CRUDE_RATE, INTERCEPT, NUMERIC_TERMS, PER_UNIT, TERMS, numeric_value_expr

__all__ = ["SCORED_CELL_KEYS", "with_probability", "score_spells", "score_cells", "expected_by", "expected_by_trust",
           "expected_by_trust_group", "rescale_factor"]

# The keys of a scored cells table: trust, group and the model covariates.
SCORED_CELL_KEYS = ["PROCODE3", "DIAG_GROUP", *TERMS]

# One term's rows of the coefficients table, broadcast to the scored rows.
_TERM_SCHEMA = T.StructType([
    T.StructField("DIAG_GROUP", T.IntegerType(), False),
    T.StructField("LEVEL", T.StringType(), False),
    T.StructField("ESTIMATE", T.DoubleType(), False),
])


def _coefficient_frame(coefficients) -> pd.DataFrame:
    """The coefficients table as pandas with clean types; a null or infinite estimate is an error."""
    coefs = coefficients.toPandas() if isinstance(coefficients, DataFrame) else pd.DataFrame(coefficients)
    coefs = coefs.assign(DIAG_GROUP=coefs["DIAG_GROUP"].astype("int64"),
                         TERM=coefs["TERM"].astype(str),
                         LEVEL=coefs["LEVEL"].fillna("").astype(str),
                         ESTIMATE=coefs["ESTIMATE"].astype(float))
    if coefs["ESTIMATE"].isna().any() or not coefs["ESTIMATE"].map(lambda v: abs(v) < float("inf")).all():
        raise ValueError("coefficients table has a null or infinite ESTIMATE")
    return coefs


def _k_from(coefs: pd.DataFrame) -> int | None:
    levels = pd.to_numeric(coefs.loc[coefs["TERM"] == "YEAR_INDEX", "LEVEL"], errors="coerce").dropna()
    return int(levels.max()) if len(levels) else None


def _year_index_of_spell(coefs: pd.DataFrame, window_start: date, window_end: date | None) -> Column:
    """The spell's YEAR_INDEX level from ``DISDATE``, clamped to 1..k (see module doc)."""
    k = window_years(window_start, window_end) if window_end is not None else _k_from(coefs)
    return year_index("DISDATE", window_start, k)


def with_probability(df: DataFrame, coefficients, *, year_col: str = "YEAR_INDEX") -> DataFrame:
    """``df`` with ``P_EXPECTED`` added: the rule of the module doc, its one definition.

    ``df`` needs ``DIAG_GROUP``, the covariate columns other than
    ``YEAR_INDEX``, and ``year_col`` holding the YEAR_INDEX level.
    ``coefficients`` is the table of :mod:`shmi_spark.model.fit` (pandas, or a
    small Spark DataFrame).
    """
    spark = df.sparkSession
    coefs = _coefficient_frame(coefficients)

    def term_table(term: str) -> DataFrame:
        """The term's (group, level, estimate) rows, named for the join: COEF_<column>_<term>."""
        frame = coefs[coefs["TERM"] == term][["DIAG_GROUP", "LEVEL", "ESTIMATE"]]
        rows = [(int(g), str(lv), float(b))
                for g, lv, b in frame.drop_duplicates(["DIAG_GROUP", "LEVEL"]).itertuples(index=False)]
        return F.broadcast(spark.createDataFrame(rows, _TERM_SCHEMA)).select(
            *[F.col(c).alias(f"COEF_{c}_{term}") for c in ("DIAG_GROUP", "LEVEL", "ESTIMATE")])

    original = df.columns
    df = with_all_terms(df)
    contributions = []
    # a term with no coefficient row (not in any group's model, such as the terms the indicator does not
    # use) adds 0 to every row: no join for it
    used = set(coefs["TERM"])
    for term in [INTERCEPT, CRUDE_RATE, *[t for t in TERMS if t in used]]:
        group, level, estimate = (F.col(f"COEF_{c}_{term}") for c in ("DIAG_GROUP", "LEVEL", "ESTIMATE"))
        if term in (INTERCEPT, CRUDE_RATE):
            cond = F.col("DIAG_GROUP").cast("int") == group
        elif term in NUMERIC_TERMS:
            # the group's slope (its PER_UNIT row) times the row's value; no slope adds 0
            cond = (F.col("DIAG_GROUP").cast("int") == group) & (level == F.lit(PER_UNIT))
            value = numeric_value_expr(term)
            contributions.append(F.when(estimate.isNull(), F.lit(0.0)).when(value.isNull(), F.raise_error(
                F.concat(F.lit(f"{term} is not a number in a row of diagnosis group "),
                         F.col("DIAG_GROUP").cast("string")))).otherwise(estimate * value))
        else:
            df = df.withColumn(f"SCORED_LEVEL_{term}", level_expr(year_col if term == "YEAR_INDEX" else term))
            cond = (F.col("DIAG_GROUP").cast("int") == group) & (F.col(f"SCORED_LEVEL_{term}") == level)
            contributions.append(F.coalesce(estimate, F.lit(0.0)))
        df = df.join(term_table(term), cond, "left")
    linear_predictor = F.col(f"COEF_ESTIMATE_{INTERCEPT}")
    for c in contributions:
        linear_predictor = linear_predictor + c
    df = df.withColumn("LINEAR_PREDICTOR", linear_predictor)
    lp = F.col("LINEAR_PREDICTOR")
    # numerically stable logistic: never exp of a large positive number
    logistic = F.when(lp >= 0, F.lit(1.0) / (F.lit(1.0) + F.exp(-lp))) \
        .otherwise(F.exp(lp) / (F.lit(1.0) + F.exp(lp)))
    p = F.when(F.col(f"COEF_DIAG_GROUP_{CRUDE_RATE}").isNotNull(), F.col(f"COEF_ESTIMATE_{CRUDE_RATE}")) \
        .when(F.col(f"COEF_DIAG_GROUP_{INTERCEPT}").isNotNull(), logistic) \
        .otherwise(F.lit(None).cast("double"))
    return df.withColumn("P_EXPECTED", p.cast("double")).select(*original, "P_EXPECTED")


def score_spells(spells: DataFrame, coefficients, *, window_start: date,
                 window_end: date | None = None) -> DataFrame:
    """``spells`` with ``P_EXPECTED`` added (see module doc).

    ``coefficients`` is the coefficients table of :mod:`shmi_spark.model.fit`
    (pandas, or a small Spark DataFrame).  ``spells`` needs ``DIAG_GROUP``,
    ``DISDATE`` and the covariate columns other than ``YEAR_INDEX``.
    """
    coefs = _coefficient_frame(coefficients)
    original = spells.columns
    # the spell's YEAR_INDEX level, under a name of its own (``spells`` may carry a YEAR_INDEX)
    df = spells.withColumn("SCORED_YEAR_INDEX", _year_index_of_spell(coefs, window_start, window_end))
    return with_probability(df, coefs, year_col="SCORED_YEAR_INDEX").select(*original, "P_EXPECTED")


def score_cells(spells: DataFrame, coefficients, *, window_start: date,
                window_end: date | None = None, by: tuple[str, ...] = ("PROCODE3",)) -> DataFrame:
    """The spells counted by trust × group × covariate cell, each cell scored (see module doc).

    Columns: ``PROCODE3, DIAG_GROUP, AGE_BAND, SEX_CAT, ADMIMETH_CAT,
    ADM_MONTH, YEAR_INDEX`` (as the scorer computes it from ``DISDATE``)
    ``, CHARLSON_BAND, BIRWEIT_BAND, SPELLS`` (long, ≥ 1), ``DEATHS``
    (long: Σ ``DIED``, which is 0 or 1, docs/tables.md), ``P_EXPECTED``.
    Every spell falls in exactly one cell and gets that cell's probability,
    the same value :func:`score_spells` gives it.  ``by``: the columns the
    cells are counted by before the group and covariates (default the trust;
    a basket's breakdown adds ``BASKET``).
    """
    coefs = _coefficient_frame(coefficients)
    year = _year_index_of_spell(coefs, window_start, window_end).alias("YEAR_INDEX")
    keys = [year if c == "YEAR_INDEX" else F.col(c) for c in [*by, *SCORED_CELL_KEYS[1:]]]
    cells = with_all_terms(spells).groupBy(*keys).agg(
        F.count(F.lit(1)).cast("long").alias("SPELLS"),
        F.coalesce(F.sum(F.col("DIED").cast("long")), F.lit(0)).cast("long").alias("DEATHS"))
    return with_probability(cells, coefs, year_col="YEAR_INDEX")


def _is_cells(scored: DataFrame) -> bool:
    """A scored cells table (:func:`score_cells`) rather than scored spells (one row each)."""
    return "SPELLS" in scored.columns and "DEATHS" in scored.columns


def _sums(scored: DataFrame, keys: list[str]) -> DataFrame:
    """Per ``keys``: ``SPELLS, OBSERVED, EXPECTED = Σ P`` over the spells, or ``Σ SPELLS · P`` over cells."""
    if _is_cells(scored):
        spells, observed = F.sum("SPELLS"), F.sum("DEATHS")
        expected = F.sum(F.col("SPELLS").cast("double") * F.col("P_EXPECTED"))
    else:
        spells, observed = F.count(F.lit(1)), F.sum(F.col("DIED").cast("long"))
        expected = F.sum("P_EXPECTED")
    return (scored.groupBy(*keys)
            .agg(spells.cast("long").alias("SPELLS"),
                 F.coalesce(observed, F.lit(0)).cast("long").alias("OBSERVED"),
                 F.coalesce(expected, F.lit(0.0)).cast("double").alias("EXPECTED"))
            .orderBy(*keys))


def expected_by_trust(scored: DataFrame) -> DataFrame:
    """Per trust: ``PROCODE3, SPELLS, OBSERVED, EXPECTED`` (sorted by trust).

    ``scored`` is scored spells (:func:`score_spells`) or scored cells
    (:func:`score_cells`); both give the same counts and the same expected
    deaths up to the order of summation.
    """
    return _sums(scored, ["PROCODE3"])


def expected_by(scored: DataFrame, keys: list[str]) -> DataFrame:
    """Per ``keys``: ``SPELLS, OBSERVED, EXPECTED`` (as :func:`expected_by_trust`), sorted by them."""
    return _sums(scored, keys)


def expected_by_trust_group(scored: DataFrame) -> DataFrame:
    """Per trust and diagnosis group: ``PROCODE3, DIAG_GROUP, SPELLS, OBSERVED, EXPECTED`` (as above)."""
    return _sums(scored, ["PROCODE3", "DIAG_GROUP"])


def rescale_factor(observed_total: float, expected_total: float) -> float:
    """METHOD.md §6: the factor ``ΣO / ΣE`` that makes national expected = observed.

    0 observed and 0 expected give 1 (nothing to rescale).

    >>> rescale_factor(120, 100.0)
    1.2
    """
    o, e = float(observed_total), float(expected_total)
    if not (o >= 0 and e >= 0) or o != o or e != e or e == float("inf"):
        raise ValueError(f"totals must be finite and non-negative, got O={observed_total}, E={expected_total}")
    if e == 0:
        if o == 0:
            return 1.0
        raise ValueError(f"expected total is 0 but {observed_total} deaths were observed: cannot rescale")
    return o / e
