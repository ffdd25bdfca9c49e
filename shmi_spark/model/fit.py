"""Risk models: one logistic regression per diagnosis group (METHOD.md §5).

``death ~ AGE_BAND + SEX_CAT + ADMIMETH_CAT + ADM_MONTH + YEAR_INDEX +
CHARLSON_BAND (+ BIRWEIT_BAND)``, all categorical main effects (the HSMR's
case mix adds its terms, and its Charlson score as one numeric slope), fitted on the
covariate cells (:mod:`shmi_spark.model.cells`) with Spark ML's
``GeneralizedLinearRegression(family="binomial", link="logit")``: label
``DEATHS / SPELLS``, weight ``SPELLS``.  The weighted binomial likelihood of
the cells is the record-level likelihood, so the estimates are exactly the
record-level MLE (IRLS to ``config.tol`` on the coefficients).  Each group's
encoding — its levels, reference levels, features — is its
:class:`~shmi_spark.model.design.GroupDesign` (:mod:`shmi_spark.model.design`),
decided from the cells' counts before any fit; where its data separate, and
which features are aliased, is decided from its cells
(:mod:`shmi_spark.model.separation`, a linear programme per group).

The rules (METHOD.md §5: levels with no spells, groups with no deaths and
separation must not crash or give silent nonsense; by default the exact
limit of the maximum-likelihood fit) are in :mod:`shmi_spark.model.rules`,
whatever fits the groups.  Two engines (``config.engine``) fit them, with the
same answer to rounding (1e-9):

* ``"grouped"`` (the default, :mod:`shmi_spark.model.grouped`): one Spark job
  for all groups — the cells grouped by ``DIAG_GROUP`` in a grouped-map pandas
  UDF, each group examined for separation and fitted where its cells are by
  Spark ML's IRLS algorithm in numpy (:mod:`shmi_spark.model.irls`).  Its cost
  grows with the cells, not with the number of groups or of degenerate rules.
* ``"spark_ml"``: Spark ML's ``GeneralizedLinearRegression`` itself, after one
  Spark job that examines every group's cells for separation
  (:func:`~shmi_spark.model.grouped.examine_groups`), in the batches below
  and, for the rest, one group at a time (one Spark job per IRLS iteration);
  the reference the other is tested against.  It has no Firth fit.

Batching (``"spark_ml"``, :mod:`shmi_spark.model.batches`): a fit of a few thousand cells is
one small Spark job per IRLS iteration, so with ~140 groups the job overhead,
not the arithmetic, is the cost.  The groups that take an unpenalised fit are
therefore packed, in group order, into batches of up to
``config.batch_parameters`` parameters, each one Spark ML fit of a
block-diagonal design: every group has its own intercept and covariate
columns and shares nothing, so the normal equations are block-diagonal and
each group gets exactly its own MLE and standard errors.  A group whose batch
estimate is not accepted is fitted alone with all the rules above; a batch
that does not converge is refitted without the groups holding it back (found
by their runaway coefficients, or by halving); groups that need a penalised
fit, and groups with fewer cells than parameters, are fitted alone.
``batch_parameters = 0`` fits every group alone.  ``BATCH`` in the
diagnostics names the batch that fitted a group.

Outputs (:class:`GroupModels`, pandas):

``coefficients`` — the shape NHS England publishes as "statistical model data":
``DIAG_GROUP, TERM, LEVEL, ESTIMATE, STD_ERROR`` plus ``REFERENCE`` (bool).
``TERM`` is ``INTERCEPT`` (``LEVEL`` ``''``) or a covariate column name; every
level with spells in the group is listed, the reference with estimate 0.  A
crude-rate group has a single row ``TERM = 'CRUDE_RATE'``, ``LEVEL = ''``,
``ESTIMATE`` = the rate (a probability, not a log-odds), ``STD_ERROR`` its
binomial standard error.

``diagnostics`` — one row per group: ``DIAG_GROUP, SPELLS, DEATHS, N_CELLS,
N_PARAMS, ITERATIONS, CONVERGED, BATCH, RULE, DETAIL, SECONDS`` (+ the columns
of ``groups_meta``, e.g. a group label, when given).

``separated`` — one row per cell set at its limit by the ``ml_limit`` rule:
``DIAG_GROUP``, the cell's level of every term, ``LIMIT`` (0.0 nobody died,
1.0 everybody did).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pyspark import StorageLevel

# imported here, never inside the fitting threads: a first import of pyspark.ml from
# several threads at once races on its partially initialised modules
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.regression import GeneralizedLinearRegression
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from shmi_spark.config import ModelConfig
from shmi_spark.model.batches import (
    SPARK_FIT_ERRORS,
    Batch,
    batch_design,
    fit_batch,
    group_estimates,
    make_batch,
    pack_batches,
)
from shmi_spark.model.cells import with_all_terms
from shmi_spark.model.design import (
    CRUDE_RATE,
    INTERCEPT,
    TERMS,
    Estimates,
    GroupDesign,
    feature_value_expr,
    fit_cells,
    group_designs,
    group_level_counts,
    level_sort_key,
)
from shmi_spark.model.grouped import examine_groups, fit_groups, spark_job
from shmi_spark.model.rules import (
    MAX_STD_ERROR,
    GroupFit,
    fit_with_rules,
    mle_problems,
    mle_result,
    needs_fit,
    rule_without_fit,
)

__all__ = ["COEF_COLUMNS", "DIAG_COLUMNS", "SEPARATED_COLUMNS", "MAX_STD_ERROR", "GroupModels", "GroupFit",
           "fit_group_models"]

log = logging.getLogger(__name__)

COEF_COLUMNS = ["DIAG_GROUP", "TERM", "LEVEL", "ESTIMATE", "STD_ERROR", "REFERENCE"]
DIAG_COLUMNS = ["DIAG_GROUP", "SPELLS", "DEATHS", "N_CELLS", "N_PARAMS", "ITERATIONS",
                "CONVERGED", "BATCH", "RULE", "DETAIL", "SECONDS"]
SEPARATED_COLUMNS = ["DIAG_GROUP", *TERMS, "LIMIT"]


@dataclass
class GroupModels:
    """The fitted models: pandas ``coefficients``, ``diagnostics`` and ``separated`` (see module doc)."""

    coefficients: pd.DataFrame
    diagnostics: pd.DataFrame
    separated: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SEPARATED_COLUMNS))


# --- one group alone ---------------------------------------------------------------------


def _group_data(cells: DataFrame, d: GroupDesign) -> DataFrame:
    """One group's fit cells as (features, label = DEATHS/SPELLS, weight = SPELLS), one partition."""
    names = [f"INDICATOR_{i}" for i in range(len(d.features))]
    indicators = [feature_value_expr(t, lv).alias(n) for (t, lv), n in zip(d.features, names, strict=True)]
    data = (fit_cells(cells, [d]).coalesce(1)
            .select(*indicators,
                    (F.col("DEATHS") / F.col("SPELLS")).alias("label"),
                    F.col("SPELLS").cast("double").alias("weight")))
    return VectorAssembler(inputCols=names, outputCol="features").transform(data) \
        .select("features", "label", "weight")


