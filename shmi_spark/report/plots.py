"""The run report's plots: a trust's trend, its drill-down by diagnosis group, model quality, diffsum,
and the SHMI beside the HSMR (their scatter, a trust's bridge from one to the other).

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

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from shmi_spark.indicator.plots import (
    BAND_STYLE,
    PNG_DPI,
    band_code,
    label_axes,
    legend_below,
    new_figure,
    scatter_style,
    stem_paths,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "save_figure", "trend_plot", "drilldown_table", "drilldown_plot", "c_statistic_plot",
    "calibration_plot", "diffsum_figure", "diffsum_plot", "DRILLDOWN_COLUMNS",
    "AgreementStyle", "AGREEMENT_STYLE", "DISAGREEING", "agreement", "SCATTER_COLUMNS", "shmi_hsmr_figure",
    "shmi_hsmr_scatter", "ScatterHighlights", "BRIDGE_PLOT_COLUMNS", "step_label", "bridge_figure", "bridge_plot",
]

#: The columns of :func:`drilldown_table` (plus ``SPELLS`` after ``EXPECTED`` when the input has it).
DRILLDOWN_COLUMNS = ["LABEL", "OBSERVED", "EXPECTED", "O_MINUS_E", "RATIO", "RATIO_LL95", "RATIO_UL95"]

_NOTE_SIZE = 9
_HIGHER, _LOWER, _NEUTRAL = BAND_STYLE[1].colour, BAND_STYLE[3].colour, BAND_STYLE[2].colour


def save_figure(fig: Figure, stem: Path, *, formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Lay ``fig`` out tightly and write it beside ``stem`` in each format (PNG at 100 dpi); the paths written.

    As :func:`~shmi_spark.indicator.plots.write_figure`, the same bytes, but
    the layout is done once: ``tight_layout`` leaves a placeholder layout
    engine on the figure, which makes every ``savefig`` lay the figure out
    again in a draw of its own; removed, each format is one draw (a sixth
    less time per figure, which the report pays once per trust and figure).
    """
    fig.tight_layout()
    fig.set_layout_engine(None)
    return _write(fig, stem, formats)


def _write(fig: Figure, stem: Path, formats: Sequence[str]) -> list[Path]:
    """Write ``fig`` as it is laid out beside ``stem`` in each format; the paths written."""
    paths = stem_paths(stem, formats)
    for path in paths:
        fmt = path.suffix[1:]
        meta = {"Date": None} if fmt in ("svg", "svgz", "pdf") else None   # same figure, same bytes
        fig.savefig(path, format=fmt, dpi=PNG_DPI, metadata=meta)
    return paths


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


# ------------------------------------------------------------------ SHMI against HSMR (README "SHMI and HSMR")

class AgreementStyle(NamedTuple):
    """How one combination of a trust's two bandings is drawn: marker, colour (Okabe–Ito), words, fill."""

    marker: str
    colour: str
    label: str
    filled: bool


#: A trust's SHMI banding × HSMR banding (:func:`agreement`) → how the scatter draws it, in legend order.
#: Agreement keeps the funnel plot's style (:data:`BAND_STYLE`: ▲ vermilion higher, ● grey as expected,
#: ▼ blue lower, ○ hollow not banded); a banding on the SHMI alone points along the SHMI's axis (▶ higher,
#: ◀ lower), one on the HSMR alone is a square (higher) or a diamond (lower), opposite bandings a cross.
AGREEMENT_STYLE: dict[str, AgreementStyle] = {
    "both_higher": AgreementStyle("^", BAND_STYLE[1].colour, "Higher than expected on both", True),
    "shmi_higher": AgreementStyle(">", "#E69F00", "Higher on the SHMI only", True),
    "hsmr_higher": AgreementStyle("s", "#CC79A7", "Higher on the HSMR only", True),
    "opposite": AgreementStyle("X", "#000000", "Higher on one, lower on the other", True),
    "both_expected": AgreementStyle("o", BAND_STYLE[2].colour, "As expected on both", True),
    "shmi_lower": AgreementStyle("<", "#56B4E9", "Lower on the SHMI only", True),
    "hsmr_lower": AgreementStyle("D", "#009E73", "Lower on the HSMR only", True),
    "both_lower": AgreementStyle("v", BAND_STYLE[3].colour, "Lower than expected on both", True),
    "not_banded": AgreementStyle("o", BAND_STYLE[None].colour, "Not banded on one or both, neither higher nor lower",
                                 False),
}
#: The combinations in which the two indicators disagree: one banded higher or lower, the other not the same.
DISAGREEING = frozenset({"shmi_higher", "hsmr_higher", "opposite", "shmi_lower", "hsmr_lower"})
_HIGHER_ON_EITHER = frozenset({"both_higher", "shmi_higher", "hsmr_higher", "opposite"})


