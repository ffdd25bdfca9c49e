"""Many diagnosis groups in one Spark ML fit: block-diagonal batches (METHOD.md §5).

The groups' likelihoods share no parameter, so stacking several groups' cells
into one design — each group with its own intercept column and its own
covariate columns, zero elsewhere (a block-diagonal design) — and fitting it
once with ``GeneralizedLinearRegression`` (binomial/logit, no global
intercept) gives every group exactly its own maximum-likelihood estimate:

* the IRLS normal equations ``X'WX β = X'Wz`` are block-diagonal, so every
  Newton step is the per-group step and the fixed point is the per-group MLE;
* the standard errors (the diagonal of ``(X'WX)^-1``) are the per-group ones;
* the batch stops when the largest coefficient change over all its groups is
  below ``tol``, so each group is at least as converged as when fitted alone.

Why: a fit is one small Spark job per IRLS iteration, and with ~140 groups of
a few thousand cells the job overhead, not the arithmetic, was the cost (about
1,900 jobs per period).  Batches of ``model.batch_parameters`` parameters cut
that to about ten jobs per batch.

The design is built once for all batches, in Spark: a broadcast join of the
cells with a small per-group table (batch, intercept column, the map from
``TERM=LEVEL`` to the level's column within the batch), then one
``OneHotEncoder`` per term whose sizes come from column metadata (no pass over
the data) and a ``VectorAssembler`` (sparse vectors).  Reference levels, and
levels with no parameter, take the encoder's dropped last category.

Cells in a separated level (fixed by the extended-MLE rule in
:mod:`shmi_spark.model.fit`) are left out of the fit, as in the per-group path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.ml.feature import OneHotEncoder, VectorAssembler
from pyspark.ml.regression import GeneralizedLinearRegression
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shmi_spark.model.cells import COVARIATES, level_expr

if TYPE_CHECKING:  # pragma: no cover
    from shmi_spark.model.fit import _Design

_SEP = "\u0001"
BATCH_COLUMNS = ["DIAG_GROUP", "BATCH", "GIDX", *[f"I_{t}" for t in COVARIATES], "label", "weight"]


def level_key(term: str, level: str) -> str:
    """The key of a (term, level) pair in the per-group maps."""
    return f"{term}{_SEP}{level}"


def _key_expr(term: str) -> Column:
    return F.concat(F.lit(term + _SEP), level_expr(term))


@dataclass(frozen=True)
class Batch:
    """Groups fitted together, and where each group's parameters sit in the batch's vector."""

    number: int  # the batch's tag in its design table (``BATCH``)
    label: str  # how diagnostics name it: "3", or "3.1" for a part of batch 3 refitted
    groups: tuple[int, ...]
    # term -> number of columns of that term in the batch (over all its groups)
    term_sizes: dict[str, int]
    # group -> {(term, level): column within the term's block}
    columns: dict[int, dict[tuple[str, str], int]]

    @property
    def n_params(self) -> int:
        return len(self.groups) + sum(self.term_sizes.values())

    def coefficient_index(self, group: int, term: str, level: str) -> int:
        """Position of a group's (term, level) coefficient in the fitted coefficient vector."""
        offset = len(self.groups)
        for t in COVARIATES:
            if t == term:
                return offset + self.columns[group][(term, level)]
            offset += self.term_sizes.get(t, 0)
        raise KeyError(term)


def pack_batches(designs: list["_Design"], max_params: int) -> tuple[list[Batch], list["_Design"]]:
    """Pack designs, in group order, into batches of at most ``max_params`` parameters.

    A batch needs two groups or more (one group alone is fitted on its own, the
    per-group path); a design bigger than ``max_params`` is fitted alone too.
    Returns (batches, designs left to fit alone).
    """
    batches, alone, current, size = [], [], [], 0

    def close():
        nonlocal current, size
        if len(current) >= 2:
            batches.append(current)
        else:
            alone.extend(current)
        current, size = [], 0

    for d in sorted(designs, key=lambda d: d.group):
        n = 1 + len(d.features)
        if n > max_params:
            alone.append(d)
            continue
        if size + n > max_params:
            close()
        current.append(d)
        size += n
    close()
    return [make_batch(i, str(i + 1), ds) for i, ds in enumerate(batches)], alone