def _glr_fit(data: DataFrame, d: GroupDesign, config: ModelConfig, reg_param: float, *,
             standard_errors: bool) -> tuple[Estimates, int]:
    """Fit one group's weighted cells with Spark's IRLS; returns (estimates, iterations).

    With ``standard_errors`` (an unpenalised fit), those Spark reports, or None
    when it has none (singular normal equations); without, None.
    """
    glr = GeneralizedLinearRegression(family="binomial", link="logit", solver="irls",
                                      labelCol="label", weightCol="weight", featuresCol="features",
                                      fitIntercept=True, maxIter=config.max_iter, tol=config.tol,
                                      regParam=reg_param)
    model = glr.fit(data)
    betas = np.asarray(model.coefficients.toArray(), dtype=float)
    intercept = float(model.intercept)
    iterations = int(model.summary.numIterations)
    ses = None
    if standard_errors:
        try:
            ses = np.asarray(model.summary.coefficientStandardErrors, dtype=float)
        except SPARK_FIT_ERRORS as exc:  # Spark gives none when the normal equations are singular
            log.info("group %s: no standard errors (%s)", d.group, exc)
            ses = None
    # Spark lists the intercept's standard error last
    return Estimates(intercept=intercept, intercept_se=None if ses is None else ses[-1], betas=betas,
                     ses=None if ses is None else ses[:-1]), iterations