def agreement(shmi_banding: object, hsmr_banding: object) -> str:
    """The key of :data:`AGREEMENT_STYLE` of a trust banded ``shmi_banding`` and ``hsmr_banding`` (1, 2, 3, empty).

    Higher wins over lower: a trust higher on one and not banded or as expected
    on the other is "higher on that one only"; higher on one and lower on the
    other is ``opposite``; not banded on one and as expected (or not banded) on
    the other is ``not_banded``.
    """
    s, h = band_code(shmi_banding), band_code(hsmr_banding)
    if s == h and s is not None:
        return {1: "both_higher", 2: "both_expected", 3: "both_lower"}[s]
    if {s, h} == {1, 3}:
        return "opposite"
    for code, key in ((s, "shmi"), (h, "hsmr")):
        if code == 1:
            return f"{key}_higher"
    for code, key in ((s, "shmi"), (h, "hsmr")):
        if code == 3:
            return f"{key}_lower"
    return "not_banded"


#: What :func:`shmi_hsmr_scatter` reads: the bridge's columns (``shmi_vs_hsmr.csv``), ``HSMR`` on its scale of 100.
SCATTER_COLUMNS = ("PROVIDER_CODE", "SHMI", "SHMI_BANDING", "HSMR", "HSMR_BANDING")
_TICKS_FINE = (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.33, 0.5, 0.67, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 4.0,
               5.0, 10.0, 20.0, 50.0, 100.0)
_MAX_LABELS = 12


def _fill(style: AgreementStyle, *, lit: bool = False) -> dict[str, Any]:
    """Keyword arguments of ``Axes.scatter`` for a filled (black edge) or hollow (coloured edge) marker."""
    if style.filled:
        return {"facecolors": style.colour, "edgecolors": "black", "linewidths": 0.6 if lit else 0.4}
    return {"facecolors": "white" if lit else "none", "edgecolors": style.colour, "linewidths": 1.6 if lit else 1.2}


def _log_ticks(ax: Axes, lo: float, hi: float) -> None:
    """Both axes on ``lo``..``hi`` (log), ticks at round ratios written as numbers (0.5, 0.8, 1, 1.25, 2)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    gap = np.log(hi / lo) / 9   # at most about nine ticks, 1 always among them
    ticks = [1.0]
    for side in ([t for t in _TICKS_FINE if 1 < t <= hi], [t for t in reversed(_TICKS_FINE) if lo <= t < 1]):
        last = 1.0
        for t in side:
            if abs(np.log(t / last)) >= gap:
                ticks.append(t)
                last = t
    ticks.sort()
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_locator(NullLocator())
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)


def _scatter_scale(x: np.ndarray, y: np.ndarray, scale: np.ndarray) -> tuple[float, float]:
    """Common axis limits: 1/1.6 to 1.6 at least, widened to the positive ratios of the ``scale`` rows."""
    values = np.concatenate([x[scale], y[scale]])
    values = values[np.isfinite(values) & (values > 0)]
    lo, hi = 1 / 1.6, 1.6
    if values.size:
        lo, hi = min(lo, float(values.min()) / 1.15), max(hi, float(values.max()) * 1.15)
    return lo, hi


class _Scatter(NamedTuple):
    """A drawn scatter and what a highlight needs of it: each trust's point, style and label."""

    fig: Figure
    codes: list[str]
    kinds: list[str]
    xy: dict[str, tuple[float, float]]
    labels: dict[str, Any]


