"""Risk models: one logistic regression per diagnosis group (METHOD.md §5).

``death ~ AGE_BAND + SEX_CAT + ADMIMETH_CAT + ADM_MONTH + YEAR_INDEX +
CHARLSON_BAND (+ BIRWEIT_BAND)``, all categorical main effects, fitted on the
covariate cells (:mod:`shmi_spark.model.cells`) with Spark ML's
``GeneralizedLinearRegression(family="binomial", link="logit")``: label
``DEATHS / SPELLS``, weight ``SPELLS``.  The weighted binomial likelihood of
the cells is the record-level likelihood, so the estimates are exactly the
record-level MLE (IRLS to ``config.tol`` on the coefficients).  Each group's
encoding — its levels, reference levels, separated levels — is its
:class:`~shmi_spark.model.design.GroupDesign` (:mod:`shmi_spark.model.design`),
decided from the cells' counts before any fit.

Rules (METHOD.md §5: levels with no spells, groups with no deaths and
separation must not crash or give silent nonsense), reported per group in the
diagnostics' ``RULE`` and ``DETAIL``:

* fewer than ``config.min_deaths`` deaths, no deaths, or no survivors →
  ``crude_rate``: every spell gets the group's crude rate (0 deaths → 0, all
  died → 1), no fit;
* no covariate varies → ``mle`` in closed form (intercept = logit of the rate);
* otherwise an unpenalised fit → ``mle`` when accepted.  It is not accepted
  when it does not converge within ``config.max_iter`` iterations, has a
  non-finite coefficient, any ``|coefficient| > config.max_abs_coef``, or a
  singular design (no or non-finite standard errors, one above
  :data:`MAX_STD_ERROR`, or fewer cells than parameters);
* separation — a level of an included term where nobody or everybody died,
  found before fitting — and a fit not accepted are handled by
  ``config.degenerate_rule``:

  - ``"extended_mle"`` (the default): each separated level is fixed at
    −``config.separation_logit`` on the log-odds where nobody died (+ where
    everybody did), reported without a standard error, and the other levels
    are the unpenalised MLE on the cells that hold no separated level — the
    limit of the record-level MLE, whose separated contrasts run off to ∓∞
    → ``mle_extended``.  When every level of a term is separated, or that fit
    is not accepted, the group is refitted as under ``"ridge"``, every level
    estimated.  Known (issue 14): when every varying level of a group is
    separated (for instance a group with one death) no column is left to fit;
    the unpenalised attempt then fails (``DETAIL`` says ``unpenalised fit
    failed: AttributeError``) and the group goes to ``ridge``;
  - ``"ridge"``: refit with Spark's L2 ``regParam = config.ridge_penalty``
    (Spark's objective is the mean weighted deviance / 2 + λ/2·||β||²,
    intercept unpenalised: on the total log-likelihood that is a penalty
    λ·SPELLS/2·||β||²) → ``ridge``, standard errors null;
  - ``"crude"`` → ``crude_rate``.

  A ridge fit that fails too falls back to ``crude_rate`` (the error is in
  ``DETAIL``).

Batching (:mod:`shmi_spark.model.batches`): a fit of a few thousand cells is
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
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

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
from shmi_spark.model.batches import Batch, batch_design, fit_batch, group_estimates, make_batch, pack_batches
from shmi_spark.model.cells import level_expr
from shmi_spark.model.design import (
    CRUDE_RATE,
    INTERCEPT,
    TERMS,
    Estimates,
    GroupDesign,
    drop_emptied_levels,
    fit_cells,
    group_designs,
    group_level_counts,
    level_sort_key,
)

__all__ = ["COEF_COLUMNS", "DIAG_COLUMNS", "MAX_STD_ERROR", "GroupModels", "GroupFit", "fit_group_models"]

log = logging.getLogger(__name__)

# A standard error this large (log-odds) means a numerically singular information
# matrix: a level holding one or two spells has a standard error of about 1-2.
MAX_STD_ERROR = 1e3

COEF_COLUMNS = ["DIAG_GROUP", "TERM", "LEVEL", "ESTIMATE", "STD_ERROR", "REFERENCE"]
DIAG_COLUMNS = ["DIAG_GROUP", "SPELLS", "DEATHS", "N_CELLS", "N_PARAMS", "ITERATIONS",
                "CONVERGED", "BATCH", "RULE", "DETAIL", "SECONDS"]


@dataclass
class GroupModels:
    """The fitted models: pandas ``coefficients`` and ``diagnostics`` (see module doc)."""

    coefficients: pd.DataFrame
    diagnostics: pd.DataFrame


@dataclass(frozen=True)
class GroupFit:
    """One group's outcome: its rows of ``coefficients`` and its row of ``diagnostics``."""

    coefficients: list[dict]
    diagnostics: dict


