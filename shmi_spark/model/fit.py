"""Risk models: one logistic regression per diagnosis group (METHOD.md §5).

``death ~ AGE_BAND + SEX_CAT + ADMIMETH_CAT + ADM_MONTH + YEAR_INDEX +
CHARLSON_BAND (+ BIRWEIT_BAND)``, all categorical main effects, fitted on the
covariate cells (:mod:`shmi_spark.model.cells`) with Spark ML's
``GeneralizedLinearRegression(family="binomial", link="logit")``: label
``DEATHS / SPELLS``, weight ``SPELLS``.  The weighted binomial likelihood of
the cells is the record-level likelihood, so the estimates are exactly the
record-level MLE (IRLS to ``config.tol`` on the coefficients).

Encoding (per group, done here, not by a Spark indexer):

* a term's levels are those with spells in the group (levels absent from the
  group are dropped, and listed in ``DETAIL``); a null covariate is the level
  ``unknown``;
* the **reference level** of a term is its most populous level in the group
  (most spells; ties go to the first level in natural order,
  :func:`level_sort_key`: by leading number, so ``<1, 1-4, …, 90+``, then
  ``n/a``, ``unknown``); every other level gets a 0/1 indicator;
* a term with one level in the group has no parameter (its level is reported
  as the reference);
* ``BIRWEIT_BAND`` enters only for groups with a level other than ``n/a``.

Degenerate groups (METHOD.md §5), reported in the diagnostics' ``RULE`` and
``DETAIL``:

* fewer than ``config.min_deaths`` deaths, no deaths, or no survivors →
  ``crude_rate``: every spell gets the group's crude rate (0 deaths → 0, all
  died → 1), no fit;
* no covariate varies → ``mle`` in closed form (intercept = logit of the rate);
* separation — a level of an included term where nobody or everybody died
  (found before fitting), or an unpenalised fit that does not converge within
  ``config.max_iter``, has a non-finite coefficient or standard error
  (singular design) or any ``|coefficient| > config.max_abs_coef`` — applies
  ``config.degenerate_rule``: ``"ridge"`` refits with Spark's L2
  ``regParam = config.ridge_penalty`` (Spark's objective is the mean weighted
  deviance / 2 + λ/2·||β||², intercept unpenalised: on the total
  log-likelihood that is a penalty λ·SPELLS/2·||β||²) → ``ridge``, standard
  errors null; ``"crude"`` → ``crude_rate``.  A ridge fit that fails too falls
  back to ``crude_rate`` (the error is in ``DETAIL``).

Outputs (:class:`GroupModels`, pandas):

``coefficients`` — the shape NHS England publishes as "statistical model data":
``DIAG_GROUP, TERM, LEVEL, ESTIMATE, STD_ERROR`` plus ``REFERENCE`` (bool).
``TERM`` is ``INTERCEPT`` (``LEVEL`` ``''``) or a covariate column name; every
level with spells in the group is listed, the reference with estimate 0.  A
crude-rate group has a single row ``TERM = 'CRUDE_RATE'``, ``LEVEL = ''``,
``ESTIMATE`` = the rate (a probability, not a log-odds), ``STD_ERROR`` its
binomial standard error.

``diagnostics`` — one row per group: ``DIAG_GROUP, SPELLS, DEATHS, N_CELLS,
N_PARAMS, ITERATIONS, CONVERGED, RULE, DETAIL, SECONDS`` (+ the columns of
``groups_meta``, e.g. a group label, when given).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark import StorageLevel
# imported here, never inside the fitting threads: a first import of pyspark.ml from
# several threads at once races on its partially initialised modules
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.regression import GeneralizedLinearRegression
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from shmi_spark.model.cells import COVARIATES, level_expr
from shmi_spark.config import ModelConfig
from shmi_spark.model.batches import (Batch, batch_design, fit_batch, group_estimates, kept_cells, kept_level_spells,
                            make_batch, pack_batches)

log = logging.getLogger(__name__)

TERMS = list(COVARIATES)
INTERCEPT = "INTERCEPT"
CRUDE_RATE = "CRUDE_RATE"
NA_LEVEL = "n/a"
PERINATAL_TERM = "BIRWEIT_BAND"

# A standard error this large (log-odds) means a numerically singular information
# matrix: a level holding one or two spells has a standard error of about 1-2.
MAX_STD_ERROR = 1e3

COEF_COLUMNS = ["DIAG_GROUP", "TERM", "LEVEL", "ESTIMATE", "STD_ERROR", "REFERENCE"]
DIAG_COLUMNS = ["DIAG_GROUP", "SPELLS", "DEATHS", "N_CELLS", "N_PARAMS", "ITERATIONS",
                "CONVERGED", "BATCH", "RULE", "DETAIL", "SECONDS"]


_LEADING_NUMBER = re.compile(r"^([<>]?)(\d+(?:\.\d+)?)")


def level_sort_key(level: str):
    """Natural order of levels: by leading number (``<1`` < ``1-4`` < ``5-9`` … < ``90+``,
    ``0`` < ``1-5`` < ``>5``), then the rest (``n/a``, ``unknown``) alphabetically.

    >>> sorted(["90+", "unknown", "5-9", "<1", "1-4", "10"], key=level_sort_key)
    ['<1', '1-4', '5-9', '10', '90+', 'unknown']
    """
    text = str(level)
    m = _LEADING_NUMBER.match(text)
    if m is None:
        return (1, 0.0, text)
    shift = {"<": -0.5, ">": 0.5, "": 0.0}[m.group(1)]
    return (0, float(m.group(2)) + shift, text)


@dataclass
class GroupModels:
    """The fitted models: pandas ``coefficients`` and ``diagnostics`` (see module doc)."""

    coefficients: pd.DataFrame
    diagnostics: pd.DataFrame


@dataclass
class _Design:
    group: int
    spells: int
    deaths: int
    n_cells: int
    # term -> list of (level, spells, deaths) in natural order
    levels: dict[str, list[tuple[str, int, int]]] = field(default_factory=dict)
    reference: dict[str, str] = field(default_factory=dict)
    features: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    separated: list[str] = field(default_factory=list)
    # (term, level) -> fixed log-odds contrast for separated levels (extended MLE)
    fixed: dict[tuple[str, str], float] = field(default_factory=dict)
    unresolved: bool = False
    # levels emptied by the separated cells already looked for (and dropped)
    emptied_checked: bool = False
    # cells left for the fit once separated levels' cells are set aside (None: all)
    kept_cells: int | None = None

    @property
    def rank_deficient(self) -> bool:
        """Fewer cells than parameters: the design cannot have full rank."""
        cells = self.n_cells if self.kept_cells is None else self.kept_cells
        return cells < 1 + len(self.features)


def _designs(meta: pd.DataFrame, all_levels: dict[str, list[str]],
             separation_logit: float = 0.0) -> list[_Design]:
    """Per-group encoding from the (group, term, level) spell/death counts."""
    designs = []
    for group, gm in meta.groupby("DIAG_GROUP", sort=True):
        first = gm[gm["TERM"] == TERMS[0]]
        d = _Design(group=int(group), spells=int(first["SPELLS"].sum()),
                    deaths=int(first["DEATHS"].sum()), n_cells=int(first["N_CELLS"].sum()))
        single, absent = [], []
        for term in TERMS:
            tm = gm[gm["TERM"] == term]
            rows = sorted(((str(r.LEVEL), int(r.SPELLS), int(r.DEATHS)) for r in tm.itertuples()),
                          key=lambda x: level_sort_key(x[0]))
            if term == PERINATAL_TERM and all(lv == NA_LEVEL for lv, _, _ in rows):
                continue
            d.levels[term] = rows
            present = {lv for lv, _, _ in rows}
            missing = [lv for lv in all_levels.get(term, []) if lv not in present
                       and not (term == PERINATAL_TERM and lv == NA_LEVEL)]
            if missing:
                absent.append(f"{term}{{{','.join(missing)}}}")
            if len(rows) == 1:
                d.reference[term] = rows[0][0]
                single.append(f"{term}={rows[0][0]}")
                continue
            # a level where nobody (or everybody) died: quasi-complete separation
            separated = [(lv, s, dth) for lv, s, dth in rows if dth == 0 or dth == s]
            fitted = [r for r in rows if r not in separated] if separation_logit else rows
            for lv, s, dth in separated:
                d.separated.append(f"{term}={lv} ({dth}/{s} died)")
                if separation_logit:
                    d.fixed[(term, lv)] = -separation_logit if dth == 0 else separation_logit
            if not fitted:
                d.unresolved = True
                fitted = rows
            # most populous level; ties -> first in natural order (rows are sorted)
            ref = max(fitted, key=lambda x: x[1])[0]
            d.reference[term] = ref
            for lv, _, _ in fitted:
                if lv != ref and (term, lv) not in d.fixed:
                    d.features.append((term, lv))
        if absent:
            d.notes.append("levels absent, dropped: " + " ".join(absent))
        if single:
            d.notes.append("single-level terms, no parameter: " + " ".join(single))
        designs.append(d)
    return designs


def _group_meta(cached: DataFrame) -> pd.DataFrame:
    """(DIAG_GROUP, TERM, LEVEL) → SPELLS, DEATHS, N_CELLS, one small Spark job."""
    pairs = F.array(*[F.struct(F.lit(t).alias("TERM"), level_expr(t).alias("LEVEL")) for t in TERMS])
    exploded = cached.select("DIAG_GROUP", F.explode(pairs).alias("TL"), "SPELLS", "DEATHS")
    meta = (exploded.groupBy("DIAG_GROUP", F.col("TL.TERM").alias("TERM"), F.col("TL.LEVEL").alias("LEVEL"))
            .agg(F.sum("SPELLS").cast("long").alias("SPELLS"),
                 F.sum("DEATHS").cast("long").alias("DEATHS"),
                 F.count(F.lit(1)).cast("long").alias("N_CELLS")))
    return meta.toPandas()


def _crude(d: _Design, rule_detail: list[str], seconds: float = 0.0):
    rate = d.deaths / d.spells
    se = math.sqrt(rate * (1 - rate) / d.spells)
    coefs = [dict(DIAG_GROUP=d.group, TERM=CRUDE_RATE, LEVEL="", ESTIMATE=rate, STD_ERROR=se,
                  REFERENCE=False)]
    diag = dict(DIAG_GROUP=d.group, SPELLS=d.spells, DEATHS=d.deaths, N_CELLS=d.n_cells,
                N_PARAMS=1, ITERATIONS=0, CONVERGED=True, BATCH=None, RULE="crude_rate",
                DETAIL="; ".join(rule_detail + d.notes), SECONDS=seconds)
    return coefs, diag


def _coef_rows(d: _Design, intercept: float, intercept_se, betas, ses) -> list[dict]:
    rows = [dict(DIAG_GROUP=d.group, TERM=INTERCEPT, LEVEL="", ESTIMATE=float(intercept),
                 STD_ERROR=None if intercept_se is None else float(intercept_se), REFERENCE=False)]
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
                rows.append(dict(DIAG_GROUP=d.group, TERM=term, LEVEL=lv, ESTIMATE=float(betas[i]),
                                 STD_ERROR=None if ses is None else float(ses[i]), REFERENCE=False))
    return rows


def _group_data(cached: DataFrame, d: _Design) -> DataFrame:
    """One group's cells as (features, label = DEATHS/SPELLS, weight = SPELLS), one partition."""
    names = [f"x{i}" for i in range(len(d.features))]
    indicators = [F.when(level_expr(t) == F.lit(lv), F.lit(1.0)).otherwise(F.lit(0.0)).alias(n)
                  for (t, lv), n in zip(d.features, names)]
    data = (_fit_cells(cached, d).coalesce(1)
            .select(*indicators,
                    (F.col("DEATHS") / F.col("SPELLS")).alias("label"),
                    F.col("SPELLS").cast("double").alias("weight")))
    return VectorAssembler(inputCols=names, outputCol="features").transform(data) \
        .select("features", "label", "weight")


