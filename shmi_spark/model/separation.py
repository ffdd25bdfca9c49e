"""The exact limit of a group's maximum-likelihood fit where its data separate (METHOD.md §5).

Where the cells of a diagnosis group are separated — some combination of
levels in which nobody (or everybody) died can be told apart from the rest by
the model's linear predictor — the logistic regression's likelihood keeps
rising as some coefficients run off to ∓∞, and the maximum-likelihood
estimate does not exist.  Its *limit* does, and it is what statsmodels or R's
``glm`` approach as they iterate: those cells' fitted probabilities go to
exactly 0 (nobody died) or 1 (everybody died), and every other cell's fitted
probability goes to the maximum-likelihood fit of the remaining cells alone
(the "limiting conditional model": Geyer 2009, Clarkson & Jennrich 1991).

:func:`find_separation` finds the separated cells exactly, by a linear
programme over the group's cells (Konis 2007; R's ``detectseparation``),
not level by level.  With ``a_i`` a cell's design row (1 for the intercept,
then its 0/1 indicators) and ``s_i`` = +1 where everybody died, −1 where
nobody did, a *direction of recession* ``d`` keeps every cell with deaths
and survivors where it is (``a_i·d = 0``) and moves each pure cell only
towards its outcome (``s_i a_i·d ≥ 0``).  The cells that some such
direction moves strictly are the separated cells; the programme

    maximise Σ t_u  subject to  t_u ≤ s_u a_u·d,  0 ≤ t_u ≤ 1,  a_i·d = 0 for mixed cells

finds them all at once: at its optimum ``t_u = 1`` exactly on the separated
cells (directions add, so one ``d`` moves them all) and 0 elsewhere.  It is
solved on the exact 0/1 rows (the distinct ones), and only where the mixed
cells leave some direction free (the null space of their rows, from their
Gram matrix), so a group whose mixed cells fix every parameter, as any large
group's do, costs no programme at all.  A second programme then gives the
direction used for the coefficients: the smallest ``Σ|d|`` that moves the
cells found by at least 1 and leaves every other cell exactly where it is.

:func:`aliased_columns` names the design columns that are linear combinations
of earlier ones among the remaining cells, in column order, as R's ``glm``
aliases them (its coefficient ``NA``, here no parameter).

:func:`limit_scale` is the multiple ``M`` of the direction that puts every
separated cell at least ``logit`` from 0 on the log-odds, so that
``β̂ + M·d`` — published as the group's coefficients — gives the remaining
cells their fitted probabilities unchanged (``a_i·d = 0``) and the separated
cells their limit to within ``1/(1+e^logit)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import eigh
from scipy.optimize import linprog

__all__ = ["SeparationError", "Separation", "find_separation", "aliased_columns", "limit_scale"]

# a null-space eigenvalue, relative to the largest
_NULL_TOL = 1e-10
# a direction's component, or a mixed cell's movement, below this is zero
_ZERO = 1e-9
# the largest |component| of a direction in the first programme (it only needs some direction)
_D_BOUND = 1e6
# linprog's methods, tried in this order until one solves the programme
_METHODS = ("highs-ds", "highs-ipm")


class SeparationError(ArithmeticError):
    """The linear programme failed, or its direction does not check out (a numerical failure)."""


@dataclass(frozen=True)
class Separation:
    """Which cells are separated, and a direction that separates them.

    ``cells``: per cell, True where the limit's fitted probability is 0 or 1
    (``limits``: 1.0 where everybody died, 0.0 where nobody did; NaN
    elsewhere).  ``direction``: intercept first, then one entry per column;
    ``s_i a_i·direction ≥ 1`` on the separated cells and 0 on every other.
    """

    cells: np.ndarray
    limits: np.ndarray
    direction: np.ndarray

    @property
    def any(self) -> bool:
        return bool(self.cells.any())


def _design(x: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones(len(x)), x])


def _null_space(a: np.ndarray) -> np.ndarray:
    """An orthonormal basis (columns) of the directions ``d`` with ``a @ d = 0``."""
    k = a.shape[1]
    if len(a) == 0:
        return np.eye(k)
    gram = a.T @ a
    values, vectors = eigh(gram)
    top = max(float(values[-1]), 1.0)
    return vectors[:, values <= _NULL_TOL * top]


def _solve(c, *, a_ub, b_ub, a_eq, bounds):
    """``linprog`` by HiGHS' dual simplex, else its interior-point method; a failure of both is numerical."""
    b_eq = None if a_eq is None else np.zeros(len(a_eq))
    for method in _METHODS:
        result = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method=method)
        if result.status == 0:
            return result
    raise SeparationError(f"separation programme: {result.message}")


