"""The run report's plots: a trust's trend, its drill-down by diagnosis group, model quality, diffsum.

Every function takes a small pandas DataFrame read from a run's CSV files (no
Spark), draws on matplotlib's Agg canvas (no pyplot: no global state; matplotlib
and scipy are imported inside the functions) and writes a PNG (100 dpi) and an
SVG beside ``stem`` (``stem.png``, ``stem.svg``; a suffix of ``stem`` naming an
image format is replaced).  Banding is drawn as in the funnel plot
(:data:`shmi_spark.indicator.plots.BAND_STYLE`): marker shape and colour, never
colour alone.  Functions whose drawing has something to check have a builder
that returns the Figure (and what it labelled) without writing it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from shmi_spark.indicator.plots import (
    BAND_STYLE,
    band_code,
    label_axes,
    legend_below,
    new_figure,
    scatter_style,
    stem_paths,
    write_figure,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "save_figure", "trend_plot", "drilldown_table", "drilldown_plot", "c_statistic_plot",
    "calibration_plot", "diffsum_figure", "diffsum_plot", "DRILLDOWN_COLUMNS",
]

#: The columns of :func:`drilldown_table` (plus ``SPELLS`` after ``EXPECTED`` when the input has it).
DRILLDOWN_COLUMNS = ["LABEL", "OBSERVED", "EXPECTED", "O_MINUS_E", "RATIO", "RATIO_LL95", "RATIO_UL95"]

_NOTE_SIZE = 9
_HIGHER, _LOWER, _NEUTRAL = BAND_STYLE[1].colour, BAND_STYLE[3].colour, BAND_STYLE[2].colour


def save_figure(fig: Figure, stem: Path, *, formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Lay ``fig`` out tightly and write it beside ``stem`` in each format (PNG at 100 dpi); the paths written."""
    return write_figure(fig, stem_paths(stem, formats), formats)


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {', '.join(missing)}")
    if df.empty:
        raise ValueError(f"{what}: no rows to plot")


def _num(df: pd.DataFrame, col: str) -> np.ndarray:
    return pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)


def _short(label: object, width: int = 42) -> str:
    text = str(label)
    return text if len(text) <= width else text[: width - 1] + "…"


# ------------------------------------------------------------------ trend

def _trend_limits(ax: Axes, x: np.ndarray, rows: pd.DataFrame) -> None:
    lo95, hi95 = _num(rows, "OD95_LL"), _num(rows, "OD95_UL")
    ok = np.isfinite(lo95) & np.isfinite(hi95)
    ax.bar(x[ok], (hi95 - lo95)[ok], bottom=lo95[ok], width=0.6, color="#DDDDDD", zorder=1,
           label="95% limits (over-dispersed)")
    for col in ("OD998_LL", "OD998_UL"):
        y = _num(rows, col)
        ok = np.isfinite(y)
        ax.hlines(y[ok], x[ok] - 0.3, x[ok] + 0.3, colors="black", linestyles="--", lw=1, zorder=2,
                  label="99.8% limits (over-dispersed)" if col == "OD998_LL" else "_nolegend_")