def _glr_fit(data: DataFrame, d: _Design, config: ModelConfig, reg_param: float):
    """Fit one group's weighted cells with Spark's IRLS; returns (intercept, betas, ses|None, iterations)."""
    glr = GeneralizedLinearRegression(family="binomial", link="logit", solver="irls",
                                      labelCol="label", weightCol="weight", featuresCol="features",
                                      fitIntercept=True, maxIter=config.max_iter, tol=config.tol,
                                      regParam=reg_param)
    model = glr.fit(data)
    betas = np.asarray(model.coefficients.toArray(), dtype=float)
    intercept = float(model.intercept)
    iterations = int(model.summary.numIterations)
    ses = None
    if reg_param == 0.0:
        try:
            ses = np.asarray(model.summary.coefficientStandardErrors, dtype=float)
        except Exception as exc:  # noqa: BLE001 - Spark gives none when the normal equations are singular
            log.info("group %s: no standard errors (%s)", d.group, exc)
            ses = None
    return intercept, betas, ses, iterations


def _without_fixed(d: _Design) -> _Design:
    """The same group with every level estimated (for a penalised refit): no fixed levels."""
    features, reference = [], {}
    for term, rows in d.levels.items():
        ref = max(rows, key=lambda x: x[1])[0]
        reference[term] = ref
        if len(rows) > 1:
            features += [(term, lv) for lv, _, _ in rows if lv != ref]
    return dataclasses.replace(d, features=features, reference=reference, fixed={})


