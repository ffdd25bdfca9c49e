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
from shmi_spark.model.design import TERMS, Estimates, GroupDesign
from shmi_spark.model.irls import irls_fit
from shmi_spark.model.rules import GroupFit, fit_with_rules, rule_without_fit

__all__ = ["FIT_SCHEMA", "NUMPY_FIT_ERRORS", "spark_job", "fit_groups", "fit_group_frame", "emptied_levels"]

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
        self.levels = {t: {str(lv): i for i, lv in enumerate(levels[t])} for t in TERMS}
        self.spells = frame["SPELLS"].to_numpy(dtype=float)[order]
        self.deaths = frame["DEATHS"].to_numpy(dtype=float)[order]

    def has(self, term: str, level: str) -> np.ndarray:
        """True for the cells of ``level`` of ``term``."""
        code = self.levels[term].get(level)
        return self.codes[term] == code if code is not None else np.zeros(len(self.spells), dtype=bool)

    def fitted(self, d: GroupDesign) -> np.ndarray:
        """True for the cells that enter the design's fit: none of its fixed (separated) levels."""
        out = np.ones(len(self.spells), dtype=bool)
        for term, level in d.fixed:
            out &= ~self.has(term, level)
        return out


def emptied_levels(cells: _GroupCells, d: GroupDesign) -> GroupDesign:
    """The design without the features left with no spells once the fixed levels' cells are out.

    The one-group twin of :func:`shmi_spark.model.design.drop_emptied_levels`,
    also counting ``n_fit_cells``.
    """
    rows = cells.fitted(d)
    emptied = [(t, lv) for t, lv in d.features if not cells.spells[rows & cells.has(t, lv)].sum()]
    return dataclasses.replace(d.without_levels(emptied), n_fit_cells=int(rows.sum()))


def _numpy_fitter(cells: _GroupCells, config: ModelConfig):
    """A fitter (:data:`shmi_spark.model.rules.Fitter`) of one group's cells."""

    def fit(d: GroupDesign, reg_param: float, standard_errors: bool) -> tuple[Estimates, int]:
        rows = cells.fitted(d)
        x = np.column_stack([cells.has(t, lv)[rows] for t, lv in d.features]).astype(float) \
            if d.features else np.zeros((int(rows.sum()), 0))
        spells = cells.spells[rows]
        res = irls_fit(x, cells.deaths[rows] / spells, spells, reg_param=reg_param, max_iter=config.max_iter,
                       tol=config.tol)
        ses = res.standard_errors if standard_errors else None
        return Estimates(intercept=res.intercept, intercept_se=None if ses is None else float(ses[-1]),
                         betas=res.coefficients, ses=None if ses is None else ses[:-1]), res.iterations

    return fit


def fit_group_frame(frame: pd.DataFrame, d: GroupDesign, config: ModelConfig) -> GroupFit:
    """One group's model from its cells (levels as strings, ``SPELLS``, ``DEATHS``), by the rules."""
    t0 = time.perf_counter()
    cells = _GroupCells(frame)
    if d.fixed and d.features and d.n_fit_cells is None:
        d = emptied_levels(cells, d)
    return fit_with_rules(_numpy_fitter(cells, config), d, config, t0, NUMPY_FIT_ERRORS)


def _as_json(fit: GroupFit) -> str:
    return json.dumps({"coefficients": fit.coefficients, "diagnostics": fit.diagnostics})


def _from_json(text: str) -> GroupFit:
    obj = json.loads(text)
    return GroupFit(coefficients=obj["coefficients"], diagnostics=obj["diagnostics"])


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

    data = (cells.where(F.col("DIAG_GROUP").isin(sorted(to_fit)))
            .select(F.col("DIAG_GROUP").cast("int").alias("DIAG_GROUP"),
                    *[level_expr(t).alias(t) for t in TERMS],
                    F.col("SPELLS").cast("long").alias("SPELLS"), F.col("DEATHS").cast("long").alias("DEATHS")))
    with spark_job(spark, config, f"SHMI risk models: {len(to_fit)} groups fitted where their cells are"):
        rows = data.groupBy("DIAG_GROUP").applyInPandas(fit_one_group, schema=FIT_SCHEMA).collect()
    fitted = {int(r["DIAG_GROUP"]): _from_json(r["FIT"]) for r in rows}
    missing = sorted(set(to_fit) - set(fitted))
    if missing:
        raise RuntimeError(f"groups {missing} have a design but no cells to fit")
    return results + [fitted[g] for g in sorted(fitted)]