def trend_plot(rows: pd.DataFrame, stem: Path, *, title: str) -> list[Path]:
    """One trust's SHMI over periods (in the order of ``rows``), with each period's funnel limits.

    ``rows``: ``PERIOD`` (label, e.g. "2005/06"), ``SHMI``, ``OD95_LL``,
    ``OD95_UL``, ``OD998_LL``, ``OD998_UL``, ``BANDING`` (1, 2, 3, empty if not
    banded).  Per period: a grey bar from the 95% lower to the 95% upper
    over-dispersed limit, dashed ticks at the 99.8% limits (METHOD.md §6: the
    trust is banded on the 95% limits), and the SHMI as a point whose shape and
    colour give the band, the points joined by a line; a line at SHMI = 1.
    Figure 8×4 inches.  Returns the paths written.
    """
    _require(rows, ["PERIOD", "SHMI", "OD95_LL", "OD95_UL", "OD998_LL", "OD998_UL", "BANDING"], "trend_plot")
    x = np.arange(len(rows), dtype=float)
    shmi = _num(rows, "SHMI")
    codes = [band_code(v) for v in rows["BANDING"]]
    fig = new_figure(8, 4)
    ax = fig.add_subplot()
    _trend_limits(ax, x, rows)
    ax.axhline(1.0, color="black", lw=0.8, alpha=0.6)
    ax.plot(x, shmi, "-", color="black", lw=1, zorder=3)
    for code in BAND_STYLE:
        sel = np.array([c == code for c in codes]) & np.isfinite(shmi)
        if sel.any():
            ax.scatter(x[sel], shmi[sel], s=55, zorder=4, **scatter_style(code))
    slanted = len(rows) > 5
    ax.set_xticks(x, [str(p) for p in rows["PERIOD"]], rotation=35 if slanted else 0,
                  ha="right" if slanted else "center")
    ax.set_xlim(-0.6, len(rows) - 0.4)
    label_axes(ax, title=title, xlabel="Period", ylabel="SHMI")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=_NOTE_SIZE, frameon=False)
    return save_figure(fig, stem)


# ------------------------------------------------------------------ drill-down