def _fit_cells(cached: DataFrame, d: _Design) -> DataFrame:
    """The group's cells that enter its fit: none with a separated (fixed) level."""
    return kept_cells(cached.sparkSession, cached, [d])


def _drop_emptied(spark: SparkSession, cached: DataFrame, designs: list[_Design]) -> list[_Design]:
    """:func:`_drop_emptied_levels` for many groups at once: one small Spark job."""
    with_fixed = [d for d in designs if d.fixed and d.features]
    if not with_fixed:
        return designs
    kept = kept_level_spells(spark, cached, with_fixed)
    spells = {(int(r.DIAG_GROUP), r.TERM, r.LEVEL): int(r.SPELLS) for r in kept.itertuples()}
    # every cell has one level of the first term: its counts add up to the group's kept cells
    first = kept[kept["TERM"] == TERMS[0]].groupby("DIAG_GROUP")["N_CELLS"].sum()
    out = []
    for d in designs:
        if d.fixed and d.features:
            d = _without_levels(d, [f for f in d.features if not spells.get((d.group, *f))])
            d = dataclasses.replace(d, kept_cells=int(first.get(d.group, 0)))
        out.append(d)
    return out


def _without_levels(d: _Design, emptied: list[tuple[str, str]]) -> _Design:
    if not emptied:
        return d
    notes = d.notes + ["no spells left once separated cells are set aside, no parameter: "
                       + " ".join(f"{t}={lv}" for t, lv in emptied)]
    return dataclasses.replace(d, features=[f for f in d.features if f not in emptied], notes=notes,
                               emptied_checked=True)


