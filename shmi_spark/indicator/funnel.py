"""Funnel-plot statistics for SHMI: z-scores, 10% trim, over-dispersion, limits.

One function per statistical step of METHOD.md §6 (in the manner of FunnelPlotR's
``od_adjustment.R`` and ``calculate_limits.R``), composed by :func:`funnel_limits`.
Pure numpy plus ``scipy.special`` (not ``scipy.stats``, which alone takes over a
second to import and would break the fast start of ``shmi band``; the chi-squared
quantile below is the very expression ``scipy.stats.chi2.ppf`` evaluates).

All functions take array-likes of equal length, one element per trust of one
period, and return numpy arrays.  Inputs must be finite with ``O >= 0`` and
``E > 0``; cleaning bad rows is the caller's job (see :mod:`shmi_spark.indicator.banding`).

Which trusts take part: :func:`funnel_limits` ranks, trims and estimates ``φ``
and ``τ²`` over the trusts marked ``ranked`` (default: all).  The caller leaves
out trusts too small to band (:mod:`shmi_spark.indicator.banding` leaves out those with
fewer than ``min_expected`` expected deaths); their SHMI, ``z`` and limits are
still computed, since the limits depend only on ``E`` and ``τ²``.

Non-finite results: for a tiny ``E`` the 99.8% upper limits can overflow to
``inf`` (and the lower over-dispersed limit underflow to 0); these functions
return such values as they are, and the output tables write them empty.

Zero observed deaths (``O = 0``): ``ln 0`` makes ``z = -inf``.  Such a trust is
kept in the ranking, where it sorts lowest (tied zero-death trusts share an
average rank), so the trim drops it whenever its rank falls in the bottom tenth,
which for one such trust is whenever ``N >= 10``.  If it nevertheless survives
the trim (many zero-death trusts, or a small ``N``) it is still left out of
``φ`` and ``τ²``: ``kept`` is "inside the trim **and** z finite", so ``φ`` is
always finite.  Its own limits depend only on ``E`` and ``τ²`` and are computed
as for every other trust.  Here its ``z`` is returned as ``-inf``; the output
tables (:mod:`shmi_spark.indicator.banding`) write it empty, since ``z`` is undefined.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

__all__ = [
    "Z_95", "Z_998", "DEFAULT_TRIM", "z_scores", "average_ranks", "trim_groups", "trim_mask", "overdispersion",
    "between_trust_variance", "od_limits", "chi2_ppf", "poisson_limits", "FunnelResult", "funnel_limits",
]

Z_95 = 1.959964
Z_998 = 3.090232
DEFAULT_TRIM = 0.10


def _as_float(values, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional")
    return arr


def _check_inputs(observed: np.ndarray, expected: np.ndarray) -> None:
    if observed.shape != expected.shape:
        raise ValueError("observed and expected must have the same length")
    if not np.all(np.isfinite(observed)) or np.any(observed < 0):
        raise ValueError("observed deaths must be finite and >= 0")
    if not np.all(np.isfinite(expected)) or np.any(expected <= 0):
        raise ValueError("expected deaths must be finite and > 0")


def z_scores(observed, expected) -> np.ndarray:
    """Step 1 (METHOD.md §6): ``z_i = sqrt(E_i) * ln(O_i / E_i)``.

    ``O_i = 0`` gives ``z_i = -inf`` (see the module docstring for how the trim
    and ``φ`` treat it).  ``E_i`` must be > 0.
    """
    o = _as_float(observed, "observed")
    e = _as_float(expected, "expected")
    _check_inputs(o, e)
    with np.errstate(divide="ignore", over="ignore"):  # O/E overflows only for a subnormal E
        return np.sqrt(e) * np.log(o / e)


def average_ranks(values) -> np.ndarray:
    """Ranks 1..N with ties sharing their average rank.

    The same algorithm and result as ``scipy.stats.rankdata(values, "average")``
    (tested against it); ``-inf`` values tie with each other and rank lowest.
    """
    x = _as_float(values, "values")
    if np.any(np.isnan(x)):
        raise ValueError("cannot rank NaN values")
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    first = np.r_[True, xs[1:] != xs[:-1]]          # start of each tie group
    dense = np.empty(len(x), dtype=np.intp)
    dense[order] = first.cumsum()
    bounds = np.r_[np.nonzero(first)[0], len(x)]    # 0-based group boundaries
    return 0.5 * (bounds[dense] + bounds[dense - 1] + 1)


def trim_groups(trim_fraction: float) -> int:
    """``1/trim_fraction`` as a whole number of groups (10 for 10%)."""
    k = round(1.0 / trim_fraction) if 0 < trim_fraction < 1 else 0
    if not 3 <= k <= 1000 or abs(k * trim_fraction - 1.0) > 1e-9:
        raise ValueError(
            f"trim fraction must be 0 or 1/k for a whole number k from 3 to 1000 "
            f"(0.10, 0.05, 0.20, ...), not {trim_fraction}")
    return k


def trim_mask(z, trim_fraction: float = DEFAULT_TRIM) -> np.ndarray:
    """Step 2 (METHOD.md §6): the trusts kept by the trim (a boolean mask).

    Rank the ``z`` (average ranks for ties), ``g_i = floor(rank_i * 10 / (N+1))``
    and keep only ``0 < g_i < 9``.  Trusts outside are dropped, not winsorised.
    For another fraction ``1/k`` the same rule reads ``floor(rank * k / (N+1))``
    and ``0 < g < k-1``; for 0.10 that is exactly the rule above.  The division
    is done in integers (average ranks are multiples of 1/2), so a rank sitting
    exactly on a group boundary is never misplaced by rounding.
    ``trim_fraction = 0`` keeps every trust.
    """
    zz = _as_float(z, "z")
    if trim_fraction == 0:
        return np.ones(len(zz), dtype=bool)
    k = trim_groups(trim_fraction)
    n = len(zz)
    twice_rank = np.rint(2 * average_ranks(zz)).astype(np.int64)
    g = (twice_rank * k) // (2 * (n + 1))
    return (g > 0) & (g < k - 1)


def overdispersion(z, kept) -> float:
    """Step 3 (METHOD.md §6): ``φ = (1/n) Σ_kept z_i²`` over the ``n`` kept trusts."""
    zz = _as_float(z, "z")
    mask = np.asarray(kept, dtype=bool)
    if mask.sum() == 0:
        raise ValueError("no trusts kept: cannot estimate over-dispersion")
    return float(np.mean(zz[mask] ** 2))


def between_trust_variance(phi: float, expected, kept) -> float:
    """Step 4 (METHOD.md §6): the additive random-effects variance ``τ²``.

    ``τ² = max(0, (nφ − (n−1)) / (Σw − Σw²/Σw))`` over the ``n`` kept trusts with
    ``w_i = E_i``; ``τ² = 0`` when ``nφ < n − 1`` (no over-dispersion).
    """
    e = _as_float(expected, "expected")
    mask = np.asarray(kept, dtype=bool)
    n = int(mask.sum())
    if n < 2:
        raise ValueError("fewer than 2 trusts kept: cannot estimate tau^2")
    w = e[mask]
    numerator = n * phi - (n - 1)
    if numerator <= 0:
        return 0.0
    denominator = w.sum() - (w ** 2).sum() / w.sum()
    return float(max(0.0, numerator / denominator))


def od_limits(expected, tau2: float, z_alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Step 5 (METHOD.md §6): over-dispersed limits on the SHMI scale, every trust.

    ``exp(± z_α · sqrt(1/E_i + τ²))`` with ``z_α`` = :data:`Z_95` (1.959964) or
    :data:`Z_998` (3.090232).  For a tiny ``E`` the upper limit may overflow
    to ``inf`` (and the lower to 0); that is the limit, not an error.
    Returns ``(lower, upper)``.
    """
    e = _as_float(expected, "expected")
    with np.errstate(over="ignore", divide="ignore"):   # 1/E overflows for a subnormal E
        half_width = z_alpha * np.sqrt(1.0 / e + tau2)
        return np.exp(-half_width), np.exp(half_width)