def _poisson_ratio_limits(o: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact 95% Poisson interval of ``O`` divided by ``E`` (lower 0 when ``O = 0``; NaN when ``E = 0``)."""
    from scipy.stats import chi2

    with np.errstate(divide="ignore", invalid="ignore"):
        lower = np.where(o > 0, chi2.ppf(0.025, 2 * o) / 2, 0.0)
        upper = chi2.ppf(0.975, 2 * o + 2) / 2
        safe_e = np.where(e > 0, e, np.nan)
        return lower / safe_e, upper / safe_e


def drilldown_table(groups: pd.DataFrame, *, top: int = 15) -> pd.DataFrame:
    """The rows :func:`drilldown_plot` draws, in the order drawn (first row at the top of the chart).

    ``groups``: ``LABEL``, ``OBSERVED``, ``EXPECTED`` (finite, >= 0), optional
    ``SPELLS``.  Selection rule: the ``top`` groups with the largest
    ``|O − E|`` (ties: the larger ``O − E``, then the input order), shown
    sorted by ``O − E`` descending — so the largest contributors to an excess of
    deaths come first, then any groups with fewer deaths than expected, the
    largest deficit last.  Columns :data:`DRILLDOWN_COLUMNS` (``SPELLS`` after
    ``EXPECTED`` if given): ``O_MINUS_E``; ``RATIO = O/E``; ``RATIO_LL95``,
    ``RATIO_UL95`` its exact 95% Poisson interval, ``χ²_{0.025}(2O)/2 / E`` and
    ``χ²_{0.975}(2O+2)/2 / E`` (lower 0 when ``O = 0``).  Ratio columns are
    NaN where ``E = 0``.
    """
    _require(groups, ["LABEL", "OBSERVED", "EXPECTED"], "drilldown_table")
    if top < 1:
        raise ValueError(f"drilldown_table: top must be at least 1, not {top}")
    keep = ["LABEL", "OBSERVED", "EXPECTED"] + (["SPELLS"] if "SPELLS" in groups.columns else [])
    out = groups[keep].copy()
    for col in ("OBSERVED", "EXPECTED"):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
        if not (np.isfinite(out[col]) & (out[col] >= 0)).all():
            raise ValueError(f"drilldown_table: {col} must be finite numbers >= 0")
    out["O_MINUS_E"] = out["OBSERVED"] - out["EXPECTED"]
    out["_ABS"] = out["O_MINUS_E"].abs()
    out = out.sort_values(["_ABS", "O_MINUS_E"], ascending=False, kind="stable").head(top)
    out = out.sort_values("O_MINUS_E", ascending=False, kind="stable").drop(columns="_ABS")
    o, e = out["OBSERVED"].to_numpy(), out["EXPECTED"].to_numpy()
    out["RATIO"] = np.where(e > 0, o / np.where(e > 0, e, 1.0), np.nan)
    out["RATIO_LL95"], out["RATIO_UL95"] = _poisson_ratio_limits(o, e)
    return out.reset_index(drop=True)


def _drilldown_bars(ax: Axes, table: pd.DataFrame, y: np.ndarray) -> None:
    diff = table["O_MINUS_E"].to_numpy()
    ax.barh(y, diff, color=np.where(diff > 0, _HIGHER, _LOWER), height=0.7)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, [_short(v) for v in table["LABEL"]])
    ax.invert_yaxis()
    label_axes(ax, title="Observed − expected deaths", xlabel="Deaths (observed − expected)", ylabel="")


def _drilldown_ratios(ax: Axes, table: pd.DataFrame, y: np.ndarray) -> None:
    ok = table["EXPECTED"].to_numpy() > 0
    ratio = table["RATIO"].to_numpy()[ok]
    err = np.vstack([ratio - table["RATIO_LL95"].to_numpy()[ok], table["RATIO_UL95"].to_numpy()[ok] - ratio])
    ax.errorbar(ratio, y[ok], xerr=err, fmt="o", color="black", ecolor="#555555", capsize=3, ms=5)
    ax.axvline(1.0, color="black", lw=0.8, ls="--")
    ax.set_xlim(left=0)
    label_axes(ax, title="Observed / expected deaths", xlabel="Ratio, with 95% interval", ylabel="")
    if not ok.all():
        ax.text(0.99, 0.01, "groups with no expected deaths not shown", transform=ax.transAxes,
                ha="right", va="bottom", fontsize=_NOTE_SIZE)


def drilldown_plot(groups: pd.DataFrame, stem: Path, *, title: str, top: int = 15) -> pd.DataFrame:
    """One trust's deaths by diagnosis group (or supergroup) in one period: where an excess comes from.

    Left panel: observed minus expected deaths as horizontal bars (vermilion
    above, blue below zero); right panel, on the same rows: observed/expected
    with its exact 95% Poisson interval and a dashed line at 1 (groups with no
    expected deaths left out).  Rows: :func:`drilldown_table` (its selection
    rule and columns), first row at the top.  Writes ``stem.png`` and
    ``stem.svg``; returns the table drawn, the paths written in
    ``table.attrs["paths"]``.
    """
    table = drilldown_table(groups, top=top)
    y = np.arange(len(table), dtype=float)
    fig = new_figure(10, max(4.0, 0.38 * len(table) + 1.8))
    left, right = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [1.1, 1]})
    _drilldown_bars(left, table, y)
    _drilldown_ratios(right, table, y)
    fig.suptitle(title, fontsize=13)
    table.attrs["paths"] = save_figure(fig, stem)
    return table


# ------------------------------------------------------------------ model quality (METHOD.md §8)

def c_statistic_plot(quality: pd.DataFrame, stem: Path, *, title: str) -> list[Path]:
    """C statistic per diagnosis group against the group's spells (log scale), one period (METHOD.md §8).

    ``quality``: ``DIAG_GROUP``, ``LABEL``, ``SPELLS``, ``DEATHS``,
    ``C_STATISTIC``; the row with no ``DIAG_GROUP`` is the overall C, drawn as
    a solid horizontal line.  Dotted reference lines at 0.5 (no better than
    chance), 0.7 and 0.8; the five groups with the lowest C are labelled (by
    ``LABEL``, else by ``DIAG_GROUP``).
    Groups without a C (no deaths or no survivors) are counted in a note, not
    drawn.  Returns the paths written.
    """
    _require(quality, ["DIAG_GROUP", "LABEL", "SPELLS", "DEATHS", "C_STATISTIC"], "c_statistic_plot")
    overall_row = quality["DIAG_GROUP"].isna()
    groups = quality[~overall_row]
    c, spells = _num(groups, "C_STATISTIC"), _num(groups, "SPELLS")
    ok = np.isfinite(c) & (spells > 0)
    fig = new_figure(9, 6)
    ax = fig.add_subplot()
    ax.scatter(spells[ok], c[ok], s=22, marker="o", facecolors="#0072B2", edgecolors="black", linewidths=0.3,
               alpha=0.8, label=f"Diagnosis group ({int(ok.sum())})", zorder=3)
    for level, style in ((0.5, ":"), (0.7, ":"), (0.8, ":")):
        ax.axhline(level, color="#777777", ls=style, lw=1)
        ax.text(1.0, level, f" {level:g}", transform=ax.get_yaxis_transform(), va="center", fontsize=_NOTE_SIZE)
    overall = _num(quality[overall_row], "C_STATISTIC")
    if overall.size and np.isfinite(overall[0]):
        ax.axhline(overall[0], color=_HIGHER, lw=1.5, label=f"Overall C = {overall[0]:.3f}")
    for i in np.argsort(np.where(ok, c, np.inf))[: min(5, int(ok.sum()))]:
        name = groups["LABEL"].iloc[i]
        group = groups["DIAG_GROUP"].iloc[i]
        name = name if pd.notna(name) else f"Group {int(group) if isinstance(group, float) else group}"
        ax.annotate(_short(name, 30), (spells[i], c[i]), xytext=(5, 0),
                    textcoords="offset points", va="center", fontsize=_NOTE_SIZE - 1)
    ax.set_xscale("log")
    ax.set_ylim(min(0.45, np.nanmin(c[ok]) - 0.03) if ok.any() else 0.45, 1.0)
    label_axes(ax, title=title, xlabel="Spells in the diagnosis group (log scale)", ylabel="C statistic")
    if (~ok).any():
        ax.text(0.01, 0.01, f"{int((~ok).sum())} group(s) with no C (no deaths or no survivors) not shown",
                transform=ax.transAxes, fontsize=_NOTE_SIZE)
    legend_below(ax, ncol=2)
    return save_figure(fig, stem)


def calibration_plot(deciles: pd.DataFrame, stem: Path, *, title: str) -> list[Path]:
    """Calibration: observed beside expected deaths per 100 spells in each tenth of predicted risk.

    ``deciles``: ``DECILE`` (1 lowest risk .. 10), ``SPELLS``, ``OBSERVED``,
    ``EXPECTED`` (:func:`shmi_spark.model.quality.calibration_deciles`).  Paired
    bars on a linear scale, observed filled and expected hatched (told apart
    by fill, not colour alone), each tenth's O/E written above its pair (a dash
    where fewer than 0.5 deaths are expected).  A
    linear scale because a model with separated cells puts whole tenths at a
    risk of practically 0, which a log scale cannot show.  Returns the paths written.
    """
    _require(deciles, ["DECILE", "SPELLS", "OBSERVED", "EXPECTED"], "calibration_plot")
    spells = _num(deciles, "SPELLS")
    with np.errstate(divide="ignore", invalid="ignore"):
        obs, exp = 100 * _num(deciles, "OBSERVED") / spells, 100 * _num(deciles, "EXPECTED") / spells
    ok = np.isfinite(exp) & np.isfinite(obs) & (spells > 0)
    if not ok.any():
        raise ValueError("calibration_plot: no decile with spells")
    x = np.arange(int(ok.sum()))
    labels = [str(d) for d in deciles["DECILE"][ok]]
    fig = new_figure(9, 5)
    ax = fig.add_subplot()
    ax.bar(x - 0.2, obs[ok], width=0.4, color="#0072B2", edgecolor="black", label="Observed")
    ax.bar(x + 0.2, exp[ok], width=0.4, color="white", edgecolor="black", hatch="///", label="Expected")
    top = float(max(obs[ok].max(), exp[ok].max(), 1e-9))
    expected_deaths = _num(deciles, "EXPECTED")[ok]
    for xi, o, e, n in zip(x, obs[ok], exp[ok], expected_deaths, strict=True):
        text = f"{o / e:.2f}" if n >= 0.5 else "–"   # no ratio over less than half an expected death
        ax.annotate(text, (xi, max(o, e)), xytext=(0, 3), textcoords="offset points", ha="center",
                    fontsize=_NOTE_SIZE)
    ax.set_xticks(x, labels)
    ax.set_ylim(0, top * 1.15)
    label_axes(ax, title=title, xlabel="Tenth of predicted risk (1 lowest); O/E above each pair",
               ylabel="Deaths per 100 spells")
    ax.legend(loc="upper left", fontsize=_NOTE_SIZE)
    return save_figure(fig, stem)


# ------------------------------------------------------------------ diffsum (paper, Figure 1)

def diffsum_figure(diff: pd.DataFrame, *, title: str, label_a: str, label_b: str, lines: float = 0.05,
                   key: str = "PROVIDER_CODE") -> tuple[Figure, list[str]]:
    """The diffsum plot as a Figure, and the ``key`` values labelled (those outside the lines), in row order.

    Arguments as :func:`diffsum_plot`.
    """
    _require(diff, [key, "MEAN", "DIFF"], "diffsum_plot")
    mean, d = _num(diff, "MEAN"), _num(diff, "DIFF")
    above, below = d > lines * mean, d < -lines * mean
    inside = ~(above | below)
    fig = new_figure(9, 6)
    ax = fig.add_subplot()
    x_max = max(float(np.nanmax(mean)), 1.0) * 1.05
    for sign in (1, -1):
        ax.plot([0, x_max], [0, sign * lines * x_max], ":", color="black", lw=1.2,
                label=f"±{lines:.0%} of the mean" if sign == 1 else "_nolegend_")
    ax.axhline(0, color="black", lw=0.6, alpha=0.5)
    pct = f"{lines:.0%}"
    ax.scatter(mean[inside], d[inside], s=22, marker="o", facecolors="none", edgecolors=_NEUTRAL,
               label=f"Within ±{pct}")
    ax.scatter(mean[above], d[above], s=40, marker="^", facecolors=_HIGHER, edgecolors="black", linewidths=0.4,
               label=f"{label_a} more than {pct} above {label_b}")
    ax.scatter(mean[below], d[below], s=40, marker="v", facecolors=_LOWER, edgecolors="black", linewidths=0.4,
               label=f"{label_a} more than {pct} below {label_b}")
    labelled = [str(v) for v in diff[key][above | below]]
    for x, y, name in zip(mean[above | below], d[above | below], labelled, strict=True):
        ax.annotate(name, (x, y), xytext=(4, 3), textcoords="offset points", fontsize=_NOTE_SIZE)
    ax.set_xlim(0, x_max)
    label_axes(ax, title=title, xlabel=f"Mean expected deaths, ({label_a} + {label_b}) / 2",
               ylabel=f"Difference in expected deaths, {label_a} − {label_b}")
    ax.legend(loc="upper left", fontsize=_NOTE_SIZE)
    return fig, labelled


def diffsum_plot(diff: pd.DataFrame, stem: Path, *, title: str, label_a: str, label_b: str,
                 lines: float = 0.05, key: str = "PROVIDER_CODE") -> list[Path]:
    """The paper's diffsum plot (Campbell et al. 2012, Figure 1; METHOD.md §8): model A against model B.

    ``diff``: :func:`shmi_spark.model.quality.diffsum` output (``key``,
    ``MEAN``, ``DIFF`` are used).  Each trust's difference in expected deaths
    ``A − B`` against their mean, with dotted lines ``DIFF = ±lines·MEAN``;
    trusts above the upper line (vermilion triangles up) or below the lower
    (blue triangles down) are labelled with ``key``, the rest are hollow grey
    circles.  The flags are recomputed from ``lines``, so they match the lines
    drawn.  Returns the paths written.
    """
    fig, _ = diffsum_figure(diff, title=title, label_a=label_a, label_b=label_b, lines=lines, key=key)
    return save_figure(fig, stem)
