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
groups' fit cells (:func:`shmi_spark.model.design.fit_cells`: a group's
separated cells are left out, as in the per-group fit) with a small
per-group table (batch, the group's position in it, the map from
``TERM=LEVEL`` to the level's column within the term's block), then one
``OneHotEncoder`` per term whose sizes come from column metadata (no pass over
the data) and a ``VectorAssembler`` (sparse vectors).  Reference levels, and
levels with no parameter, take the encoder's dropped last category.  A
numeric term (the HSMR's Charlson score) has one column per group in its
block, the group's slope: its one-hot column times the cell's value
(``VALUE_<term>``), by Spark ML's ``Interaction``.

Which groups are batched, and what happens to a batch that fails, is decided
by :mod:`shmi_spark.model.fit`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from py4j.protocol import Py4JJavaError
from pyspark import StorageLevel
from pyspark.errors.exceptions.captured import CapturedException
from pyspark.ml.feature import Interaction, OneHotEncoder, VectorAssembler
from pyspark.ml.regression import GeneralizedLinearRegression
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shmi_spark.model.design import (
    NUMERIC_TERMS,
    PER_UNIT,
    TERMS,
    Estimates,
    GroupDesign,
    fit_cells,
    level_key,
    level_key_expr,
    numeric_value_expr,
)

__all__ = ["SPARK_FIT_ERRORS", "BATCH_COLUMNS", "Batch", "BatchFit", "pack_batches", "make_batch", "batch_design",
           "fit_batch", "group_estimates"]

# What a Spark ML fit raises when it fails on the data (singular normal equations, no
# standard errors, a solver error): the JVM's exceptions, converted or not.
SPARK_FIT_ERRORS: tuple[type[Exception], ...] = (CapturedException, Py4JJavaError)

# The batch design table: each fit cell with its group's position in its batch
# (GROUP_INDEX), the column of its level of each term within that term's block
# of the batch (BLOCK_COLUMN_<term>), a numeric term's value (VALUE_<term>),
# and Spark ML's label and weight.
_NUMERIC = [t for t in TERMS if t in NUMERIC_TERMS]
BATCH_COLUMNS = ["DIAG_GROUP", "BATCH", "GROUP_INDEX", *[f"BLOCK_COLUMN_{t}" for t in TERMS],
                 *[f"VALUE_{t}" for t in _NUMERIC], "label", "weight"]


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
        for t in TERMS:
            if t == term:
                return offset + self.columns[group][(term, level)]
            offset += self.term_sizes.get(t, 0)
        raise KeyError(term)


def pack_batches(designs: list[GroupDesign], max_params: int) -> tuple[list[Batch], list[GroupDesign]]:
    """Pack designs, in group order, into batches of at most ``max_params`` parameters.

    A batch needs two groups or more (one group alone is fitted on its own, the
    per-group path); a design bigger than ``max_params`` is fitted alone too.
    Returns (batches, designs left to fit alone).
    """
    packed: list[list[GroupDesign]] = []
    alone: list[GroupDesign] = []
    current: list[GroupDesign] = []
    size = 0

    def close() -> None:
        nonlocal current, size
        if len(current) >= 2:
            packed.append(current)
        else:
            alone.extend(current)
        current, size = [], 0

    for d in sorted(designs, key=lambda d: d.group):
        n = d.n_params
        if n > max_params:
            alone.append(d)
            continue
        if size + n > max_params:
            close()
        current.append(d)
        size += n
    close()
    return [make_batch(i, str(i + 1), ds) for i, ds in enumerate(packed)], alone


def make_batch(number: int, label: str, designs: list[GroupDesign]) -> Batch:
    """A batch of ``designs`` (their order is the order of their blocks)."""
    sizes = {t: 0 for t in TERMS}
    columns: dict[int, dict[tuple[str, str], int]] = {}
    for d in designs:
        cols = {}
        for term, level in d.features:
            cols[(term, level)] = sizes[term]
            sizes[term] += 1
        columns[d.group] = cols
    return Batch(number=number, label=label, groups=tuple(d.group for d in designs),
                 term_sizes={t: n for t, n in sizes.items() if n}, columns=columns)


# One row per batched group: its batch, its position in the batch, the column of
# each of its feature levels within the term's block (by level key), and the size
# of each term's block (the column of a level without parameter).
_GROUP_SCHEMA = T.StructType([
    T.StructField("DIAG_GROUP", T.IntegerType(), False),
    T.StructField("BATCH", T.IntegerType(), False),
    T.StructField("GROUP_INDEX", T.IntegerType(), False),
    T.StructField("BLOCK_COLUMN_OF_LEVEL", T.MapType(T.StringType(), T.IntegerType()), False),
    *[T.StructField(f"BLOCK_SIZE_{t}", T.IntegerType(), False) for t in TERMS],
])


def _group_table(spark: SparkSession, batches: list[Batch]) -> DataFrame:
    rows = []
    for b in batches:
        for group_index, g in enumerate(b.groups):
            rows.append((g, b.number, group_index,
                         {level_key(t, lv): c for (t, lv), c in b.columns[g].items()},
                         *[b.term_sizes.get(t, 0) for t in TERMS]))
    return spark.createDataFrame(rows, schema=_GROUP_SCHEMA)


def batch_design(spark: SparkSession, cells: DataFrame, batches: list[Batch],
                 designs: dict[int, GroupDesign]) -> DataFrame:
    """All batches' fit cells as ``BATCH_COLUMNS``: column indices per term, label and weight.

    ``BLOCK_COLUMN_<term>`` is the level's column within the term's block of the
    batch, or ``BLOCK_SIZE_<term>`` (the encoder's dropped category) for a
    reference level or a level without parameter; a numeric term's slope is
    its only feature, so its column is the group's whichever the cell's value
    (``VALUE_<term>``, 0 where the group has no slope).
    """
    table = _group_table(spark, batches)
    batched = [designs[g] for b in batches for g in b.groups]
    joined = fit_cells(cells, batched).join(F.broadcast(table), on="DIAG_GROUP", how="inner")
    # a numeric term's slope is the group's column whatever the cell's value
    block_columns = [F.coalesce(F.try_element_at(F.col("BLOCK_COLUMN_OF_LEVEL"),
                                                 F.lit(level_key(t, PER_UNIT)) if t in NUMERIC_TERMS
                                                 else level_key_expr(t)),
                                F.col(f"BLOCK_SIZE_{t}")).alias(f"BLOCK_COLUMN_{t}") for t in TERMS]
    values = [F.coalesce(numeric_value_expr(t), F.lit(0.0)).alias(f"VALUE_{t}") for t in _NUMERIC]
    return joined.select(
        "DIAG_GROUP", "BATCH", "GROUP_INDEX", *block_columns, *values,
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
    terms = [t for t in TERMS if batch.term_sizes.get(t)]
    # the group column has one extra, dropped category so that every group keeps its intercept
    numeric = [t for t in terms if t in NUMERIC_TERMS]
    data = design.where(F.col("BATCH") == F.lit(batch.number)).coalesce(1).select(
        _nominal("GROUP_INDEX", len(batch.groups) + 1),
        *[_nominal(f"BLOCK_COLUMN_{t}", batch.term_sizes[t] + 1) for t in terms],
        *[f"VALUE_{t}" for t in numeric], "label", "weight")
    inputs = ["GROUP_INDEX", *[f"BLOCK_COLUMN_{t}" for t in terms]]
    one_hot = [f"ONE_HOT_{c}" for c in inputs]
    encoder = OneHotEncoder(inputCols=inputs, outputCols=one_hot, dropLast=True)
    encoded = encoder.fit(data).transform(data)
    # a numeric term's block: the group's one-hot column times the cell's value
    for t in numeric:
        encoded = Interaction(inputCols=[f"ONE_HOT_BLOCK_COLUMN_{t}", f"VALUE_{t}"],
                              outputCol=f"SLOPE_{t}").transform(encoded)
    blocks = ["ONE_HOT_GROUP_INDEX",
              *[f"SLOPE_{t}" if t in NUMERIC_TERMS else f"ONE_HOT_BLOCK_COLUMN_{t}" for t in terms]]
    assembled = (VectorAssembler(inputCols=blocks, outputCol="features")
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
        except SPARK_FIT_ERRORS:  # none when the normal equations were singular
            ses = None
    finally:
        assembled.unpersist()
    if coefficients.shape[0] != batch.n_params:
        raise ValueError(f"batch {batch.number}: {coefficients.shape[0]} coefficients, "
                         f"expected {batch.n_params}")
    return BatchFit(coefficients=coefficients, standard_errors=ses, iterations=iterations,
                    seconds=time.perf_counter() - t0)


def group_estimates(fit: BatchFit, batch: Batch, design: GroupDesign) -> Estimates:
    """One group's estimates (and standard errors, when the batch has them) out of its batch's fit."""
    group_index = batch.groups.index(design.group)
    idx = [batch.coefficient_index(design.group, t, lv) for t, lv in design.features]
    ses = fit.standard_errors
    return Estimates(intercept=float(fit.coefficients[group_index]),
                     intercept_se=None if ses is None else ses[group_index],
                     betas=fit.coefficients[idx],
                     ses=None if ses is None else ses[idx])
