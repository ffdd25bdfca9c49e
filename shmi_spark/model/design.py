"""One diagnosis group's model encoding: :class:`GroupDesign` (METHOD.md §5).

A group's design says which parameters its logistic regression has, read from
the spell and death counts per (group, term, level) of the covariate cells
(:func:`group_level_counts`, one small Spark job for all groups), before any fit:

* a term's levels are those with spells in the group (levels absent from the
  group are dropped, and listed in the notes); a null covariate is the level
  ``unknown`` (:func:`shmi_spark.model.cells.level_expr`);
* the **reference level** of a term is its most populous level in the group
  (most spells; ties go to the first level in natural order,
  :func:`level_sort_key`: by leading number, so ``<1, 1-4, …, 90+``, then
  ``n/a``, ``unknown``); every other level is a feature (a 0/1 indicator);
* a term with one level in the group has no parameter (its level is reported
  as the reference);
* a term whose only level in the group is ``n/a`` has no parameter and no
  note: ``BIRWEIT_BAND`` outside the perinatal groups, and the terms an
  indicator does not use (:mod:`shmi_spark.model.cells`);
* a numeric term (:data:`shmi_spark.model.cells.NUMERIC_TERMS`: the HSMR's
  Charlson score) with two values or more in the group has one feature, its
  slope, named ``(term, PER_UNIT)``: the feature's value in a cell is the
  cell's number (:func:`feature_value`), not 0/1; with one value it has no
  parameter, as a single-level term;
* whether the data separate is not decided from the counts: it takes the
  group's cells (:mod:`shmi_spark.model.separation`).  Once they are examined
  the design carries its :class:`Limit` — the separated cells (by
  :func:`cell_key`), a direction that separates them, and the features aliased
  among the remaining cells — and :meth:`GroupDesign.mle_form` is the design
  of the maximum-likelihood fit; :func:`fit_cells` is the one definition of
  the cells that enter a fit, used by the single-group fit and by the batches.

Used by :mod:`shmi_spark.model.batches` and :mod:`shmi_spark.model.fit`;
:data:`TERMS`, :data:`INTERCEPT` and :data:`CRUDE_RATE` name the terms of the
coefficients table, which :mod:`shmi_spark.model.scoring` reads.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from shmi_spark.model.cells import COVARIATES, NA_LEVEL, NUMERIC_TERMS, level_expr

__all__ = [
    "TERMS", "INTERCEPT", "CRUDE_RATE", "NA_LEVEL", "PERINATAL_TERM", "NUMERIC_TERMS", "PER_UNIT",
    "feature_value", "feature_value_expr", "numeric_value_expr",
    "GroupDesign", "Estimates", "level_sort_key", "level_key", "split_level_key", "level_key_expr",
    "group_level_counts", "group_designs", "cell_key", "cell_levels", "cell_key_expr", "fit_cells", "Limit",
]

# The model terms, in the order of the cells table and of the coefficients table.
TERMS = list(COVARIATES)
# ``TERM`` of a model's intercept row, and of a crude-rate group's single row.
INTERCEPT = "INTERCEPT"
CRUDE_RATE = "CRUDE_RATE"
PERINATAL_TERM = "BIRWEIT_BAND"
# ``LEVEL`` of a numeric term's one feature, its slope (the coefficient per unit of the term).
PER_UNIT = "per unit"

_LEADING_NUMBER = re.compile(r"^([<>]?)(\d+(?:\.\d+)?)")
# separates term and level in a level key, and the levels in a cell key (characters no level contains)
_KEY_SEPARATOR = "\u0001"
_CELL_SEPARATOR = "\u0002"


def level_sort_key(level: object) -> tuple[int, float, str]:
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


def level_key(term: str, level: str) -> str:
    """The key of a (term, level) pair in the per-group maps of Spark tables."""
    return f"{term}{_KEY_SEPARATOR}{level}"


def split_level_key(key: str) -> tuple[str, str]:
    """(term, level) of a :func:`level_key`."""
    term, level = key.split(_KEY_SEPARATOR, 1)
    return term, level


def level_key_expr(term: str) -> Column:
    """:func:`level_key` of a cell's level of ``term``, as a Column."""
    return F.concat(F.lit(term + _KEY_SEPARATOR), level_expr(term))


@dataclass(frozen=True)
class Limit:
    """Where a group's data separate (:mod:`shmi_spark.model.separation`), found from its cells.

    ``cells``: the cell key (:func:`cell_key`) of each separated cell → its
    limit probability (0.0 nobody died, 1.0 everybody did); ``direction``:
    the nonzero components of a direction that separates them, by parameter
    key (:data:`INTERCEPT` or :func:`level_key`); ``aliased``: the features
    that are combinations of earlier ones among the remaining cells (no
    parameter in their fit); ``spells`` and ``deaths`` of the separated cells;
    ``failed``: why the cells could not be examined (a numerical failure), or "".
    """

    cells: dict[str, float] = field(default_factory=dict)
    direction: dict[str, float] = field(default_factory=dict)
    aliased: tuple[tuple[str, str], ...] = ()
    spells: int = 0
    deaths: int = 0
    # the numerical failure that kept the cells from being examined ("" when they were)
    failed: str = ""

    def as_json(self) -> dict:
        return {"cells": self.cells, "direction": self.direction, "aliased": [list(a) for a in self.aliased],
                "spells": self.spells, "deaths": self.deaths, "failed": self.failed}

    @classmethod
    def from_json(cls, obj: dict) -> Limit:
        return cls(cells={str(k): float(v) for k, v in obj["cells"].items()},
                   direction={str(k): float(v) for k, v in obj["direction"].items()},
                   aliased=tuple((str(t), str(lv)) for t, lv in obj["aliased"]),
                   spells=int(obj["spells"]), deaths=int(obj["deaths"]), failed=str(obj["failed"]))