def find_separation(x: np.ndarray, spells: np.ndarray, deaths: np.ndarray) -> Separation:
    """The separated cells of a group's cells (``x``: 0/1 features, without the intercept).

    >>> x = np.array([[0.0], [1.0], [1.0]])  # one feature; the cell with it and no deaths separates
    >>> s = find_separation(x, np.array([10.0, 5.0, 3.0]), np.array([4.0, 0.0, 0.0]))
    >>> s.cells.tolist(), s.limits[1:].tolist()
    ([False, True, True], [0.0, 0.0])
    """
    n = len(spells)
    a = _design(x)
    pure = (deaths <= 0) | (deaths >= spells)
    none = Separation(np.zeros(n, dtype=bool), np.full(n, np.nan), np.zeros(a.shape[1]))
    if not pure.any():
        return none
    basis = _null_space(a[~pure])
    if basis.shape[1] == 0:
        return none
    sign = np.where(deaths > 0, 1.0, -1.0)
    # the programme on the exact 0/1 rows: the distinct mixed rows (a·d = 0) and the distinct
    # signed pure rows (t ≤ s·a·d); a pure row that also occurs mixed cannot move
    mixed_rows = np.unique(a[~pure], axis=0)
    signed, inverse = np.unique(a[pure] * sign[pure][:, None], axis=0, return_inverse=True)
    k, u = a.shape[1], len(signed)
    c = np.concatenate([np.zeros(k), -np.ones(u)])
    result = _solve(c, a_ub=np.hstack([-signed, np.eye(u)]), b_ub=np.zeros(u),
                    a_eq=np.hstack([mixed_rows, np.zeros((len(mixed_rows), u))]) if len(mixed_rows) else None,
                    bounds=[(-_D_BOUND, _D_BOUND)] * k + [(0.0, 1.0)] * u)
    chosen = result.x[k:] > 0.5
    if not chosen.any():
        return none
    # a clean direction for the cells found: the smallest Σ|d| with s·a·d ≥ 1 on them and
    # a·d = 0 on every other row (the first programme's d may be large and loosely rounded)
    fixed = np.vstack([mixed_rows, signed[~chosen]]) if len(mixed_rows) else signed[~chosen]
    cleanup = _solve(np.ones(2 * k), a_ub=np.hstack([-signed[chosen], signed[chosen]]),
                     b_ub=-np.ones(int(chosen.sum())),
                     a_eq=np.hstack([fixed, -fixed]) if len(fixed) else None,
                     bounds=[(0.0, None)] * (2 * k))
    direction = cleanup.x[:k] - cleanup.x[k:]
    direction[np.abs(direction) < _ZERO] = 0.0
    moved = sign * (a @ direction)
    separated = np.zeros(n, dtype=bool)
    separated[np.flatnonzero(pure)[chosen[inverse]]] = True
    still = ~separated
    if np.any(moved[separated] < 1 - 1e-6) or np.any(np.abs(moved[still]) > 1e-7):
        raise SeparationError("separation programme: its direction does not separate the cells it names")
    limits = np.full(n, np.nan)
    limits[separated] = np.where(deaths[separated] > 0, 1.0, 0.0)
    return Separation(separated, limits, direction)


def aliased_columns(x: np.ndarray) -> list[int]:
    """Columns of ``x`` (the intercept is implicit and first) that are combinations of earlier ones.

    >>> aliased_columns(np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]]))
    [1]
    """
    a = _design(x)
    gram = a.T @ a
    kept: list[int] = []
    out: list[int] = []
    for j in range(a.shape[1]):
        if gram[j, j] <= 0:
            out.append(j - 1)
            continue
        if kept:
            sub = gram[np.ix_(kept, kept)]
            proj = gram[kept, j]
            residual = gram[j, j] - proj @ np.linalg.solve(sub, proj)
        else:
            residual = gram[j, j]
        if residual <= 1e-9 * gram[j, j]:
            out.append(j - 1)
        else:
            kept.append(j)
    if out and out[0] == -1:
        raise SeparationError("the intercept is aliased: no cell to fit")
    return out


def limit_scale(sep_rows: np.ndarray, signs: np.ndarray, coefficients: np.ndarray, direction: np.ndarray,
                logit: float) -> float:
    """The smallest ``M ≥ 0`` with ``s_i a_i·(β̂ + M·d) ≥ logit`` on every separated row.

    ``sep_rows``: the separated cells' design rows (intercept first);
    ``coefficients`` β̂ and ``direction`` d in the same order.
    """
    if len(sep_rows) == 0:
        return 0.0
    fitted = signs * (sep_rows @ coefficients)
    speed = signs * (sep_rows @ direction)
    return float(max(0.0, np.max((logit - fitted) / speed)))