def make_batch(number: int, label: str, designs: list["_Design"]) -> Batch:
    """A batch of ``designs`` (their order is the order of their blocks)."""
    sizes = {t: 0 for t in COVARIATES}
    columns: dict[int, dict[tuple[str, str], int]] = {}
    for d in designs:
        cols = {}
        for term, level in d.features:
            cols[(term, level)] = sizes[term]
            sizes[term] += 1
        columns[d.group] = cols
    return Batch(number=number, label=label, groups=tuple(d.group for d in designs),
                 term_sizes={t: n for t, n in sizes.items() if n}, columns=columns)


_GROUP_SCHEMA = T.StructType([
    T.StructField("DIAG_GROUP", T.IntegerType(), False),
    T.StructField("BATCH", T.IntegerType(), False),
    T.StructField("GIDX", T.IntegerType(), False),
    T.StructField("LEVEL_COLUMN", T.MapType(T.StringType(), T.IntegerType()), False),
    T.StructField("FIXED", T.MapType(T.StringType(), T.BooleanType()), False),
    *[T.StructField(f"K_{t}", T.IntegerType(), False) for t in COVARIATES],
])


def _group_table(spark: SparkSession, batches: list[Batch], designs: dict[int, "_Design"]) -> DataFrame:
    rows = []
    for b in batches:
        for gidx, g in enumerate(b.groups):
            rows.append((g, b.number, gidx,
                         {level_key(t, lv): c for (t, lv), c in b.columns[g].items()},
                         {level_key(t, lv): True for (t, lv) in designs[g].fixed},
                         *[b.term_sizes.get(t, 0) for t in COVARIATES]))
    return spark.createDataFrame(rows, schema=_GROUP_SCHEMA)


def kept_cells(spark: SparkSession, cells: DataFrame, designs: list["_Design"]) -> DataFrame:
    """The designs' cells that enter the fit: none in a separated (fixed) level.

    ``cells`` has ``DIAG_GROUP``, the covariates, ``SPELLS`` and ``DEATHS``.
    """
    fixed = spark.createDataFrame(
        [(d.group, {level_key(t, lv): True for (t, lv) in d.fixed}) for d in designs],
        schema="DIAG_GROUP int, FIXED map<string,boolean>")
    joined = cells.join(F.broadcast(fixed), on="DIAG_GROUP", how="inner")
    in_fixed = F.coalesce(*[F.try_element_at(F.col("FIXED"), _key_expr(t)) for t in COVARIATES])
    return joined.where(in_fixed.isNull()).drop("FIXED")


def batch_design(spark: SparkSession, cells: DataFrame, batches: list[Batch],
                 designs: dict[int, "_Design"]) -> DataFrame:
    """All batches' cells as ``BATCH_COLUMNS``: column indices per term, label and weight.

    ``I_<term>`` is the level's column within the term's block of the batch, or
    ``K_<term>`` (the block's size: the encoder's dropped category) for a
    reference level or a level without parameter.
    """
    table = _group_table(spark, batches, designs)
    batched = [designs[g] for b in batches for g in b.groups]
    joined = kept_cells(spark, cells, batched).join(F.broadcast(table), on="DIAG_GROUP", how="inner")
    indices = [F.coalesce(F.try_element_at(F.col("LEVEL_COLUMN"), _key_expr(t)), F.col(f"K_{t}"))
               .alias(f"I_{t}") for t in COVARIATES]
    return joined.select(
        "DIAG_GROUP", "BATCH", "GIDX", *indices,
        (F.col("DEATHS") / F.col("SPELLS")).alias("label"),
        F.col("SPELLS").cast("double").alias("weight"))


