"""Every diagnosis group's model in one Spark job: a grouped-map pandas UDF over ``DIAG_GROUP``.

METHOD.md §5.  A group's covariate cells are small (a few thousand rows, a
few dozen parameters), so fitting each group as Spark ML jobs — one job per
IRLS iteration — costs Spark's job overhead, not arithmetic.  Here the cells
of the groups that take a fit are grouped by ``DIAG_GROUP``
(``applyInPandas``: one shuffle, one task per group's partition, spread over
the executors), and each group is fitted where its cells are:

* its design (:class:`~shmi_spark.model.design.GroupDesign`, decided on the
  driver from the cells' counts) and the rules of
  :mod:`shmi_spark.model.rules` are the same as with Spark ML;
* its cells are examined for separation and aliasing there
  (:func:`limit_of`, :mod:`shmi_spark.model.separation`); the ``spark_ml``
  engine runs the same examination as a job of its own
  (:func:`examine_groups`);
* the fitter is :func:`shmi_spark.model.irls.irls_fit`, Spark ML's binomial
  IRLS step for step in numpy, so the estimates, standard errors and
  iteration counts are those of the group fitted alone with Spark ML, to
  rounding (tests/test_irls.py, tests/test_models.py: 1e-9);
* a group's cells are sorted by their levels before the fit, so its sums, and
  so its estimates to the last bit, do not depend on how Spark partitioned
  them (same numbers in local mode and on a cluster).

Groups that take no fit (crude rate, closed form) never leave the driver.
The UDF returns one row per group: ``DIAG_GROUP`` and its
:class:`~shmi_spark.model.rules.GroupFit` as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from shmi_spark.config import ModelConfig
from shmi_spark.model.cells import level_expr
from shmi_spark.model.design import (
    INTERCEPT,
    NUMERIC_TERMS,
    TERMS,
    Estimates,
    GroupDesign,
    Limit,
    cell_key,
    level_key,
)
from shmi_spark.model.firth import firth_fit
from shmi_spark.model.irls import irls_fit
from shmi_spark.model.rules import GroupFit, fit_with_rules, rule_without_fit
from shmi_spark.model.separation import SeparationError, aliased_columns, find_separation

__all__ = ["FIT_SCHEMA", "NUMPY_FIT_ERRORS", "spark_job", "limit_of", "examine_groups", "fit_groups",
           "fit_group_frame"]

# One row per fitted group, from the UDF.
FIT_SCHEMA = "DIAG_GROUP int, FIT string"

# What the numpy fit raises when it fails on the data: a singular or empty design.
NUMPY_FIT_ERRORS: tuple[type[Exception], ...] = (np.linalg.LinAlgError, FloatingPointError)


@contextmanager
def spark_job(spark: SparkSession, config: ModelConfig, description: str) -> Iterator[None]:
    """Run this thread's Spark jobs in the models' FAIR pool, under ``description``."""
    sc = spark.sparkContext
    sc.setLocalProperty("spark.scheduler.pool", config.scheduler_pool)
    sc.setJobDescription(description)
    try:
        yield
    finally:
        sc.setJobDescription(None)  # type: ignore[arg-type]  # None clears it


class _GroupCells:
    """One group's cells as arrays: each term's levels coded once, sorted by them (determinism)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        levels, codes = {}, []
        for term in TERMS:
            levels[term], inverse = np.unique(frame[term].to_numpy(dtype=object).astype(str), return_inverse=True)
            codes.append(inverse)
        # the cells in the order of their levels (np.unique sorts them): the sums do not depend on
        # the order Spark delivered the rows in
        order = np.lexsort(codes[::-1])
        self.codes = {t: c[order] for t, c in zip(TERMS, codes, strict=True)}
        self.names = {t: [str(lv) for lv in levels[t]] for t in TERMS}
        self.levels = {t: {lv: i for i, lv in enumerate(self.names[t])} for t in TERMS}
        # a numeric term's value in each cell (its level is the number; NaN where it is not one)
        self.values = {t: pd.to_numeric(frame[t].astype(str), errors="coerce").to_numpy(dtype=float)[order]
                       for t in TERMS if t in NUMERIC_TERMS}
        self.spells = frame["SPELLS"].to_numpy(dtype=float)[order]
        self.deaths = frame["DEATHS"].to_numpy(dtype=float)[order]
        # the separated cells limit_of found: their keys and their mask
        self.separated: tuple[frozenset[str], np.ndarray] | None = None

    def has(self, term: str, level: str) -> np.ndarray:
        """True for the cells of ``level`` of ``term``."""
        code = self.levels[term].get(level)
        return self.codes[term] == code if code is not None else np.zeros(len(self.spells), dtype=bool)

    def key(self, i: int) -> str:
        """The :func:`~shmi_spark.model.design.cell_key` of cell ``i``."""
        return cell_key([self.names[t][self.codes[t][i]] for t in TERMS])

    def column(self, term: str, level: str) -> np.ndarray:
        """Feature ``(term, level)`` in every cell: a numeric term's value, else the level's 0/1 indicator."""
        if term in NUMERIC_TERMS:
            return self.values[term]
        return self.has(term, level).astype(float)

    def features(self, features: list[tuple[str, str]], rows: np.ndarray | None = None) -> np.ndarray:
        """The design columns of ``features`` (no intercept), for ``rows`` or every cell (:func:`feature_value`)."""
        cols = [self.column(t, lv) if rows is None else self.column(t, lv)[rows] for t, lv in features]
        n = len(self.spells) if rows is None else int(rows.sum())
        return np.column_stack(cols).astype(float) if cols else np.zeros((n, 0))

    def fitted(self, d: GroupDesign) -> np.ndarray:
        """True for the cells that enter the design's fit: all but its ``excluded`` ones."""
        if not d.excluded:
            return np.ones(len(self.spells), dtype=bool)
        if self.separated is None or self.separated[0] != d.excluded:
            raise ValueError(f"group {d.group}: cells excluded that limit_of did not find separated")
        return ~self.separated[1]


