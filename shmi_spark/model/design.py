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
* ``BIRWEIT_BAND`` enters only for groups with a level other than ``n/a``;
* a level where nobody or everybody died is *separated*.  Under the
  extended-MLE rule (``separation_logit > 0``) it is *fixed* at
  ∓``separation_logit`` on the log-odds, is not a feature, and its cells are
  left out of the fit: :func:`fit_cells` is the one definition of the cells
  that enter a group's fit, used by the single-group fit and by the batches.
  A feature level none of whose spells is left in those cells has no data and
  no parameter (:func:`drop_emptied_levels`).

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

from shmi_spark.model.cells import COVARIATES, level_expr

__all__ = [
    "TERMS", "INTERCEPT", "CRUDE_RATE", "NA_LEVEL", "PERINATAL_TERM",
    "GroupDesign", "Estimates", "level_sort_key", "level_key", "level_key_expr",
    "group_level_counts", "group_designs", "fit_cells", "drop_emptied_levels",
]

# The model terms, in the order of the cells table and of the coefficients table.
TERMS = list(COVARIATES)
# ``TERM`` of a model's intercept row, and of a crude-rate group's single row.
INTERCEPT = "INTERCEPT"
CRUDE_RATE = "CRUDE_RATE"
NA_LEVEL = "n/a"
PERINATAL_TERM = "BIRWEIT_BAND"

_LEADING_NUMBER = re.compile(r"^([<>]?)(\d+(?:\.\d+)?)")
# separates term and level in a level key (a character no level contains)
_KEY_SEPARATOR = "\u0001"


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


def level_key_expr(term: str) -> Column:
    """:func:`level_key` of a cell's level of ``term``, as a Column."""
    return F.concat(F.lit(term + _KEY_SEPARATOR), level_expr(term))


@dataclass
class GroupDesign:
    """One group's encoding: its levels, references, features and fixed (separated) levels.

    ``features`` are the (term, level) pairs that get a parameter, in the order
    of the group's coefficient vector after the intercept.
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
    # separated levels as reported: "TERM=LEVEL (deaths/spells died)"
    separated: list[str] = field(default_factory=list)
    # (term, level) -> fixed log-odds contrast of a separated level (extended MLE)
    fixed: dict[tuple[str, str], float] = field(default_factory=dict)
    # a term with every level separated: the extended MLE does not apply
    unresolved: bool = False
    # cells that enter the fit (:func:`fit_cells`), once :func:`drop_emptied_levels`
    # has counted them; None: not counted (the fit then uses all ``n_cells``)
    n_fit_cells: int | None = None

    @property
    def n_params(self) -> int:
        """Parameters of the group's fit: the intercept and one per feature."""
        return 1 + len(self.features)

    @property
    def rank_deficient(self) -> bool:
        """Fewer cells than parameters: the design cannot have full rank."""
        cells = self.n_cells if self.n_fit_cells is None else self.n_fit_cells
        return cells < self.n_params

    def without_fixed(self) -> GroupDesign:
        """The same group with every level estimated (for a penalised refit): no fixed levels."""
        features, reference = [], {}
        for term, rows in self.levels.items():
            ref = max(rows, key=lambda x: x[1])[0]
            reference[term] = ref
            if len(rows) > 1:
                features += [(term, lv) for lv, _, _ in rows if lv != ref]
        return dataclasses.replace(self, features=features, reference=reference, fixed={})

    def without_levels(self, emptied: list[tuple[str, str]]) -> GroupDesign:
        """The same group without the features ``emptied`` (no spells left to fit them), noted."""
        if not emptied:
            return self
        notes = self.notes + ["no spells left once separated cells are set aside, no parameter: "
                              + " ".join(f"{t}={lv}" for t, lv in emptied)]
        return dataclasses.replace(self, features=[f for f in self.features if f not in emptied], notes=notes)


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


def group_designs(level_counts: pd.DataFrame, separation_logit: float = 0.0) -> list[GroupDesign]:
    """Every group's design from :func:`group_level_counts`, in group order.

    ``separation_logit`` > 0 fixes separated levels (extended MLE); 0 leaves
    them in the design (the ridge and crude rules decide after the fit).
    """
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


def fit_cells(cells: DataFrame, designs: list[GroupDesign]) -> DataFrame:
    """The designs' cells that enter their fits: every cell of the groups but those in a fixed level.

    ``cells`` has ``DIAG_GROUP``, the covariates, ``SPELLS`` and ``DEATHS``;
    groups without a design are left out.
    """
    fixed = cells.sparkSession.createDataFrame(
        [(d.group, {level_key(t, lv): True for (t, lv) in d.fixed}) for d in designs],
        schema="DIAG_GROUP int, FIXED_LEVELS map<string,boolean>")
    joined = cells.join(F.broadcast(fixed), on="DIAG_GROUP", how="inner")
    in_fixed = F.coalesce(*[F.try_element_at(F.col("FIXED_LEVELS"), level_key_expr(t)) for t in TERMS])
    return joined.where(in_fixed.isNull()).drop("FIXED_LEVELS")


def _fit_level_counts(cells: DataFrame, designs: list[GroupDesign]) -> pd.DataFrame:
    """``SPELLS`` and ``N_CELLS`` per (group, term, level) among the :func:`fit_cells`, one small job."""
    exploded = fit_cells(cells, designs).select(
        "DIAG_GROUP", F.explode(_term_level_pairs()).alias("TERM_LEVEL"), "SPELLS")
    return (exploded.groupBy("DIAG_GROUP", F.col("TERM_LEVEL.TERM").alias("TERM"),
                             F.col("TERM_LEVEL.LEVEL").alias("LEVEL"))
            .agg(F.sum("SPELLS").cast("long").alias("SPELLS"),
                 F.count(F.lit(1)).cast("long").alias("N_CELLS"))
            .toPandas())


def drop_emptied_levels(cells: DataFrame, designs: list[GroupDesign]) -> list[GroupDesign]:
    """Designs whose features left without spells by the fixed levels' cells are dropped (noted),
    and with ``n_fit_cells`` counted; one small Spark job for all of them.

    Only designs with fixed levels and features change; an emptied level's
    coefficient is reported as 0, like a reference level.
    """
    with_fixed = [d for d in designs if d.fixed and d.features]
    if not with_fixed:
        return designs
    counts = _fit_level_counts(cells, with_fixed)
    spells = {(int(r.DIAG_GROUP), r.TERM, r.LEVEL): int(r.SPELLS)
              for r in counts.itertuples()}
    # every cell has one level of the first term: its counts add up to the group's fit cells
    n_fit_cells = counts[counts["TERM"] == TERMS[0]].groupby("DIAG_GROUP")["N_CELLS"].sum()
    out = []
    for d in designs:
        if d.fixed and d.features:
            d = d.without_levels([f for f in d.features if not spells.get((d.group, *f))])
            d = dataclasses.replace(d, n_fit_cells=int(n_fit_cells.get(d.group, 0)))
        out.append(d)
    return out