# --- rows of the two tables ----------------------------------------------------------


def _diagnostics_row(d: GroupDesign, n_params: int, iterations: int, converged: bool, rule: str,
                     detail: list[str], seconds: float, batch: str | None = None) -> dict:
    return dict(DIAG_GROUP=d.group, SPELLS=d.spells, DEATHS=d.deaths, N_CELLS=d.n_cells,
                N_PARAMS=n_params, ITERATIONS=iterations, CONVERGED=converged, BATCH=batch, RULE=rule,
                DETAIL="; ".join(detail + d.notes), SECONDS=seconds)


def _crude(d: GroupDesign, rule_detail: list[str], seconds: float = 0.0) -> GroupFit:
    rate = d.deaths / d.spells
    se = math.sqrt(rate * (1 - rate) / d.spells)
    coefs = [dict(DIAG_GROUP=d.group, TERM=CRUDE_RATE, LEVEL="", ESTIMATE=rate, STD_ERROR=se,
                  REFERENCE=False)]
    return GroupFit(coefs, _diagnostics_row(d, 1, 0, True, "crude_rate", rule_detail, seconds))


def _coef_rows(d: GroupDesign, est: Estimates) -> list[dict]:
    rows = [dict(DIAG_GROUP=d.group, TERM=INTERCEPT, LEVEL="", ESTIMATE=float(est.intercept),
                 STD_ERROR=None if est.intercept_se is None else float(est.intercept_se), REFERENCE=False)]
    index = {f: i for i, f in enumerate(d.features)}
    for term, rows_t in d.levels.items():
        for lv, _, _ in rows_t:
            i = index.get((term, lv))
            if (term, lv) in d.fixed:
                rows.append(dict(DIAG_GROUP=d.group, TERM=term, LEVEL=lv, ESTIMATE=float(d.fixed[(term, lv)]),
                                 STD_ERROR=None, REFERENCE=False))
            elif i is None:
                rows.append(dict(DIAG_GROUP=d.group, TERM=term, LEVEL=lv, ESTIMATE=0.0,
                                 STD_ERROR=None, REFERENCE=True))
            else:
                rows.append(dict(DIAG_GROUP=d.group, TERM=term, LEVEL=lv, ESTIMATE=float(est.betas[i]),
                                 STD_ERROR=None if est.ses is None else float(est.ses[i]), REFERENCE=False))
    return rows


# --- the rules -------------------------------------------------------------------------


def _needs_fit(d: GroupDesign, config: ModelConfig) -> bool:
    """True when the group's model takes a Spark fit (not the crude rate, not closed form)."""
    if d.deaths == 0 or d.deaths < config.min_deaths or d.deaths >= d.spells:
        return False
    return bool(d.features or d.fixed)


def _tries_mle(d: GroupDesign) -> bool:
    """True when the rules start with an unpenalised fit (no unresolved separation)."""
    return not d.separated or (bool(d.fixed) and not d.unresolved)