def _scatter_drawing(rows: pd.DataFrame, *, title: str) -> _Scatter:
    """The scatter of :func:`shmi_hsmr_scatter` without a highlight; ``labels``: the trusts labelled, in row order."""
    missing = [c for c in SCATTER_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"shmi_hsmr_scatter: missing column(s) {', '.join(missing)}")
    codes = rows["PROVIDER_CODE"].astype(str).to_numpy()
    x, y = _num(rows, "SHMI"), _num(rows, "HSMR") / 100
    kinds = np.array([agreement(s, h) for s, h in zip(rows["SHMI_BANDING"], rows["HSMR_BANDING"], strict=True)],
                     dtype=object)
    drawn = np.isfinite(x) & np.isfinite(y)
    fig = new_figure(8, 7.5)
    ax = fig.add_subplot()
    ax.set_xscale("log")
    ax.set_yscale("log")
    lo, hi = _scatter_scale(x, y, drawn & (kinds != "not_banded"))
    _log_ticks(ax, lo, hi)
    label_axes(ax, title=title, xlabel="SHMI (observed / expected deaths; log scale)",
               ylabel="HSMR / 100 (observed / expected deaths in hospital; log scale)")
    if not drawn.any():
        ax.text(0.5, 0.5, "No trust with both a SHMI and an HSMR to draw", transform=ax.transAxes, ha="center",
                va="center", fontsize=_NOTE_SIZE + 2)
        return _Scatter(fig, [], [], {}, {})
    ax.axvline(1.0, color="black", lw=0.8, alpha=0.6)
    ax.axhline(1.0, color="black", lw=0.8, alpha=0.6)
    ax.plot([lo, hi], [lo, hi], ":", color="#555555", lw=1, label="HSMR / 100 = SHMI")
    # points beyond the axes (an unbanded trust's extreme ratio, a ratio of 0) sit on the edge they pass
    inside = (x >= lo) & (x <= hi) & (y >= lo) & (y <= hi)
    xc, yc = np.clip(np.where(x > 0, x, lo), lo, hi), np.clip(np.where(y > 0, y, lo), lo, hi)
    for key, style in AGREEMENT_STYLE.items():
        sel = drawn & (kinds == key)
        if sel.any():
            ax.scatter(xc[sel], yc[sel], s=40 if key in DISAGREEING or key in _HIGHER_ON_EITHER else 28,
                       marker=style.marker, label=f"{style.label} ({int(sel.sum())})", zorder=3, **_fill(style))
    named = drawn & np.isin(kinds, list(_HIGHER_ON_EITHER))
    if named.sum() > _MAX_LABELS:   # the most extreme only: the rest are in the table beside the figure
        order = np.argsort(-np.where(named, np.fmax(x, y), -np.inf), kind="stable")[:_MAX_LABELS]
        named = np.isin(np.arange(len(rows)), order)
    labels = {str(codes[i]): ax.annotate(codes[i], (xc[i], yc[i]), xytext=(4, 4), textcoords="offset points",
                                         fontsize=_NOTE_SIZE) for i in np.flatnonzero(named)}
    notes = []
    if (drawn & ~inside).any():
        notes.append(f"{int((drawn & ~inside).sum())} trust(s) beyond the axes (not banded, or a ratio of 0) "
                     "drawn on the edge")
    if (~drawn).any():
        notes.append(f"{int((~drawn).sum())} trust(s) without both ratios not drawn")
    if notes:
        ax.text(0.01, 0.99, "; ".join(notes), transform=ax.transAxes, ha="left", va="top", fontsize=_NOTE_SIZE - 1,
                color="#333333")
    legend_below(ax, ncol=2)
    xy = {str(c): (float(a), float(b)) for c, a, b in zip(codes[drawn], xc[drawn], yc[drawn], strict=True)}
    return _Scatter(fig, [str(c) for c in codes[drawn]], [str(k) for k in kinds[drawn]], xy, labels)