@dataclass
class GroupDesign:
    """One group's encoding: its levels, references and features, and where its data separate.

    ``features`` are the (term, level) pairs that get a parameter, in the order
    of the group's coefficient vector after the intercept.  ``limit`` is set
    once the group's cells have been examined (:func:`shmi_spark.model.grouped.limit_of`);
    :meth:`mle_form` is then the design the maximum-likelihood fit takes.
    """

    group: int
    spells: int
    deaths: int
    n_cells: int
    # term -> list of (level, spells, deaths) in natural order
    levels: dict[str, list[tuple[str, int, int]]] = field(default_factory=dict)
    reference: dict[str, str] = field(default_factory=dict)
    features: list[tuple[str, str]] = field(default_factory=list)
    # what the diagnostics' DETAIL says about the encoding
    notes: list[str] = field(default_factory=list)
    # levels where nobody or everybody died: "TERM=LEVEL (deaths/spells died)" (a sign, not the rule)
    separated: list[str] = field(default_factory=list)
    limit: Limit | None = None
    # cell keys left out of this design's fit (the separated cells, in :meth:`mle_form`)
    excluded: frozenset[str] = frozenset()

    @property
    def n_params(self) -> int:
        """Parameters of the group's fit: the intercept and one per feature."""
        return 1 + len(self.features)

    @property
    def rank_deficient(self) -> bool:
        """Fewer cells than parameters: the design cannot have full rank."""
        return self.n_cells - len(self.excluded) < self.n_params

    @property
    def degenerate(self) -> bool:
        """The data separate, or a feature is aliased: the plain MLE does not exist."""
        return self.limit is not None and bool(self.limit.cells or self.limit.aliased or self.limit.failed)

    def mle_form(self) -> GroupDesign:
        """The design of the maximum-likelihood fit: without the separated cells and the aliased features."""
        if self.limit is None:
            raise ValueError(f"group {self.group}: its cells have not been examined for separation")
        aliased = set(self.limit.aliased)
        return dataclasses.replace(self, features=[f for f in self.features if f not in aliased],
                                   excluded=frozenset(self.limit.cells))


@dataclass(frozen=True)
class Estimates:
    """A group's fitted parameters: the intercept, then ``betas`` in ``GroupDesign.features`` order.

    Standard errors are None when the fit gives none (a penalised fit, or
    singular normal equations).
    """

    intercept: float
    intercept_se: float | None
    betas: np.ndarray
    ses: np.ndarray | None

    @property
    def all_standard_errors(self) -> np.ndarray | None:
        """Every parameter's standard error (the features', then the intercept's), or None."""
        if self.ses is None or self.intercept_se is None:
            return None
        return np.concatenate([self.ses, [self.intercept_se]])


def feature_value(term: str, level: str, cell_level: str) -> float:
    """The value of feature ``(term, level)`` in a cell whose level of ``term`` is ``cell_level``.

    A numeric term's slope takes the cell's number; a level's indicator is 1 in its own cells, 0 elsewhere.

    >>> feature_value("AGE_BAND", "90+", "90+"), feature_value("CHARLSON_INDEX", PER_UNIT, "7")
    (1.0, 7.0)
    """
    if term in NUMERIC_TERMS:
        return float(cell_level)
    return 1.0 if cell_level == level else 0.0


def numeric_value_expr(term: str) -> Column:
    """A numeric term's value in a row (double; null where the level is not a number)."""
    return F.col(term).cast("string").try_cast("double")


def feature_value_expr(term: str, level: str) -> Column:
    """:func:`feature_value` of a cells-table row, as a Column."""
    if term in NUMERIC_TERMS:
        return numeric_value_expr(term)
    return F.when(level_expr(term) == F.lit(level), F.lit(1.0)).otherwise(F.lit(0.0))