def _fit_one(spark: SparkSession, cells: DataFrame, d: GroupDesign, config: ModelConfig) -> GroupFit:
    """Fit one group alone with Spark ML, following the rules (:mod:`shmi_spark.model.rules`)."""
    t0 = time.perf_counter()
    done = rule_without_fit(d, config, t0)
    if done is not None:
        return done
    persisted: dict[tuple, DataFrame] = {}

    def fit(design: GroupDesign, reg_param: float, standard_errors: bool) -> tuple[Estimates, int]:
        key = (tuple(design.features), design.excluded)
        if key not in persisted:  # IRLS makes one pass per iteration
            persisted[key] = _group_data(cells, design).persist(StorageLevel.MEMORY_AND_DISK)
        return _glr_fit(persisted[key], design, config, reg_param, standard_errors=standard_errors)

    with spark_job(spark, config, f"SHMI risk model, diagnosis group {d.group}"):
        try:
            return fit_with_rules(fit, d, config, t0, SPARK_FIT_ERRORS)
        finally:
            for data in persisted.values():
                data.unpersist()


# --- batches -----------------------------------------------------------------------------


def _fit_batch(spark: SparkSession, cells: DataFrame, design: DataFrame, batch: Batch,
               designs: dict[int, GroupDesign], config: ModelConfig) -> list[GroupFit]:
    """Fit one batch and accept each group's estimates that pass the MLE checks.

    A group that fails them is fitted alone (all the rules of the module doc).
    When the batch does not converge, the groups with bad-looking estimates
    (too large, non-finite) are taken out and the rest refitted as a batch; when
    it fails without a culprit (an error, a singular design, or no convergence
    with no bad-looking group), it is split in two halves, each refitted.
    """
    fit = None
    with spark_job(spark, config, f"SHMI risk models, batch {batch.label} "
                                   f"(groups {batch.groups[0]}-{batch.groups[-1]})"):
        try:
            fit = fit_batch(design, batch, max_iter=config.max_iter, tol=config.tol)
        except SPARK_FIT_ERRORS as exc:  # the batch is split
            log.info("batch %s failed (%s); splitting it", batch.label, exc)
    if fit is None or fit.standard_errors is None:
        half = (len(batch.groups) + 1) // 2
        return _refit(spark, cells, batch, [list(batch.groups[:half]), list(batch.groups[half:])], designs, config)
    converged = fit.iterations < config.max_iter
    results: list[GroupFit] = []
    good: list[int] = []
    bad: list[int] = []
    for g in batch.groups:
        d = designs[g]
        m = d.mle_form()
        est = group_estimates(fit, batch, m)
        # convergence is the batch's: judged below, not per group
        if mle_problems(m, config, est, 0):
            bad.append(g)
        elif converged:
            results.append(mle_result(d, m, config, est, fit.iterations, fit.seconds, batch.label))
        else:
            good.append(g)
    results += [_fit_one(spark, cells, designs[g], config) for g in bad]
    if good:  # not converged: refit without the culprits, or in halves when there is none
        half = (len(good) + 1) // 2
        parts = [good] if bad else [good[:half], good[half:]]
        results += _refit(spark, cells, batch, parts, designs, config)
    return results