def _highlight(drawing: _Scatter, code: str) -> list[Any]:
    """Draw ``code``'s point larger, ringed and labelled in bold (its plain label hidden); the artists added."""
    if code not in drawing.xy:
        raise ValueError(f"highlight {code!r}: no such PROVIDER_CODE with both a SHMI and an HSMR")
    ax = drawing.fig.axes[0]
    (x, y), style = drawing.xy[code], AGREEMENT_STYLE[drawing.kinds[drawing.codes.index(code)]]
    if code in drawing.labels:
        drawing.labels[code].set_visible(False)
    return [ax.scatter([x], [y], s=90, marker=style.marker, zorder=4, **_fill(style, lit=True)),
            ax.scatter([x], [y], s=300, facecolors="none", edgecolors="black", linewidths=1.8, zorder=5),
            ax.annotate(code, (x, y), xytext=(10, -14), textcoords="offset points", fontsize=11, fontweight="bold")]


def shmi_hsmr_figure(rows: pd.DataFrame, *, title: str, highlight: str | None = None) -> tuple[Figure, list[str]]:
    """The SHMI against the HSMR as a Figure, and the trusts labelled (banded higher on either), in row order.

    Arguments as :func:`shmi_hsmr_scatter`; the highlighted trust is labelled
    as the highlight, not among the others.  A ``highlight`` that has no
    point (not among the rows, or without both ratios) is a ``ValueError``.
    """
    drawing = _scatter_drawing(rows, title=title)
    if highlight is not None:
        _highlight(drawing, highlight)
    return drawing.fig, [c for c in drawing.labels if c != highlight]


class ScatterHighlights:
    """One period's :func:`shmi_hsmr_scatter` drawn and laid out once, then written once per trust highlighted.

    What the report's trust pages use: each trust's figure is the national
    one with that trust highlighted, so only the highlight is drawn per trust
    (a third of the time of drawing the whole figure each time).
    ``write(code, stem, title=...)`` gives the same figure as
    ``shmi_hsmr_scatter(rows, stem, title=..., highlight=code)``.
    """

    def __init__(self, rows: pd.DataFrame, *, title: str) -> None:
        self._drawing = _scatter_drawing(rows, title=title)
        self._title = title
        self._drawing.fig.tight_layout()
        self._drawing.fig.set_layout_engine(None)

    def can_highlight(self, code: str) -> bool:
        """Whether ``code`` has a point (both ratios) to highlight."""
        return code in self._drawing.xy

    def write(self, code: str, stem: Path, *, title: str | None = None,
              formats: Sequence[str] = ("png", "svg")) -> list[Path]:
        """Write the figure with ``code`` highlighted (and ``title``) beside ``stem``; the figure is left as it was."""
        ax = self._drawing.fig.axes[0]
        added = _highlight(self._drawing, code)
        ax.set_title(title or self._title)
        try:
            return _write(self._drawing.fig, stem, formats)
        finally:
            for artist in added:
                artist.remove()
            if code in self._drawing.labels:
                self._drawing.labels[code].set_visible(True)
            ax.set_title(self._title)


