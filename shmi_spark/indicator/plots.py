"""The SHMI funnel plot (METHOD.md §6): SHMI against expected deaths.

Draws the 95% and 99.8% over-dispersed limits as curves over a grid of expected
deaths, the trusts as points coloured by banding, and labels by id the trusts
outside the 99.8% limits.  Trusts reported but not banded (fewer than
``min_expected`` expected deaths; :mod:`shmi_spark.indicator.banding`) are drawn as hollow
grey points, unlabelled, and do not set the vertical scale.  Uses matplotlib's
Agg canvas directly (no pyplot, so no global backend state); the result is a PNG.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from shmi_spark.indicator import funnel
from shmi_spark.indicator.banding import BANDING_LABELS, DEFAULT_MIN_EXPECTED

__all__ = ["BAND_COLOURS", "funnel_plot"]

BAND_COLOURS = {1: "#d62728", 2: "#7f7f7f", 3: "#1f77b4"}


def _numbers(rows: pd.DataFrame, col: str) -> np.ndarray:
    return pd.to_numeric(rows[col], errors="coerce").to_numpy(dtype=float)


def _good_rows(df: pd.DataFrame, expected_col: str) -> tuple[pd.DataFrame, np.ndarray]:
    if "SHMI" not in df.columns:
        raise ValueError("no SHMI column to plot (expects band_table output)")
    rows = df[pd.to_numeric(df["SHMI"], errors="coerce").notna()]
    if rows.empty:
        raise ValueError("no rows with a SHMI to plot")
    return rows, _numbers(rows, expected_col)


def funnel_plot(df: pd.DataFrame, path, title: str, *, id_col: str = "PROVIDER",
                expected_col: str = "EXPECTED", observed_col: str = "OBSERVED",
                tau2: float | None = None, trim_fraction: float = funnel.DEFAULT_TRIM,
                min_expected: float = DEFAULT_MIN_EXPECTED) -> None:
    """Draw the funnel plot of a :func:`shmi_spark.indicator.banding.band_table` output to ``path``.

    ``tau2``: the between-trust variance behind the limits (the ``tau2`` of
    band_table's summary); if ``None`` it is re-estimated from ``observed_col``
    and ``expected_col`` of the plotted rows with ``trim_fraction``, ranking
    only those with at least ``min_expected`` expected deaths (METHOD.md §6).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows, e = _good_rows(df, expected_col)
    shmi = _numbers(rows, "SHMI")
    if tau2 is None:
        o = _numbers(rows, observed_col)
        tau2 = funnel.funnel_limits(o, e, trim_fraction, ranked=e >= min_expected).tau2
    banding = _numbers(rows, "BANDING") if "BANDING" in rows.columns else np.full(len(rows), 2.0)
    banded = np.isin(banding, list(BAND_COLOURS))
    scale = shmi[banded] if banded.any() else shmi

    grid = np.linspace(max(e.min() * 0.5, 1e-3), e.max() * 1.05, 400)
    fig = Figure(figsize=(9, 6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for z_alpha, style, name in ((funnel.Z_95, "--", "95%"), (funnel.Z_998, "-", "99.8%")):
        lo, hi = funnel.od_limits(grid, tau2, z_alpha)
        ax.plot(grid, lo, style, color="black", lw=1, label=f"{name} limits (over-dispersed)")
        ax.plot(grid, hi, style, color="black", lw=1)
    ax.axhline(1.0, color="black", lw=0.6, alpha=0.5)

    for code, colour in BAND_COLOURS.items():
        sel = banding == code
        if sel.any():
            ax.scatter(e[sel], shmi[sel], s=18, color=colour, label=BANDING_LABELS[code], zorder=3)
    if (~banded).any():
        ax.scatter(e[~banded], shmi[~banded], s=18, facecolors="none", edgecolors="#7f7f7f",
                   label="Not banded", zorder=3)

    outside = np.zeros(len(rows), dtype=bool)
    if "OUTLIER_998" in rows.columns:
        outside |= rows["OUTLIER_998"].astype(str).str.lower().eq("true").to_numpy()
    if "OD998_LL" in rows.columns:
        outside |= shmi < _numbers(rows, "OD998_LL")
    outside &= banded
    for x, y, label in zip(e[outside], shmi[outside], rows[id_col][outside].astype(str), strict=True):
        ax.annotate(label, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=8)

    ax.set_ylim(min(0.5, scale.min() * 0.9), max(1.6, scale.max() * 1.1))
    ax.set_xlim(0, grid[-1])
    ax.set_xlabel("Expected deaths")
    ax.set_ylabel("SHMI")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