def _drop_emptied_levels(cached: DataFrame, d: _Design) -> _Design:
    """Levels whose every spell sat in a separated level's cells have no data left: no parameter.

    One small aggregation; their coefficient is reported as 0, like a reference level.
    """
    if not d.fixed or not d.features or d.emptied_checked:
        return d
    sums = _fit_cells(cached, d).agg(*[
        F.sum(F.when(level_expr(t) == F.lit(lv), F.col("SPELLS")).otherwise(F.lit(0))).alias(f"x{i}")
        for i, (t, lv) in enumerate(d.features)]).first()
    return _without_levels(d, [f for f, v in zip(d.features, sums) if not v])


def _fit_one(spark: SparkSession, cached: DataFrame, d: _Design, config: ModelConfig):
    """Fit one group following the rules of the module doc; returns (coef rows, diagnostics row)."""
    t0 = time.perf_counter()
    if not _needs_fit(d, config):
        return _fit_rules(None, d, config, t0)
    sc = spark.sparkContext
    sc.setLocalProperty("spark.scheduler.pool", config.scheduler_pool)
    sc.setJobDescription(f"SHMI risk model, diagnosis group {d.group}")
    d = _drop_emptied_levels(cached, d)
    # the group's rows, persisted: IRLS makes one pass per iteration (and a ridge refit more)
    data = _group_data(cached, d).persist(StorageLevel.MEMORY_AND_DISK) if d.features else None
    try:
        return _fit_rules(data, d, config, t0, cached)
    finally:
        if data is not None:
            data.unpersist()
        sc.setJobDescription(None)


