"""The SHMI funnel plot (METHOD.md §6): SHMI against expected deaths, and the plots' shared style.

Draws the 95% and 99.8% over-dispersed limits as curves over a grid of expected
deaths and the trusts as points whose **marker shape and colour** give their
banding (:data:`BAND_STYLE`: never colour alone), and labels by id the banded
trusts outside the 99.8% limits.  Trusts reported but not banded (fewer than
``min_expected`` expected deaths; :mod:`shmi_spark.indicator.banding`) are drawn as
hollow grey points, unlabelled, and do not set the vertical scale.

Uses matplotlib's Agg canvas directly (no pyplot, so no global backend state),
imported inside the functions so that importing this module does not load
matplotlib.  :func:`new_figure`, :func:`write_figure` and :data:`BAND_STYLE` are
shared with :mod:`shmi_spark.report.plots`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from shmi_spark.indicator import funnel
from shmi_spark.indicator.banding import BANDING_LABELS, DEFAULT_MIN_EXPECTED, not_banded_label

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "BandStyle", "BAND_STYLE", "BAND_COLOURS", "PNG_DPI", "IMAGE_SUFFIXES", "band_code", "scatter_style",
    "new_figure", "label_axes", "legend_below", "output_paths", "stem_paths", "write_figure",
    "funnel_figure", "funnel_plot",
]


class BandStyle(NamedTuple):
    """How one band is drawn: marker shape, colour (Okabe–Ito), legend label, filled or hollow."""

    marker: str
    colour: str
    label: str
    filled: bool


#: Banding code (1, 2, 3 as in METHOD.md §6; ``None`` not banded) → how it is drawn, in NHS England's words.
BAND_STYLE: dict[int | None, BandStyle] = {
    1: BandStyle("^", "#D55E00", BANDING_LABELS[1], True),   # vermilion, triangle up
    2: BandStyle("o", "#999999", BANDING_LABELS[2], True),   # grey, filled circle
    3: BandStyle("v", "#0072B2", BANDING_LABELS[3], True),   # blue, triangle down
    None: BandStyle("o", "#999999", "Not banded", False),    # grey, hollow circle
}
#: The colour of each banding code (kept for callers of the earlier module).
BAND_COLOURS = {code: style.colour for code, style in BAND_STYLE.items() if code is not None}
PNG_DPI = 100
#: Suffixes taken as a file format (and so replaced) when a path is used as a stem.
IMAGE_SUFFIXES = frozenset({"png", "svg", "svgz", "pdf", "eps", "ps", "jpg", "jpeg", "tif", "tiff", "webp"})

_TITLE_SIZE, _LABEL_SIZE, _TICK_SIZE, _NOTE_SIZE = 13, 11, 10, 9


def band_code(value: Any) -> int | None:
    """A ``BANDING`` value (1, 2, 3, "2", 2.0, NaN, empty) as a key of :data:`BAND_STYLE`."""
    number = pd.to_numeric(pd.Series([value], dtype=object), errors="coerce").astype(float).iloc[0]
    return int(number) if number in (1.0, 2.0, 3.0) else None


def scatter_style(code: int | None, *, label: str | None = None) -> dict[str, Any]:
    """Keyword arguments of ``Axes.scatter`` drawing band ``code`` (marker, fill, colour, label)."""
    style = BAND_STYLE[code]
    fill = {"facecolors": style.colour, "edgecolors": "black", "linewidths": 0.4} if style.filled \
        else {"facecolors": "none", "edgecolors": style.colour, "linewidths": 1.2}
    return {"marker": style.marker, "label": style.label if label is None else label, **fill}


def new_figure(width: float = 9, height: float = 6) -> Figure:
    """A matplotlib Figure on its own Agg canvas (no pyplot), ``PNG_DPI`` dots per inch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=PNG_DPI)
    FigureCanvasAgg(fig)
    return fig


def label_axes(ax: Axes, *, title: str, xlabel: str, ylabel: str) -> None:
    """Title and axis labels at sizes that read at 100% zoom."""
    ax.set_title(title, fontsize=_TITLE_SIZE)
    ax.set_xlabel(xlabel, fontsize=_LABEL_SIZE)
    ax.set_ylabel(ylabel, fontsize=_LABEL_SIZE)
    ax.tick_params(labelsize=_TICK_SIZE)