def _nominal(column: str, n_values: int) -> Column:
    """A category index column carrying ML nominal metadata (so the encoder needs no pass)."""
    return F.col(column).cast("double").alias(
        column, metadata={"ml_attr": {"type": "nominal", "num_vals": n_values}})


@dataclass
class BatchFit:
    """One batch's fitted vector and what the fit reported."""

    coefficients: np.ndarray
    standard_errors: np.ndarray | None
    iterations: int
    seconds: float


def fit_batch(design: DataFrame, batch: Batch, *, max_iter: int, tol: float) -> BatchFit:
    """Fit one batch (unpenalised IRLS, no global intercept) on its cells, in one partition."""
    t0 = time.perf_counter()
    terms = [t for t in COVARIATES if batch.term_sizes.get(t)]
    # the group column has one extra, dropped category so that every group keeps its intercept
    data = design.where(F.col("BATCH") == F.lit(batch.number)).coalesce(1).select(
        _nominal("GIDX", len(batch.groups) + 1),
        *[_nominal(f"I_{t}", batch.term_sizes[t] + 1) for t in terms],
        "label", "weight")
    inputs = ["GIDX", *[f"I_{t}" for t in terms]]
    encoder = OneHotEncoder(inputCols=inputs, outputCols=[f"V_{c}" for c in inputs], dropLast=True)
    encoded = encoder.fit(data).transform(data)
    assembled = (VectorAssembler(inputCols=[f"V_{c}" for c in inputs], outputCol="features")
                 .transform(encoded).select("features", "label", "weight")
                 .persist(StorageLevel.MEMORY_AND_DISK))
    try:
        glr = GeneralizedLinearRegression(family="binomial", link="logit", solver="irls",
                                          labelCol="label", weightCol="weight", featuresCol="features",
                                          fitIntercept=False, maxIter=max_iter, tol=tol, regParam=0.0)
        model = glr.fit(assembled)
        coefficients = np.asarray(model.coefficients.toArray(), dtype=float)
        iterations = int(model.summary.numIterations)
        try:
            ses = np.asarray(model.summary.coefficientStandardErrors, dtype=float)
        except Exception:  # noqa: BLE001 - none when the normal equations were singular
            ses = None
    finally:
        assembled.unpersist()
    if coefficients.shape[0] != batch.n_params:
        raise ValueError(f"batch {batch.number}: {coefficients.shape[0]} coefficients, "
                         f"expected {batch.n_params}")
    return BatchFit(coefficients=coefficients, standard_errors=ses, iterations=iterations,
                    seconds=time.perf_counter() - t0)


def group_estimates(fit: BatchFit, batch: Batch, design: "_Design"):
    """(intercept, intercept SE | None, betas, SEs | None) of one group, in ``design.features`` order."""
    gidx = batch.groups.index(design.group)
    idx = [batch.coefficient_index(design.group, t, lv) for t, lv in design.features]
    betas = fit.coefficients[idx]
    ses = None if fit.standard_errors is None else fit.standard_errors[idx]
    se0 = None if fit.standard_errors is None else fit.standard_errors[gidx]
    return float(fit.coefficients[gidx]), se0, betas, ses


def kept_level_spells(spark: SparkSession, cells: DataFrame, designs: list["_Design"]) -> pd.DataFrame:
    """``SPELLS`` and ``N_CELLS`` per (group, term, level) among the cells that enter the fit, one small job."""
    kept = kept_cells(spark, cells, designs)
    pairs = F.array(*[F.struct(F.lit(t).alias("TERM"), level_expr(t).alias("LEVEL")) for t in COVARIATES])
    return (kept.select("DIAG_GROUP", F.explode(pairs).alias("TL"), "SPELLS")
            .groupBy("DIAG_GROUP", F.col("TL.TERM").alias("TERM"), F.col("TL.LEVEL").alias("LEVEL"))
            .agg(F.sum("SPELLS").cast("long").alias("SPELLS"),
                 F.count(F.lit(1)).cast("long").alias("N_CELLS"))
            .toPandas())