def shmi_hsmr_scatter(rows: pd.DataFrame, stem: Path, *, title: str, highlight: str | None = None) -> list[Path]:
    """Each trust's SHMI (x) against its HSMR / 100 (y) in one period, shaped by its two bandings.

    ``rows``: :data:`SCATTER_COLUMNS`, one row per trust (``shmi_vs_hsmr.csv``'s
    step-1 rows, or the two trust tables merged); ``HSMR`` on its own scale
    (national 100), drawn divided by 100 so that both axes are ratios of
    observed to expected deaths, 1 meaning as many deaths as expected.

    Both axes are logarithmic, on the same limits: a ratio is a multiple, so
    0.8 and 1.25 (a fifth fewer, a quarter more deaths than expected) lie as
    far from 1 as each other, and a trust whose HSMR is a constant multiple
    of its SHMI lies on a line parallel to the dotted diagonal
    ``HSMR / 100 = SHMI``; solid lines at 1 cut the plane into the four
    quadrants.  The limits are 1/1.6 to 1.6 at least, widened to the trusts
    banded on either indicator; a trust beyond them — one not banded, whose
    few expected deaths give an extreme ratio, or a ratio of 0, which a log
    axis cannot show — is drawn on the edge it passes, and counted in a
    note.  A linear axis would have shown the 0s but squeezed every ratio
    below 1 into less room than those above it.

    Each point's marker shape and colour give the combination of its two
    bandings (:func:`agreement`, :data:`AGREEMENT_STYLE`), never colour
    alone, named in words with their counts in the legend below.  Trusts
    banded higher on either indicator are labelled with their code (the 12
    with the highest ratio when there are more).  ``highlight``: one trust's
    code, drawn larger in its style, ringed in black and labelled in bold
    (the limits stay those of the figure without it, so every trust page
    shows the same plane; :class:`ScatterHighlights`).
    No row with both ratios: the axes with a note saying so.  Figure 8×7.5
    inches.  Returns the paths written (``stem.png``, ``stem.svg``).
    """
    fig, _ = shmi_hsmr_figure(rows, title=title, highlight=highlight)
    return save_figure(fig, stem)


#: What :func:`bridge_plot` reads: one trust's rows of ``shmi_vs_hsmr.csv`` in one period.
BRIDGE_PLOT_COLUMNS = ("STEP", "STEP_NAME", "RATIO", "CHANGE", "LARGEST_CHANGE")


def step_label(step: object, name: object, *, width: int | None = None) -> str:
    """A bridge step as a reader names it: ``2. Deaths in hospital only`` (wrapped at ``width`` characters)."""
    text = str(name)
    number = pd.to_numeric(pd.Series([step]), errors="coerce").iloc[0]
    label = f"{int(number)}. {text[:1].upper()}{text[1:]}" if pd.notna(number) else text[:1].upper() + text[1:]
    return textwrap.fill(label, width) if width else label


def _flags(values: pd.Series) -> np.ndarray:
    return values.astype(str).str.strip().str.lower().isin(["true", "1", "1.0"]).to_numpy()


def _signed(value: float) -> str:
    return f"{value:+.2f}".replace("-", "−")


def _bridge_limits(ratio: np.ndarray) -> tuple[float, float]:
    """The x range of the bridge: its ratios and 1, with room on the right for the labels."""
    known = ratio[np.isfinite(ratio)]
    lo, hi = min(float(known.min()) if known.size else 1.0, 1.0), max(float(known.max()) if known.size else 1.0, 1.0)
    width = max(hi - lo, 0.1)
    return max(0.0, lo - 0.08 * width), hi + 0.55 * width