def _rule_without_fit(d: GroupDesign, config: ModelConfig, t0: float) -> GroupFit | None:
    """The model of a group that takes no Spark fit (crude rate, closed form); None when it takes one."""
    if d.deaths == 0:
        return _crude(d, ["no deaths"], time.perf_counter() - t0)
    if d.deaths < config.min_deaths:
        return _crude(d, [f"{d.deaths} deaths < min_deaths {config.min_deaths}"], time.perf_counter() - t0)
    if d.deaths >= d.spells:
        return _crude(d, ["no survivors"], time.perf_counter() - t0)
    if not d.features and not d.fixed:
        rate = d.deaths / d.spells
        est = Estimates(intercept=math.log(rate / (1 - rate)),
                        intercept_se=math.sqrt(1 / d.deaths + 1 / (d.spells - d.deaths)),
                        betas=np.zeros(0), ses=np.zeros(0))
        return GroupFit(_coef_rows(d, est),
                        _diagnostics_row(d, 1, 0, True, "mle", ["no covariate varies: intercept-only, closed form"],
                                         time.perf_counter() - t0))
    return None


def _mle_problems(d: GroupDesign, config: ModelConfig, est: Estimates, iterations: int) -> list[str]:
    """Why an unpenalised fit is not accepted as the MLE (empty: it is)."""
    bad = []
    if iterations >= config.max_iter:
        bad.append(f"not converged in {iterations} iterations")
    if not (np.isfinite(est.intercept) and np.all(np.isfinite(est.betas))):
        bad.append("non-finite coefficients")
    else:
        values = np.concatenate([[est.intercept], est.betas])
        worst = int(np.argmax(np.abs(values)))
        if abs(values[worst]) > config.max_abs_coef:
            name = INTERCEPT if worst == 0 else "=".join(d.features[worst - 1])
            bad.append(f"|coefficient| > {config.max_abs_coef:g} ({name}: {values[worst]:.3g})")
    ses = est.all_standard_errors
    if ses is None or not np.all(np.isfinite(ses)):
        bad.append("singular design (no standard errors)")
    elif np.max(ses) > MAX_STD_ERROR:
        bad.append(f"singular design (standard error {np.max(ses):.3g} > {MAX_STD_ERROR:g})")
    elif d.rank_deficient:
        bad.append(f"singular design ({d.n_params} parameters, fewer cells)")
    return bad


def _mle_result(d: GroupDesign, config: ModelConfig, est: Estimates, iterations: int, seconds: float,
                batch: str | None = None) -> GroupFit:
    """Coefficient rows and diagnostics of an accepted unpenalised fit."""
    coefs = _coef_rows(d, est)
    n_params = len(est.betas) + 1
    if d.fixed:
        note = [f"separation: {', '.join(d.separated)}; those levels fixed at "
                f"±{config.separation_logit:g} on the log-odds, the rest fitted without their cells"]
        return GroupFit(coefs, _diagnostics_row(d, n_params, iterations, True, "mle_extended", note, seconds, batch))
    return GroupFit(coefs, _diagnostics_row(d, n_params, iterations, True, "mle", [], seconds, batch))


# --- one group alone ---------------------------------------------------------------------


@contextmanager
def _spark_job(spark: SparkSession, config: ModelConfig, description: str) -> Iterator[None]:
    """Run this thread's Spark jobs in the models' FAIR pool, under ``description``."""
    sc = spark.sparkContext
    sc.setLocalProperty("spark.scheduler.pool", config.scheduler_pool)
    sc.setJobDescription(description)
    try:
        yield
    finally:
        sc.setJobDescription(None)  # type: ignore[arg-type]  # None clears it


def _group_data(cells: DataFrame, d: GroupDesign) -> DataFrame:
    """One group's fit cells as (features, label = DEATHS/SPELLS, weight = SPELLS), one partition."""
    names = [f"INDICATOR_{i}" for i in range(len(d.features))]
    indicators = [F.when(level_expr(t) == F.lit(lv), F.lit(1.0)).otherwise(F.lit(0.0)).alias(n)
                  for (t, lv), n in zip(d.features, names, strict=True)]
    data = (fit_cells(cells, [d]).coalesce(1)
            .select(*indicators,
                    (F.col("DEATHS") / F.col("SPELLS")).alias("label"),
                    F.col("SPELLS").cast("double").alias("weight")))
    return VectorAssembler(inputCols=names, outputCol="features").transform(data) \
        .select("features", "label", "weight")