def limit_of(cells: _GroupCells, d: GroupDesign) -> GroupDesign:
    """The design with its :class:`~shmi_spark.model.design.Limit`: separated cells, direction, aliasing.

    METHOD.md §5; :mod:`shmi_spark.model.separation`.
    """
    x = cells.features(d.features)
    try:
        sep = find_separation(x, cells.spells, cells.deaths)
        remaining = ~sep.cells
        aliased = tuple(d.features[j] for j in aliased_columns(x[remaining])) if remaining.any() \
            else tuple(d.features)
    except SeparationError as exc:  # numerical: the rules fall back (ridge or crude), saying why
        return dataclasses.replace(d, limit=Limit(failed=f"separation not examined: {exc}"))
    names = [INTERCEPT, *[level_key(t, lv) for t, lv in d.features]]
    separated = {cells.key(int(i)): float(sep.limits[i]) for i in np.flatnonzero(sep.cells)}
    cells.separated = (frozenset(separated), sep.cells)
    limit = Limit(cells=separated,
                  direction={names[j]: float(v) for j, v in enumerate(sep.direction) if v != 0.0},
                  aliased=aliased, spells=int(cells.spells[sep.cells].sum()),
                  deaths=int(cells.deaths[sep.cells].sum()))
    return dataclasses.replace(d, limit=limit)


def _numpy_fitter(cells: _GroupCells, config: ModelConfig):
    """A fitter (:data:`shmi_spark.model.rules.Fitter`) of one group's cells."""

    def fit(d: GroupDesign, reg_param: float, standard_errors: bool) -> tuple[Estimates, int]:
        rows = cells.fitted(d)
        spells = cells.spells[rows]
        res = irls_fit(cells.features(d.features, rows), cells.deaths[rows] / spells, spells, reg_param=reg_param,
                       max_iter=config.max_iter, tol=config.tol)
        ses = res.standard_errors if standard_errors else None
        return Estimates(intercept=res.intercept, intercept_se=None if ses is None else float(ses[-1]),
                         betas=res.coefficients, ses=None if ses is None else ses[:-1]), res.iterations

    return fit


def _firth_fitter(cells: _GroupCells, config: ModelConfig):
    """Firth's fit (:data:`shmi_spark.model.rules.FirthFitter`) of one group's cells, aliased columns dropped."""

    def fit(d: GroupDesign) -> tuple[Estimates, int, bool]:
        x = cells.features(d.features)
        aliased = set(aliased_columns(x))
        kept = [j for j in range(x.shape[1]) if j not in aliased]
        res = firth_fit(np.column_stack([np.ones(len(x)), x[:, kept]]), cells.spells, cells.deaths,
                        max_iter=config.max_iter, tol=config.tol)
        betas, ses = np.zeros(x.shape[1]), np.full(x.shape[1], np.nan)
        betas[kept], ses[kept] = res.coefficients[1:], res.standard_errors[1:]
        return (Estimates(intercept=float(res.coefficients[0]), intercept_se=float(res.standard_errors[0]),
                          betas=betas, ses=ses), res.iterations, res.converged)

    return fit


