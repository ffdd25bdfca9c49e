"""Expected deaths: score every spell with its group's model (METHOD.md §5, §6).

:func:`score_spells` adds ``P_EXPECTED`` (double) to each spell:

* a modelled group: ``P = 1 / (1 + exp(-(INTERCEPT + Σ_terms estimate of the
  spell's level)))``; a level with no coefficient row — the reference,
  a level dropped or never seen when fitting — contributes 0 (the reference
  effect);
* a crude-rate group (``TERM = 'CRUDE_RATE'``): ``P`` = the group's rate;
* a group with no row in the coefficients table at all: ``P`` is null (this
  cannot happen when the scored spells lie in the modelling window, which
  contains every group they can belong to); the aggregates ignore it.

The lookups are broadcast hash joins of the spells with the small coefficients
table, one per term (no Python per row).  ``YEAR_INDEX`` is computed from
``DISDATE`` with the rule of :mod:`shmi_spark.model.cells`, clamped to 1..k (spells
discharged after the window's last full year get k).  ``k`` comes from
``window_end`` when given, else from the largest ``YEAR_INDEX`` level in the
coefficients.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shmi_spark.model.cells import level_expr, window_years, year_index
from shmi_spark.model.design import CRUDE_RATE, INTERCEPT, TERMS

__all__ = ["score_spells", "expected_by_trust", "expected_by_trust_group", "rescale_factor"]

# One term's rows of the coefficients table, broadcast to the spells.
_TERM_SCHEMA = T.StructType([
    T.StructField("DIAG_GROUP", T.IntegerType(), False),
    T.StructField("LEVEL", T.StringType(), False),
    T.StructField("ESTIMATE", T.DoubleType(), False),
])


def _as_pandas(coefficients) -> pd.DataFrame:
    if isinstance(coefficients, DataFrame):
        return coefficients.toPandas()
    return pd.DataFrame(coefficients)


def _k_from(coefs: pd.DataFrame) -> int | None:
    levels = pd.to_numeric(coefs.loc[coefs["TERM"] == "YEAR_INDEX", "LEVEL"], errors="coerce").dropna()
    return int(levels.max()) if len(levels) else None


def score_spells(spells: DataFrame, coefficients, *, window_start: date,
                 window_end: date | None = None) -> DataFrame:
    """``spells`` with ``P_EXPECTED`` added (see module doc).

    ``coefficients`` is the coefficients table of :mod:`shmi_spark.model.fit`
    (pandas, or a small Spark DataFrame).  ``spells`` needs ``DIAG_GROUP``,
    ``DISDATE`` and the covariate columns other than ``YEAR_INDEX``.
    """
    spark = spells.sparkSession
    coefs = _as_pandas(coefficients)
    coefs = coefs.assign(DIAG_GROUP=coefs["DIAG_GROUP"].astype("int64"),
                         TERM=coefs["TERM"].astype(str),
                         LEVEL=coefs["LEVEL"].fillna("").astype(str),
                         ESTIMATE=coefs["ESTIMATE"].astype(float))
    if coefs["ESTIMATE"].isna().any() or not coefs["ESTIMATE"].map(lambda v: abs(v) < float("inf")).all():
        raise ValueError("coefficients table has a null or infinite ESTIMATE")
    k = window_years(window_start, window_end) if window_end is not None else _k_from(coefs)

    def term_table(term: str) -> DataFrame:
        """The term's (group, level, estimate) rows, named for the join: COEF_<column>_<term>."""
        frame = coefs[coefs["TERM"] == term][["DIAG_GROUP", "LEVEL", "ESTIMATE"]]
        rows = [(int(g), str(lv), float(b))
                for g, lv, b in frame.drop_duplicates(["DIAG_GROUP", "LEVEL"]).itertuples(index=False)]
        return F.broadcast(spark.createDataFrame(rows, _TERM_SCHEMA)).select(
            *[F.col(c).alias(f"COEF_{c}_{term}") for c in ("DIAG_GROUP", "LEVEL", "ESTIMATE")])

    original = spells.columns
    # the spell's YEAR_INDEX level, under a name of its own (``spells`` may carry a YEAR_INDEX)
    df = spells.withColumn("SCORED_YEAR_INDEX", year_index("DISDATE", window_start, k))
    contributions = []
    for term in [INTERCEPT, CRUDE_RATE, *TERMS]:
        group, level, estimate = (F.col(f"COEF_{c}_{term}") for c in ("DIAG_GROUP", "LEVEL", "ESTIMATE"))
        if term in (INTERCEPT, CRUDE_RATE):
            cond = F.col("DIAG_GROUP").cast("int") == group
        else:
            df = df.withColumn(f"SPELL_LEVEL_{term}",
                               level_expr("SCORED_YEAR_INDEX" if term == "YEAR_INDEX" else term))
            cond = (F.col("DIAG_GROUP").cast("int") == group) & (F.col(f"SPELL_LEVEL_{term}") == level)
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


def expected_by_trust(scored: DataFrame) -> DataFrame:
    """Per trust: ``PROCODE3, SPELLS, OBSERVED, EXPECTED`` (sorted by trust)."""
    return (scored.groupBy("PROCODE3")
            .agg(F.count(F.lit(1)).cast("long").alias("SPELLS"),
                 F.coalesce(F.sum(F.col("DIED").cast("long")), F.lit(0)).cast("long").alias("OBSERVED"),
                 F.coalesce(F.sum("P_EXPECTED"), F.lit(0.0)).cast("double").alias("EXPECTED"))
            .orderBy("PROCODE3"))


def expected_by_trust_group(scored: DataFrame) -> DataFrame:
    """Per trust and diagnosis group: ``PROCODE3, DIAG_GROUP, SPELLS, OBSERVED, EXPECTED``."""
    return (scored.groupBy("PROCODE3", "DIAG_GROUP")
            .agg(F.count(F.lit(1)).cast("long").alias("SPELLS"),
                 F.coalesce(F.sum(F.col("DIED").cast("long")), F.lit(0)).cast("long").alias("OBSERVED"),
                 F.coalesce(F.sum("P_EXPECTED"), F.lit(0.0)).cast("double").alias("EXPECTED"))
            .orderBy("PROCODE3", "DIAG_GROUP"))


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