def _glr_fit(data: DataFrame | None, d: GroupDesign, config: ModelConfig, reg_param: float, *,
             standard_errors: bool) -> tuple[Estimates, int]:
    """Fit one group's weighted cells with Spark's IRLS; returns (estimates, iterations).

    With ``standard_errors`` (an unpenalised fit), those Spark reports, or None
    when it has none; without, None.
    """
    glr = GeneralizedLinearRegression(family="binomial", link="logit", solver="irls",
                                      labelCol="label", weightCol="weight", featuresCol="features",
                                      fitIntercept=True, maxIter=config.max_iter, tol=config.tol,
                                      regParam=reg_param)
    # ``data`` is None when every varying level is fixed (no column left): the fit then
    # fails and the caller's rule applies, see "Known (issue 14)" in the module doc.
    model = glr.fit(data)  # type: ignore[arg-type]
    betas = np.asarray(model.coefficients.toArray(), dtype=float)
    intercept = float(model.intercept)
    iterations = int(model.summary.numIterations)
    ses = None
    if standard_errors:
        try:
            ses = np.asarray(model.summary.coefficientStandardErrors, dtype=float)
        except Exception as exc:  # noqa: BLE001 - Spark gives none when the normal equations are singular
            log.info("group %s: no standard errors (%s)", d.group, exc)
            ses = None
    # Spark lists the intercept's standard error last
    return Estimates(intercept=intercept, intercept_se=None if ses is None else ses[-1], betas=betas,
                     ses=None if ses is None else ses[:-1]), iterations


def _fit_one(spark: SparkSession, cells: DataFrame, d: GroupDesign, config: ModelConfig) -> GroupFit:
    """Fit one group alone following the rules of the module doc."""
    t0 = time.perf_counter()
    done = _rule_without_fit(d, config, t0)
    if done is not None:
        return done
    with _spark_job(spark, config, f"SHMI risk model, diagnosis group {d.group}"):
        if d.fixed and d.features and d.n_fit_cells is None:
            d = drop_emptied_levels(cells, [d])[0]
        # the group's rows, persisted: IRLS makes one pass per iteration (and a ridge refit more)
        data = _group_data(cells, d).persist(StorageLevel.MEMORY_AND_DISK) if d.features else None
        try:
            return _fit_with_rules(data, d, config, t0, cells)
        finally:
            if data is not None:
                data.unpersist()


def _fit_with_rules(data: DataFrame | None, d: GroupDesign, config: ModelConfig, t0: float,
                    cells: DataFrame) -> GroupFit:
    """The unpenalised fit when the rules allow it, else (or when not accepted) ``degenerate_rule``."""
    problems: list[str] = []
    if not _tries_mle(d):
        problems.append("separation: " + ", ".join(d.separated))
    else:
        try:
            est, iterations = _glr_fit(data, d, config, 0.0, standard_errors=True)
            bad = _mle_problems(d, config, est, iterations)
            if not bad:
                return _mle_result(d, config, est, iterations, time.perf_counter() - t0)
            if d.fixed:
                bad.insert(0, "separation: " + ", ".join(d.separated))
            problems.extend(bad)
        except Exception as exc:  # noqa: BLE001 - any solver failure makes the group degenerate
            problems.append(f"unpenalised fit failed: {type(exc).__name__}: {str(exc)[:200]}")

    if config.degenerate_rule == "crude":
        return _crude(d, problems + ["degenerate_rule=crude"], time.perf_counter() - t0)
    if d.fixed:  # the ridge refit estimates every level, separated ones included
        d = d.without_fixed()
        data = _group_data(cells, d)
    try:
        est, iterations = _glr_fit(data, d, config, float(config.ridge_penalty), standard_errors=False)
        if not (np.isfinite(est.intercept) and np.all(np.isfinite(est.betas))):
            raise FloatingPointError("non-finite ridge coefficients")
    except Exception as exc:  # noqa: BLE001 - last resort: the crude rate, with the reason
        log.warning("group %s: ridge fit failed (%s); using the crude rate", d.group, exc)
        return _crude(d, problems + [f"ridge fit failed: {type(exc).__name__}: {str(exc)[:200]}"],
                      time.perf_counter() - t0)
    converged = iterations < config.max_iter
    return GroupFit(_coef_rows(d, est),
                    _diagnostics_row(d, len(est.betas) + 1, iterations, converged, "ridge",
                                     problems + [f"ridge_penalty={config.ridge_penalty:g}"],
                                     time.perf_counter() - t0))


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
    with _spark_job(spark, config, f"SHMI risk models, batch {batch.label} "
                                   f"(groups {batch.groups[0]}-{batch.groups[-1]})"):
        try:
            fit = fit_batch(design, batch, max_iter=config.max_iter, tol=config.tol)
        except Exception as exc:  # noqa: BLE001 - the batch is split
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
        est = group_estimates(fit, batch, d)
        # convergence is the batch's: judged below, not per group
        if _mle_problems(d, config, est, 0):
            bad.append(g)
        elif converged:
            results.append(_mle_result(d, config, est, fit.iterations, fit.seconds, batch.label))
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
        sub = make_batch(0, f"{parent.label}.{i + 1}", [designs[g] for g in groups])
        results += _fit_batch(spark, cells, batch_design(spark, cells, [sub], designs), sub, designs, config)
    return results