def _diag(d: _Design, n_params: int, iterations: int, converged: bool, rule: str,
          detail: list[str], seconds: float, batch: str | None = None) -> dict:
    return dict(DIAG_GROUP=d.group, SPELLS=d.spells, DEATHS=d.deaths, N_CELLS=d.n_cells,
                N_PARAMS=n_params, ITERATIONS=iterations, CONVERGED=converged, BATCH=batch, RULE=rule,
                DETAIL="; ".join(detail + d.notes), SECONDS=seconds)


def _needs_fit(d: _Design, config: ModelConfig) -> bool:
    """True when the group's model takes a Spark fit (not the crude rate, not closed form)."""
    if d.deaths == 0 or d.deaths < config.min_deaths or d.deaths >= d.spells:
        return False
    return bool(d.features or d.fixed)


def _tries_mle(d: _Design) -> bool:
    """True when the rules start with an unpenalised fit (no unresolved separation)."""
    return not d.separated or (bool(d.fixed) and not d.unresolved)


def _mle_problems(d: _Design, config: ModelConfig, b0: float, b: np.ndarray, ses, it: int) -> list[str]:
    """Why an unpenalised fit is not accepted as the MLE (empty: it is)."""
    bad = []
    if it >= config.max_iter:
        bad.append(f"not converged in {it} iterations")
    if not (np.isfinite(b0) and np.all(np.isfinite(b))):
        bad.append("non-finite coefficients")
    else:
        values = np.concatenate([[b0], b])
        worst = int(np.argmax(np.abs(values)))
        if abs(values[worst]) > config.max_abs_coef:
            name = INTERCEPT if worst == 0 else "=".join(d.features[worst - 1])
            bad.append(f"|coefficient| > {config.max_abs_coef:g} ({name}: {values[worst]:.3g})")
    if ses is None or not np.all(np.isfinite(ses)):
        bad.append("singular design (no standard errors)")
    elif np.max(ses) > MAX_STD_ERROR:
        bad.append(f"singular design (standard error {np.max(ses):.3g} > {MAX_STD_ERROR:g})")
    elif d.rank_deficient:
        bad.append(f"singular design ({len(d.features) + 1} parameters, fewer cells)")
    return bad


def _mle_result(d: _Design, config: ModelConfig, b0, se0, b, ses, it: int, seconds: float,
                batch: str | None = None):
    """Coefficient rows and diagnostics of an accepted unpenalised fit."""
    coefs = _coef_rows(d, b0, se0, b, ses)
    if d.fixed:
        note = [f"separation: {', '.join(d.separated)}; those levels fixed at "
                f"±{config.separation_logit:g} on the log-odds, the rest fitted without their cells"]
        return coefs, _diag(d, len(b) + 1, it, True, "mle_extended", note, seconds, batch)
    return coefs, _diag(d, len(b) + 1, it, True, "mle", [], seconds, batch)