def _refit(spark: SparkSession, cells: DataFrame, parent: Batch, parts: list[list[int]],
           designs: dict[int, GroupDesign], config: ModelConfig) -> list[GroupFit]:
    """Refit parts of a batch: as smaller batches (labelled ``<parent>.<i>``), or alone."""
    results: list[GroupFit] = []
    for i, groups in enumerate(p for p in parts if p):
        if len(groups) == 1:
            results.append(_fit_one(spark, cells, designs[groups[0]], config))
            continue
        forms = {g: designs[g].mle_form() for g in groups}
        sub = make_batch(0, f"{parent.label}.{i + 1}", [forms[g] for g in groups])
        results += _fit_batch(spark, cells, batch_design(spark, cells, [sub], forms), sub, designs, config)
    return results


# --- all groups --------------------------------------------------------------------------


def _fit_all(spark: SparkSession, cells: DataFrame, designs: list[GroupDesign],
             config: ModelConfig) -> list[GroupFit]:
    """Every group's fit: batches and lone fits, ``config.parallelism`` at a time."""
    fitted = examine_groups(spark, cells, [d for d in designs if needs_fit(d, config)], config)
    by_group = {d.group: d for d in designs} | {d.group: d for d in fitted}
    # the groups whose maximum-likelihood fit is tried, in the form it takes
    forms = {d.group: d.mle_form() for d in fitted if d.limit is not None and not d.limit.failed
             and (config.degenerate_rule == "ml_limit" or not d.degenerate)}
    # a rank-deficient group would make its whole batch singular: it is fitted alone
    batchable = [m for m in forms.values() if m.features and not m.rank_deficient]
    batches = pack_batches(batchable, config.batch_parameters)[0] if config.batch_parameters > 1 else []
    in_batch = {g for b in batches for g in b.groups}
    singles = [d for d in by_group.values() if d.group not in in_batch]
    # biggest first: the pool's tail is then made of quick fits
    singles.sort(key=lambda d: -d.n_cells)
    design = (batch_design(spark, cells, batches, forms).orderBy("BATCH")
              .persist(StorageLevel.MEMORY_AND_DISK)) if batches else None
    try:
        pool = ThreadPoolExecutor(max_workers=max(1, config.parallelism), thread_name_prefix="shmi-model")
        finished = False
        try:
            jobs = ([pool.submit(_fit_batch, spark, cells, design, b, by_group, config) for b in batches]
                    if design is not None else [])
            jobs += [pool.submit(lambda d: [_fit_one(spark, cells, d, config)], d) for d in singles]
            results = [r for job in jobs for r in job.result()]
            finished = True
        finally:
            # on Ctrl-C or a failed fit: start no further fit and stop the running ones
            pool.shutdown(wait=finished, cancel_futures=not finished)
            if not finished:
                spark.sparkContext.cancelAllJobs()
    finally:
        if design is not None:
            design.unpersist()
    return results