def _numeric_rows(group: int, term: str, rows: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """A numeric term's values in a group, checked to be numbers (a level that is not is a programming error)."""
    for lv, _, _ in rows:
        try:
            float(lv)
        except ValueError:
            raise ValueError(f"group {group}: {term} is numeric but has the level {lv!r}") from None
    return rows


def _term_level_pairs() -> Column:
    """An array of (TERM, LEVEL) structs, one per term: a cell's level of every term."""
    return F.array(*[F.struct(F.lit(t).alias("TERM"), level_expr(t).alias("LEVEL")) for t in TERMS])


def group_level_counts(cells: DataFrame) -> pd.DataFrame:
    """(DIAG_GROUP, TERM, LEVEL) → SPELLS, DEATHS, N_CELLS of the cells, one small Spark job (pandas)."""
    exploded = cells.select("DIAG_GROUP", F.explode(_term_level_pairs()).alias("TERM_LEVEL"), "SPELLS", "DEATHS")
    counts = (exploded.groupBy("DIAG_GROUP", F.col("TERM_LEVEL.TERM").alias("TERM"),
                               F.col("TERM_LEVEL.LEVEL").alias("LEVEL"))
              .agg(F.sum("SPELLS").cast("long").alias("SPELLS"),
                   F.sum("DEATHS").cast("long").alias("DEATHS"),
                   F.count(F.lit(1)).cast("long").alias("N_CELLS")))
    return counts.toPandas()


def group_designs(level_counts: pd.DataFrame) -> list[GroupDesign]:
    """Every group's design from :func:`group_level_counts`, in group order (no ``limit`` yet)."""
    all_levels = {t: sorted(level_counts.loc[level_counts["TERM"] == t, "LEVEL"].astype(str).unique(),
                            key=level_sort_key) for t in TERMS}
    # (group, term) -> [(level, spells, deaths, cells)], one pass over the counts
    by_term: dict[tuple[int, str], list[tuple[str, int, int, int]]] = {}
    for g, t, lv, n, dth, c in level_counts[["DIAG_GROUP", "TERM", "LEVEL", "SPELLS", "DEATHS",
                                             "N_CELLS"]].itertuples(index=False):
        by_term.setdefault((int(g), str(t)), []).append((str(lv), int(n), int(dth), int(c)))
    designs = []
    for group in sorted({g for g, _ in by_term}):
        first = by_term.get((group, TERMS[0]), [])
        d = GroupDesign(group=group, spells=sum(r[1] for r in first), deaths=sum(r[2] for r in first),
                        n_cells=sum(r[3] for r in first))
        single, absent = [], []
        for term in TERMS:
            rows = sorted(((lv, n, dth) for lv, n, dth, _ in by_term.get((group, term), [])),
                          key=lambda x: level_sort_key(x[0]))
            if all(lv == NA_LEVEL for lv, _, _ in rows):  # a term this group's indicator does not use
                continue
            if term in NUMERIC_TERMS:
                rows = _numeric_rows(group, term, rows)
                if len(rows) == 1:
                    d.levels[term] = rows
                    d.reference[term] = rows[0][0]
                    single.append(f"{term}={rows[0][0]}")
                else:  # one slope: its coefficient row stands for every value
                    d.levels[term] = [(PER_UNIT, sum(r[1] for r in rows), sum(r[2] for r in rows))]
                    d.features.append((term, PER_UNIT))
                continue
            d.levels[term] = rows
            present = {lv for lv, _, _ in rows}
            missing = [lv for lv in all_levels.get(term, []) if lv not in present and lv != NA_LEVEL]
            if missing:
                absent.append(f"{term}{{{','.join(missing)}}}")
            if len(rows) == 1:
                d.reference[term] = rows[0][0]
                single.append(f"{term}={rows[0][0]}")
                continue
            d.separated += [f"{term}={lv} ({dth}/{s} died)" for lv, s, dth in rows if dth == 0 or dth == s]
            # most populous level; ties -> first in natural order (rows are sorted)
            ref = max(rows, key=lambda x: x[1])[0]
            d.reference[term] = ref
            d.features += [(term, lv) for lv, _, _ in rows if lv != ref]
        if absent:
            d.notes.append("levels absent, dropped: " + " ".join(absent))
        if single:
            d.notes.append("single-level terms, no parameter: " + " ".join(single))
        designs.append(d)
    return designs


def cell_key(levels: list[str]) -> str:
    """A cell's key: its level of every term of :data:`TERMS`, in order (:func:`cell_key_expr`)."""
    return _CELL_SEPARATOR.join(levels)


def cell_levels(key: str) -> dict[str, str]:
    """The levels of a :func:`cell_key`, by term."""
    return dict(zip(TERMS, key.split(_CELL_SEPARATOR), strict=True))


def cell_key_expr() -> Column:
    """:func:`cell_key` of a cells-table row, as a Column."""
    return F.concat_ws(_CELL_SEPARATOR, *[level_expr(t) for t in TERMS])


def fit_cells(cells: DataFrame, designs: list[GroupDesign]) -> DataFrame:
    """The designs' cells that enter their fits: every cell of the groups but those ``excluded``.

    ``cells`` has ``DIAG_GROUP``, the covariates, ``SPELLS`` and ``DEATHS``;
    groups without a design are left out.
    """
    excluded = cells.sparkSession.createDataFrame(
        [(d.group, {k: True for k in d.excluded}) for d in designs],
        schema="DIAG_GROUP int, EXCLUDED_CELLS map<string,boolean>")
    joined = cells.join(F.broadcast(excluded), on="DIAG_GROUP", how="inner")
    out = F.try_element_at(F.col("EXCLUDED_CELLS"), cell_key_expr())
    return joined.where(out.isNull()).drop("EXCLUDED_CELLS")