def fit_group_frame(frame: pd.DataFrame, d: GroupDesign, config: ModelConfig) -> GroupFit:
    """One group's model from its cells (levels as strings, ``SPELLS``, ``DEATHS``), by the rules."""
    t0 = time.perf_counter()
    cells = _GroupCells(frame)
    return fit_with_rules(_numpy_fitter(cells, config), limit_of(cells, d), config, t0, NUMPY_FIT_ERRORS,
                          firth=_firth_fitter(cells, config))


def _as_json(fit: GroupFit) -> str:
    return json.dumps({"coefficients": fit.coefficients, "diagnostics": fit.diagnostics, "separated": fit.separated})


def _from_json(text: str) -> GroupFit:
    obj = json.loads(text)
    return GroupFit(coefficients=obj["coefficients"], diagnostics=obj["diagnostics"], separated=obj["separated"])


def _group_cells(cells: DataFrame, groups) -> DataFrame:
    """The cells of ``groups``, levels as the coefficients table's strings, for the grouped UDFs."""
    return (cells.where(F.col("DIAG_GROUP").isin(sorted(groups)))
            .select(F.col("DIAG_GROUP").cast("int").alias("DIAG_GROUP"),
                    *[level_expr(t).alias(t) for t in TERMS],
                    F.col("SPELLS").cast("long").alias("SPELLS"), F.col("DEATHS").cast("long").alias("DEATHS")))


def examine_groups(spark: SparkSession, cells: DataFrame, designs: list[GroupDesign],
                   config: ModelConfig) -> list[GroupDesign]:
    """``designs`` with their :class:`~shmi_spark.model.design.Limit`, every group in one Spark job.

    For the ``spark_ml`` engine, which fits with Spark ML on the driver's
    command: each group's cells are examined where they are
    (:func:`limit_of`), as the grouped engine examines them before its fit.
    """
    if not designs:
        return []
    by_group = {d.group: d for d in designs}

    def examine(frame: pd.DataFrame) -> pd.DataFrame:
        group = int(frame["DIAG_GROUP"].iloc[0])
        limit = limit_of(_GroupCells(frame), by_group[group]).limit
        assert limit is not None
        return pd.DataFrame({"DIAG_GROUP": [group], "LIMIT": [json.dumps(limit.as_json())]})

    with spark_job(spark, config, f"SHMI risk models: {len(designs)} groups examined for separation"):
        rows = (_group_cells(cells, by_group).groupBy("DIAG_GROUP")
                .applyInPandas(examine, schema="DIAG_GROUP int, LIMIT string").collect())
    limits = {int(r["DIAG_GROUP"]): Limit.from_json(json.loads(r["LIMIT"])) for r in rows}
    missing = sorted(set(by_group) - set(limits))
    if missing:
        raise RuntimeError(f"groups {missing} have a design but no cells to examine")
    return [dataclasses.replace(d, limit=limits[d.group]) for d in designs]


def fit_groups(spark: SparkSession, cells: DataFrame, designs: list[GroupDesign],
               config: ModelConfig) -> list[GroupFit]:
    """Every group's :class:`GroupFit`: rules without a fit on the driver, the rest in one Spark job."""
    results: list[GroupFit] = []
    to_fit: dict[int, GroupDesign] = {}
    for d in designs:
        done = rule_without_fit(d, config, time.perf_counter())
        if done is None:
            to_fit[d.group] = d
        else:
            results.append(done)
    if not to_fit:
        return results

    def fit_one_group(frame: pd.DataFrame) -> pd.DataFrame:
        group = int(frame["DIAG_GROUP"].iloc[0])
        fit = fit_group_frame(frame, to_fit[group], config)
        return pd.DataFrame({"DIAG_GROUP": [group], "FIT": [_as_json(fit)]})

    data = _group_cells(cells, to_fit)
    with spark_job(spark, config, f"SHMI risk models: {len(to_fit)} groups fitted where their cells are"):
        rows = data.groupBy("DIAG_GROUP").applyInPandas(fit_one_group, schema=FIT_SCHEMA).collect()
    fitted = {int(r["DIAG_GROUP"]): _from_json(r["FIT"]) for r in rows}
    missing = sorted(set(to_fit) - set(fitted))
    if missing:
        raise RuntimeError(f"groups {missing} have a design but no cells to fit")
    return results + [fitted[g] for g in sorted(fitted)]