def chi2_ppf(q: float, df) -> np.ndarray:
    """The chi-squared quantile; the expression ``scipy.stats.chi2.ppf`` uses."""
    return 2.0 * special.gammaincinv(np.asarray(df, dtype=float) / 2.0, q)


def poisson_limits(expected, level: float = 0.998) -> tuple[np.ndarray, np.ndarray]:
    """Step 6 (METHOD.md §6): exact Poisson limits on the SHMI scale, every trust.

    With ``a = (1 - level) / 2`` (0.001 for 99.8%): lower ``χ²_a(2E) / (2E)``,
    upper ``χ²_{1-a}(2(E+1)) / (2E)`` — the Garwood exact interval for a count
    of ``E``, divided by ``E``.  Returns ``(lower, upper)``.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, not {level}")
    e = _as_float(expected, "expected")
    a = (1.0 - level) / 2.0
    with np.errstate(over="ignore"):                     # upper / (2E) overflows for a tiny E
        lower = chi2_ppf(a, 2.0 * e) / (2.0 * e)
        upper = chi2_ppf(1.0 - a, 2.0 * (e + 1.0)) / (2.0 * e)
    return lower, upper


@dataclass(frozen=True)
class FunnelResult:
    """Per-trust arrays (in input order) and the period's dispersion scalars.

    ``ranked`` marks the trusts that took part in the ranking and trim, ``kept``
    those of them used for ``φ`` and ``τ²``; ``n`` counts all trusts and
    ``n_ranked`` the ranked ones.
    """

    shmi: np.ndarray
    z: np.ndarray
    ranked: np.ndarray
    kept: np.ndarray
    od95_ll: np.ndarray
    od95_ul: np.ndarray
    od998_ll: np.ndarray
    od998_ul: np.ndarray
    po998_ll: np.ndarray
    po998_ul: np.ndarray
    phi: float
    tau2: float
    n_kept: int
    n: int
    n_ranked: int


def funnel_limits(observed, expected, trim_fraction: float = DEFAULT_TRIM, *,
                  ranked=None) -> FunnelResult:
    """All of METHOD.md §6 steps 1–6 for the trusts of one period.

    ``ranked`` (a boolean mask, default all trusts): the ``N`` trusts that are
    ranked and trimmed (step 2) and so may enter ``φ`` and ``τ²`` (steps 3–4);
    the others get SHMI, ``z`` and limits (steps 1, 5, 6) only.  ``kept``
    marks the trusts used for ``φ`` and ``τ²``: ranked, inside the trim and
    with a finite ``z`` (a zero-death trust is never used; module docstring).
    """
    o = _as_float(observed, "observed")
    e = _as_float(expected, "expected")
    z = z_scores(o, e)
    in_ranking = (np.ones(len(z), dtype=bool) if ranked is None
                  else np.asarray(ranked, dtype=bool))
    if in_ranking.shape != z.shape:
        raise ValueError("ranked must have one element per trust")
    kept = np.zeros(len(z), dtype=bool)
    kept[in_ranking] = trim_mask(z[in_ranking], trim_fraction) & np.isfinite(z[in_ranking])
    phi = overdispersion(z, kept)
    tau2 = between_trust_variance(phi, e, kept)
    od95_ll, od95_ul = od_limits(e, tau2, Z_95)
    od998_ll, od998_ul = od_limits(e, tau2, Z_998)
    po998_ll, po998_ul = poisson_limits(e, 0.998)
    with np.errstate(over="ignore"):
        shmi = o / e
    return FunnelResult(
        shmi=shmi, z=z, ranked=in_ranking, kept=kept,
        od95_ll=od95_ll, od95_ul=od95_ul, od998_ll=od998_ll, od998_ul=od998_ul,
        po998_ll=po998_ll, po998_ul=po998_ul,
        phi=phi, tau2=tau2, n_kept=int(kept.sum()), n=len(o), n_ranked=int(in_ranking.sum()))