def _fit_rules(data: DataFrame | None, d: _Design, config: ModelConfig, t0: float,
               data_source: DataFrame | None = None):
    if d.deaths == 0:
        return _crude(d, ["no deaths"], time.perf_counter() - t0)
    if d.deaths < config.min_deaths:
        return _crude(d, [f"{d.deaths} deaths < min_deaths {config.min_deaths}"],
                      time.perf_counter() - t0)
    if d.deaths >= d.spells:
        return _crude(d, ["no survivors"], time.perf_counter() - t0)
    if not d.features and not d.fixed:
        rate = d.deaths / d.spells
        coefs = _coef_rows(d, math.log(rate / (1 - rate)),
                           math.sqrt(1 / d.deaths + 1 / (d.spells - d.deaths)), [], [])
        return coefs, _diag(d, 1, 0, True, "mle", ["no covariate varies: intercept-only, closed form"],
                            time.perf_counter() - t0)

    problems: list[str] = []
    if not _tries_mle(d):
        problems.append("separation: " + ", ".join(d.separated))
    else:
        try:
            b0, b, se, it = _glr_fit(data, d, config, 0.0)
            bad = _mle_problems(d, config, b0, b, se, it)
            if not bad:
                return _mle_result(d, config, b0, se[-1], b, se[:-1], it, time.perf_counter() - t0)
            if d.fixed:
                bad.insert(0, "separation: " + ", ".join(d.separated))
            problems.extend(bad)
        except Exception as exc:  # noqa: BLE001 - any solver failure makes the group degenerate
            problems.append(f"unpenalised fit failed: {type(exc).__name__}: {str(exc)[:200]}")

    if config.degenerate_rule == "crude":
        return _crude(d, problems + ["degenerate_rule=crude"], time.perf_counter() - t0)
    if d.fixed:  # the ridge refit estimates every level, separated ones included
        d = _without_fixed(d)
        data = _group_data(data_source, d)
    try:
        b0, b, _, it = _glr_fit(data, d, config, float(config.ridge_penalty))
        if not (np.isfinite(b0) and np.all(np.isfinite(b))):
            raise FloatingPointError("non-finite ridge coefficients")
    except Exception as exc:  # noqa: BLE001 - last resort: the crude rate, with the reason
        log.warning("group %s: ridge fit failed (%s); using the crude rate", d.group, exc)
        return _crude(d, problems + [f"ridge fit failed: {type(exc).__name__}: {str(exc)[:200]}"],
                      time.perf_counter() - t0)
    coefs = _coef_rows(d, b0, None, b, None)
    converged = it < config.max_iter
    return coefs, _diag(d, len(b) + 1, it, converged, "ridge",
                        problems + [f"ridge_penalty={config.ridge_penalty:g}"], time.perf_counter() - t0)


def _fit_batch(spark: SparkSession, cached: DataFrame, design: DataFrame, batch: Batch,
               designs: dict[int, _Design], config: ModelConfig) -> list:
    """Fit one batch and accept each group's estimates that pass the MLE checks.

    A group that fails them is fitted alone (all the rules of the module doc).
    When the batch does not converge, the groups with bad-looking estimates
    (too large, non-finite) are taken out and the rest refitted as a batch; when
    it fails without a culprit (an error, a singular design, or no convergence
    with no bad-looking group), it is split in two halves, each refitted.
    """
    sc = spark.sparkContext
    sc.setLocalProperty("spark.scheduler.pool", config.scheduler_pool)
    sc.setJobDescription(f"SHMI risk models, batch {batch.label} "
                         f"(groups {batch.groups[0]}-{batch.groups[-1]})")
    try:
        fit = fit_batch(design, batch, max_iter=config.max_iter, tol=config.tol)
    except Exception as exc:  # noqa: BLE001 - the batch is split
        log.info("batch %s failed (%s); splitting it", batch.label, exc)
        fit = None
    finally:
        sc.setJobDescription(None)
    if fit is None or fit.standard_errors is None:
        half = (len(batch.groups) + 1) // 2
        return _refit(spark, cached, batch, [batch.groups[:half], batch.groups[half:]], designs, config)
    converged = fit.iterations < config.max_iter
    results, good, bad = [], [], []
    for g in batch.groups:
        d = designs[g]
        b0, se0, b, ses = group_estimates(fit, batch, d)
        # convergence is the batch's: judged below, not per group
        if _mle_problems(d, config, b0, b, np.concatenate([ses, [se0]]), 0):
            bad.append(g)
        elif converged:
            results.append(_mle_result(d, config, b0, se0, b, ses, fit.iterations, fit.seconds,
                                       batch.label))
        else:
            good.append(g)
    results += [_fit_one(spark, cached, designs[g], config) for g in bad]
    if good:  # not converged: refit without the culprits, or in halves when there is none
        half = (len(good) + 1) // 2
        parts = [good] if bad else [good[:half], good[half:]]
        results += _refit(spark, cached, batch, parts, designs, config)
    return results