def bridge_figure(steps: pd.DataFrame, *, title: str) -> Figure:
    """The bridge of one trust as a Figure; arguments as :func:`bridge_plot`."""
    from matplotlib.patches import Patch
    from matplotlib.transforms import blended_transform_factory

    missing = [c for c in BRIDGE_PLOT_COLUMNS if c not in steps.columns]
    if missing:
        raise ValueError(f"bridge_plot: missing column(s) {', '.join(missing)}")
    rows = steps.sort_values("STEP", kind="stable")
    ratio, change, largest = _num(rows, "RATIO"), _num(rows, "CHANGE"), _flags(rows["LARGEST_CHANGE"])
    n = len(rows)
    fig = new_figure(9, 1.7 + 0.62 * max(n, 3))
    ax = fig.add_subplot()
    left, right = _bridge_limits(ratio)
    ax.set_xlim(left, right)
    label_axes(ax, title=title, xlabel="Observed / expected deaths after each step (1 = as many as expected)",
               ylabel="")
    if n == 0:
        ax.set_yticks([])
        ax.text(0.5, 0.5, "No step of the bridge to draw", transform=ax.transAxes, ha="center", va="center",
                fontsize=_NOTE_SIZE + 2)
        return fig
    y = np.arange(n, dtype=float)
    ax.axvline(1.0, color="black", lw=0.8, ls="--", zorder=1)
    at_row = blended_transform_factory(ax.transAxes, ax.transData)
    previous = np.nan
    for i in range(n):
        r = ratio[i]
        if not np.isfinite(r):
            ax.text(0.01, y[i], "no ratio: no deaths expected at this step", transform=at_row, va="center",
                    fontsize=_NOTE_SIZE, style="italic")
            previous = np.nan
            continue
        if np.isfinite(previous):   # the change: a bar from the step before's ratio to this one's
            colour = _HIGHER if r > previous else _LOWER if r < previous else _NEUTRAL
            ax.barh(y[i], abs(r - previous), left=min(r, previous), height=0.56, color=colour, zorder=2,
                    edgecolor="black", linewidth=2.2 if largest[i] else 0.5, hatch="///" if largest[i] else None)
            ax.plot([previous, previous], [y[i - 1], y[i] - 0.28], ":", color="black", lw=1, zorder=2)
            ax.scatter([r], [y[i]], marker="|", s=260, color="black", linewidths=1.6, zorder=3)
        else:   # the first step, or the first after a step without a ratio: a level, not a change
            ax.scatter([r], [y[i]], marker="D", s=60, facecolors=_NEUTRAL, edgecolors="black", linewidths=0.6,
                       zorder=3)
        text = f"{r:.2f}" + (f" ({_signed(change[i])})" if np.isfinite(change[i]) else "")
        ax.annotate(text + (" largest" if largest[i] else ""),
                    (max(r, previous) if np.isfinite(previous) else r, y[i]), xytext=(7, 0),
                    textcoords="offset points", va="center", fontsize=_NOTE_SIZE,
                    fontweight="bold" if largest[i] else "normal",
                    bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})
        previous = r
    ax.set_yticks(y, [step_label(s, name, width=34) for s, name in zip(rows["STEP"], rows["STEP_NAME"], strict=True)])
    for tick, big in zip(ax.get_yticklabels(), largest, strict=True):
        tick.set_fontweight("bold" if big else "normal")
    ax.set_ylim(n - 0.5, -0.5)
    handles = [Patch(facecolor=_NEUTRAL, edgecolor="black", label="The SHMI (◆)"),
               Patch(facecolor=_HIGHER, edgecolor="black", label="Ratio rises"),
               Patch(facecolor=_LOWER, edgecolor="black", label="Ratio falls"),
               Patch(facecolor="white", edgecolor="black", hatch="///", linewidth=2, label="Largest change")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=4, fontsize=_NOTE_SIZE,
              frameon=False)
    return fig


def bridge_plot(steps: pd.DataFrame, stem: Path, *, title: str) -> list[Path]:
    """One trust's bridge from its SHMI to its HSMR: the ratio after each step, as a horizontal waterfall.

    ``steps``: :data:`BRIDGE_PLOT_COLUMNS` of the trust's rows of
    ``shmi_vs_hsmr.csv`` in one period (step 1 the SHMI .. step 5 the HSMR
    / 100; each step changes one setting of the indicator).  One row per
    step, top to bottom, named in words on the left (wrapped, not cut).
    Step 1 is a grey diamond at the SHMI; each later step a bar from the
    step before's ratio to its own (a black tick), vermilion where the ratio
    rises and blue where it falls, hanging from the bar above by a dotted
    line, so the last bar ends at the HSMR / 100.  Each step is labelled
    with its ratio and signed change (direction is never colour alone).
    The step with the largest change (``LARGEST_CHANGE``) is hatched,
    outlined thickly, labelled "largest" and its name set in bold.  A step
    without a ratio (no deaths expected: ``RATIO`` empty) is a note on its
    row, and the next step with a ratio is a level (a diamond) again.

    The axis is linear, a dashed line at 1, and spans the ratios and 1 only,
    not from 0: the bars are changes between ratios, which near 1 are a few
    hundredths and would vanish on an axis from 0.  No rows: the axes with
    a note.  Figure 9 inches wide.  Returns the paths written.
    """
    return save_figure(bridge_figure(steps, title=title), stem)