def legend_below(ax: Axes, *, ncol: int = 3) -> None:
    """The legend in a row or two under the axes, clear of the points."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=ncol, fontsize=_NOTE_SIZE, frameon=False)


def _formats(formats: Sequence[str]) -> list[str]:
    if isinstance(formats, str):
        formats = (formats,)
    out = list(dict.fromkeys(f.lower().lstrip(".") for f in formats))
    if not out:
        raise ValueError("no image format to write")
    return out


def stem_paths(stem: Path | str, formats: Sequence[str]) -> list[Path]:
    """One path per format beside ``stem``: ``stem.png``, ``stem.svg``...

    A suffix of ``stem`` that names an image format (``funnel.png``) is
    replaced; any other (``funnel_2005.06``) is kept and the format appended.
    """
    stem = Path(stem)
    if stem.suffix.lower().lstrip(".") in IMAGE_SUFFIXES:
        stem = stem.with_suffix("")
    return [stem.with_name(f"{stem.name}.{fmt}") for fmt in _formats(formats)]


def output_paths(path: Path | str, formats: Sequence[str]) -> list[Path]:
    """The files :func:`funnel_plot` writes: ``path`` itself for one format if it has a suffix, else stems.

    One format and a suffix: ``path`` exactly (``--plot out.img`` writes a PNG
    named out.img).  Otherwise ``path`` is a stem (:func:`stem_paths`).
    """
    path = Path(path)
    fmts = _formats(formats)
    return [path] if len(fmts) == 1 and path.suffix else stem_paths(path, fmts)


def write_figure(fig: Figure, paths: Sequence[Path], formats: Sequence[str]) -> list[Path]:
    """Lay ``fig`` out tightly and write it to each of ``paths`` in the matching format (PNG at 100 dpi)."""
    fig.tight_layout()
    written = []
    for path, fmt in zip(paths, _formats(formats), strict=True):
        meta = {"Date": None} if fmt in ("svg", "svgz", "pdf") else None   # same figure, same bytes
        fig.savefig(path, format=fmt, dpi=PNG_DPI, metadata=meta)
        written.append(Path(path))
    return written


def _numbers(rows: pd.DataFrame, col: str) -> np.ndarray:
    return pd.to_numeric(rows[col], errors="coerce").to_numpy(dtype=float)


def _good_rows(df: pd.DataFrame, expected_col: str) -> tuple[pd.DataFrame, np.ndarray]:
    if "SHMI" not in df.columns:
        raise ValueError("no SHMI column to plot (expects band_table output)")
    rows = df[pd.to_numeric(df["SHMI"], errors="coerce").notna()]
    if rows.empty:
        raise ValueError("no rows with a SHMI to plot")
    return rows, _numbers(rows, expected_col)


def _outside_998(rows: pd.DataFrame, shmi: np.ndarray, e: np.ndarray, tau2: float) -> np.ndarray:
    """SHMI above the 99.8% upper or below the 99.8% lower limit (the rows' limits, else from τ²)."""
    lo, hi = funnel.od_limits(e, tau2, funnel.Z_998)
    if "OD998_LL" in rows.columns:
        lo = np.where(np.isfinite(_numbers(rows, "OD998_LL")), _numbers(rows, "OD998_LL"), lo)
    if "OD998_UL" in rows.columns:
        hi = np.where(np.isfinite(_numbers(rows, "OD998_UL")), _numbers(rows, "OD998_UL"), hi)
    outside = (shmi > hi) | (shmi < lo)
    if "OUTLIER_998" in rows.columns:
        outside |= rows["OUTLIER_998"].astype(str).str.lower().isin(["true", "1", "1.0"]).to_numpy()
    return outside


def _draw_limits(ax: Axes, e: np.ndarray, tau2: float) -> np.ndarray:
    grid = np.linspace(max(e.min() * 0.5, 1e-3), e.max() * 1.05, 400)
    for z_alpha, style, name in ((funnel.Z_95, "--", "95%"), (funnel.Z_998, "-", "99.8%")):
        lo, hi = funnel.od_limits(grid, tau2, z_alpha)
        ax.plot(grid, lo, style, color="black", lw=1, label=f"{name} limits (over-dispersed)")
        ax.plot(grid, hi, style, color="black", lw=1)
    ax.axhline(1.0, color="black", lw=0.6, alpha=0.5)
    return grid


def _draw_highlight(ax: Axes, x: float, y: float, code: int | None, name: str) -> None:
    ax.scatter([x], [y], s=70, zorder=4, **scatter_style(code, label="_nolegend_"))
    ax.scatter([x], [y], s=260, facecolors="none", edgecolors="black", linewidths=1.8, zorder=5,
               label=f"{name} (highlighted)")
    ax.annotate(name, (x, y), xytext=(9, -12), textcoords="offset points", fontsize=_LABEL_SIZE,
                fontweight="bold")


def funnel_figure(df: pd.DataFrame, title: str, *, id_col: str = "PROVIDER", expected_col: str = "EXPECTED",
                  observed_col: str = "OBSERVED", tau2: float | None = None,
                  trim_fraction: float = funnel.DEFAULT_TRIM, min_expected: float = DEFAULT_MIN_EXPECTED,
                  highlight: str | None = None) -> tuple[Figure, list[str]]:
    """The funnel plot as a Figure, and the ids labelled for being outside the 99.8% limits.

    Arguments as :func:`funnel_plot`.  A ``highlight`` not among the rows with
    a SHMI is a ``ValueError``.
    """
    rows, e = _good_rows(df, expected_col)
    shmi = _numbers(rows, "SHMI")
    ids = rows[id_col].astype(str).to_numpy()
    if tau2 is None:
        o = _numbers(rows, observed_col)
        tau2 = funnel.funnel_limits(o, e, trim_fraction, ranked=e >= min_expected).tau2
    codes = [band_code(v) for v in rows["BANDING"]] if "BANDING" in rows.columns else [2] * len(rows)
    banded = np.array([c is not None for c in codes])
    lit = ids == highlight if highlight is not None else np.zeros(len(rows), dtype=bool)
    if highlight is not None and not lit.any():
        raise ValueError(f"highlight {highlight!r}: no such {id_col} with a SHMI to plot")
    scale = shmi[banded | lit] if (banded | lit).any() else shmi

    fig = new_figure(9, 6)
    ax = fig.add_subplot()
    grid = _draw_limits(ax, e, tau2)
    for code in BAND_STYLE:
        sel = np.array([c == code for c in codes])
        if sel.any():
            label = not_banded_label(min_expected) if code is None else None
            ax.scatter(e[sel], shmi[sel], s=26, zorder=3, **scatter_style(code, label=label))
    outside = _outside_998(rows, shmi, e, tau2) & banded & ~lit
    for x, y, name in zip(e[outside], shmi[outside], ids[outside], strict=True):
        ax.annotate(name, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=_NOTE_SIZE)
    for i in np.flatnonzero(lit):
        _draw_highlight(ax, e[i], shmi[i], codes[i], ids[i])

    ax.set_ylim(min(0.5, scale.min() * 0.9), max(1.6, scale.max() * 1.1))
    ax.set_xlim(0, grid[-1])
    label_axes(ax, title=title, xlabel="Expected deaths", ylabel="SHMI (observed / expected deaths)")
    legend_below(ax)
    return fig, [str(v) for v in ids[outside]]


def funnel_plot(df: pd.DataFrame, path, title: str, *, id_col: str = "PROVIDER",
                expected_col: str = "EXPECTED", observed_col: str = "OBSERVED",
                tau2: float | None = None, trim_fraction: float = funnel.DEFAULT_TRIM,
                min_expected: float = DEFAULT_MIN_EXPECTED, highlight: str | None = None,
                formats: tuple[str, ...] = ("png",)) -> list[Path]:
    """Draw the funnel plot of a :func:`shmi_spark.indicator.banding.band_table` output; return the files written.

    ``tau2``: the between-trust variance behind the limits (the ``tau2`` of
    band_table's summary); if ``None`` it is re-estimated from ``observed_col``
    and ``expected_col`` of the plotted rows with ``trim_fraction``, ranking
    only those with at least ``min_expected`` expected deaths (METHOD.md §6).
    Banded trusts above the 99.8% upper limit (or flagged ``OUTLIER_998``) or
    below the 99.8% lower limit are labelled with their ``id_col``.

    ``highlight``: the ``id_col`` of one trust, drawn larger with a black ring
    and labelled whatever its band.  ``formats``: with one format and a
    ``path`` that has a suffix, ``path`` is the file (``funnel_plot(df,
    "f.png", ...)``); otherwise ``path`` is a stem and one file per format is
    written beside it (``f.png``, ``f.svg``; see :func:`output_paths`).
    """
    paths = output_paths(path, formats)
    fig, _ = funnel_figure(df, title, id_col=id_col, expected_col=expected_col, observed_col=observed_col,
                           tau2=tau2, trim_fraction=trim_fraction, min_expected=min_expected,
                           highlight=highlight)
    return write_figure(fig, paths, formats)