def _tables(results: list[GroupFit], groups_meta: pd.DataFrame | None) -> GroupModels:
    """The two tables from the groups' results, sorted (so they do not depend on thread order)."""
    coefficients = pd.DataFrame([row for r in results for row in r.coefficients], columns=COEF_COLUMNS)
    term_rank = {t: i for i, t in enumerate([INTERCEPT, CRUDE_RATE, *TERMS])}
    coefficients = (coefficients
                    .assign(TERM_RANK=coefficients["TERM"].map(term_rank),
                            LEVEL_SORT_KEY=coefficients["LEVEL"].map(level_sort_key))
                    .sort_values(["DIAG_GROUP", "TERM_RANK", "LEVEL_SORT_KEY"], kind="mergesort")
                    .drop(columns=["TERM_RANK", "LEVEL_SORT_KEY"]).reset_index(drop=True))
    coefficients = coefficients.astype({"DIAG_GROUP": "int64", "TERM": "string", "LEVEL": "string",
                                        "ESTIMATE": "float64", "STD_ERROR": "float64",
                                        "REFERENCE": "bool"})
    diagnostics = (pd.DataFrame([r.diagnostics for r in results], columns=DIAG_COLUMNS)
                   .sort_values("DIAG_GROUP").reset_index(drop=True)
                   .astype({"DIAG_GROUP": "int64", "SPELLS": "int64", "DEATHS": "int64",
                            "N_CELLS": "int64", "N_PARAMS": "int64", "ITERATIONS": "int64",
                            "CONVERGED": "bool", "BATCH": "string", "RULE": "string", "DETAIL": "string",
                            "SECONDS": "float64"}))
    separated = pd.DataFrame([row for r in results for row in r.separated], columns=SEPARATED_COLUMNS)
    separated = (separated.assign(SORT_KEYS=[tuple(level_sort_key(v) for v in row) for row in
                                             separated[TERMS].itertuples(index=False)])
                 .sort_values(["DIAG_GROUP", "SORT_KEYS"], kind="mergesort").drop(columns="SORT_KEYS")
                 .reset_index(drop=True)
                 .astype({"DIAG_GROUP": "int64", **{t: "string" for t in TERMS}, "LIMIT": "float64"}))
    if groups_meta is not None and "DIAG_GROUP" in groups_meta.columns:
        extra = groups_meta.drop_duplicates("DIAG_GROUP").astype({"DIAG_GROUP": "int64"})
        extra = extra[["DIAG_GROUP", *[c for c in extra.columns if c not in DIAG_COLUMNS]]]
        diagnostics = diagnostics.merge(extra, on="DIAG_GROUP", how="left")
    return GroupModels(coefficients=coefficients, diagnostics=diagnostics, separated=separated)


def fit_group_models(spark: SparkSession, cells: DataFrame, *, config: ModelConfig,
                     groups_meta: pd.DataFrame | None = None) -> GroupModels:
    """Fit every diagnosis group's model from the cells table (module doc: rules and engines).

    The cells are cached once.  With ``config.engine = "grouped"`` every group
    that takes a fit is fitted in one Spark job (:mod:`shmi_spark.model.grouped`).
    With ``"spark_ml"``, ``config.parallelism`` fits at a time: groups that take an
    unpenalised fit are packed, in group order, into block-diagonal batches of
    up to ``config.batch_parameters`` parameters (:mod:`shmi_spark.model.batches`:
    one Spark ML fit per batch, exactly each group's own MLE); a group whose
    batch estimate is not accepted (not converged, too large, singular), and
    every group needing a penalised fit, is fitted alone (``coalesce(1)``).
    Batches and lone fits run as concurrent Spark jobs in the FAIR pool
    ``config.scheduler_pool``.  Results are sorted, so they do not depend on
    the order in which threads finish.  ``groups_meta`` (optional, pandas,
    keyed by ``DIAG_GROUP``, e.g. group labels) is joined onto the diagnostics.
    """
    selected = with_all_terms(cells).select("DIAG_GROUP", *TERMS, "SPELLS", "DEATHS").where(F.col("SPELLS") > 0)
    if config.engine == "spark_ml":  # each lone fit then reads one group's run of rows
        selected = selected.orderBy("DIAG_GROUP")
    cached = selected.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        level_counts = group_level_counts(cached)
        if level_counts.empty:
            return GroupModels(coefficients=pd.DataFrame(columns=COEF_COLUMNS),
                               diagnostics=pd.DataFrame(columns=DIAG_COLUMNS))
        designs = group_designs(level_counts)
        if config.engine == "grouped":
            results = fit_groups(spark, cached, designs, config)
        else:
            results = _fit_all(spark, cached, designs, config)
    finally:
        cached.unpersist()
    return _tables(results, groups_meta)