# --- all groups --------------------------------------------------------------------------


def _fit_all(spark: SparkSession, cells: DataFrame, designs: list[GroupDesign],
             config: ModelConfig) -> list[GroupFit]:
    """Every group's fit: batches and lone fits, ``config.parallelism`` at a time."""
    fitted = [d for d in designs if _needs_fit(d, config) and _tries_mle(d)]
    fitted = drop_emptied_levels(cells, fitted)
    by_group = {d.group: d for d in designs} | {d.group: d for d in fitted}
    # a rank-deficient group would make its whole batch singular: it is fitted alone
    batchable = [d for d in fitted if d.features and not d.rank_deficient]
    batches = pack_batches(batchable, config.batch_parameters)[0] if config.batch_parameters > 1 else []
    in_batch = {g for b in batches for g in b.groups}
    singles = [d for d in by_group.values() if d.group not in in_batch]
    # biggest first: the pool's tail is then made of quick fits
    singles.sort(key=lambda d: -d.n_cells)
    design = (batch_design(spark, cells, batches, by_group).orderBy("BATCH")
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
    if groups_meta is not None and "DIAG_GROUP" in groups_meta.columns:
        extra = groups_meta.drop_duplicates("DIAG_GROUP").astype({"DIAG_GROUP": "int64"})
        extra = extra[["DIAG_GROUP", *[c for c in extra.columns if c not in DIAG_COLUMNS]]]
        diagnostics = diagnostics.merge(extra, on="DIAG_GROUP", how="left")
    return GroupModels(coefficients=coefficients, diagnostics=diagnostics)


def fit_group_models(spark: SparkSession, cells: DataFrame, *, config: ModelConfig,
                     groups_meta: pd.DataFrame | None = None) -> GroupModels:
    """Fit every diagnosis group's model from the cells table, ``config.parallelism`` at a time.

    The cells are cached once, ordered by group.  Groups that take an
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
    cached = (cells.select("DIAG_GROUP", *TERMS, "SPELLS", "DEATHS")
              .where(F.col("SPELLS") > 0)
              .orderBy("DIAG_GROUP")
              .persist(StorageLevel.MEMORY_AND_DISK))
    try:
        level_counts = group_level_counts(cached)
        if level_counts.empty:
            return GroupModels(coefficients=pd.DataFrame(columns=COEF_COLUMNS),
                               diagnostics=pd.DataFrame(columns=DIAG_COLUMNS))
        logit = config.separation_logit if config.degenerate_rule == "extended_mle" else 0.0
        results = _fit_all(spark, cached, group_designs(level_counts, logit), config)
    finally:
        cached.unpersist()
    return _tables(results, groups_meta)