def _refit(spark: SparkSession, cached: DataFrame, parent: Batch, parts: list, designs: dict[int, _Design],
           config: ModelConfig) -> list:
    """Refit parts of a batch: as smaller batches (labelled ``<parent>.<i>``), or alone."""
    results = []
    for i, groups in enumerate(p for p in parts if p):
        if len(groups) == 1:
            results.append(_fit_one(spark, cached, designs[groups[0]], config))
            continue
        sub = make_batch(0, f"{parent.label}.{i + 1}", [designs[g] for g in groups])
        results += _fit_batch(spark, cached, batch_design(spark, cached, [sub], designs), sub,
                              designs, config)
    return results


def _empty() -> GroupModels:
    return GroupModels(coefficients=pd.DataFrame(columns=COEF_COLUMNS),
                       diagnostics=pd.DataFrame(columns=DIAG_COLUMNS))


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
        meta = _group_meta(cached)
        if meta.empty:
            return _empty()
        all_levels = {t: sorted(meta.loc[meta["TERM"] == t, "LEVEL"].astype(str).unique(),
                                key=level_sort_key) for t in TERMS}
        logit = config.separation_logit if config.degenerate_rule == "extended_mle" else 0.0
        designs = _designs(meta, all_levels, logit)
        fitted = [d for d in designs if _needs_fit(d, config) and _tries_mle(d)]
        fitted = _drop_emptied(spark, cached, fitted)
        by_group = {d.group: d for d in designs} | {d.group: d for d in fitted}
        # a rank-deficient group would make its whole batch singular: it is fitted alone
        batchable = [d for d in fitted if d.features and not d.rank_deficient]
        batches, _ = (pack_batches(batchable, config.batch_parameters)
                          if config.batch_parameters > 1 else ([], batchable))
        in_batch = {g for b in batches for g in b.groups}
        singles = [d for d in by_group.values() if d.group not in in_batch]
        # biggest first: the pool's tail is then made of quick fits
        singles.sort(key=lambda d: -d.n_cells)
        design = (batch_design(spark, cached, batches, by_group).orderBy("BATCH")
                  .persist(StorageLevel.MEMORY_AND_DISK)) if batches else None
        try:
            pool = ThreadPoolExecutor(max_workers=max(1, config.parallelism), thread_name_prefix="shmi-model")
            finished = False
            try:
                jobs = [pool.submit(_fit_batch, spark, cached, design, b, by_group, config) for b in batches]
                jobs += [pool.submit(lambda d: [_fit_one(spark, cached, d, config)], d) for d in singles]
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
    finally:
        cached.unpersist()

    coef_rows = [row for coefs, _ in results for row in coefs]
    diag_rows = [diag for _, diag in results]
    coefficients = pd.DataFrame(coef_rows, columns=COEF_COLUMNS)
    term_rank = {t: i for i, t in enumerate([INTERCEPT, CRUDE_RATE, *TERMS])}
    coefficients = (coefficients
                    .assign(_t=coefficients["TERM"].map(term_rank),
                            _l=coefficients["LEVEL"].map(level_sort_key))
                    .sort_values(["DIAG_GROUP", "_t", "_l"], kind="mergesort")
                    .drop(columns=["_t", "_l"]).reset_index(drop=True))
    coefficients = coefficients.astype({"DIAG_GROUP": "int64", "TERM": "string", "LEVEL": "string",
                                        "ESTIMATE": "float64", "STD_ERROR": "float64",
                                        "REFERENCE": "bool"})
    diagnostics = (pd.DataFrame(diag_rows, columns=DIAG_COLUMNS)
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


def write_models(models: GroupModels, path: str | Path) -> None:
    """Write ``coefficients.{parquet,csv}`` and ``diagnostics.{parquet,csv}`` under ``path``."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    for name, table in (("coefficients", models.coefficients), ("diagnostics", models.diagnostics)):
        table.to_parquet(out / f"{name}.parquet", index=False)
        table.to_csv(out / f"{name}.csv", index=False)
