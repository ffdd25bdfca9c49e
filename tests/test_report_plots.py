"""The report's plots and the funnel plot's options, on small hand-built tables (no Spark)."""

from __future__ import annotations

import math
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shmi_spark.indicator.banding import BANDING_LABELS, band_table
from shmi_spark.indicator.plots import (
    BAND_STYLE,
    band_code,
    funnel_figure,
    funnel_plot,
    output_paths,
    stem_paths,
)
from shmi_spark.report.plots import (
    AGREEMENT_STYLE,
    DISAGREEING,
    DRILLDOWN_COLUMNS,
    ScatterHighlights,
    agreement,
    bridge_figure,
    bridge_plot,
    c_statistic_plot,
    calibration_plot,
    diffsum_figure,
    diffsum_plot,
    drilldown_plot,
    drilldown_table,
    save_figure,
    shmi_hsmr_figure,
    shmi_hsmr_scatter,
    step_label,
    trend_plot,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _is_svg(path: Path) -> bool:
    return ET.parse(path).getroot().tag.rsplit("}", 1)[-1] == "svg"


def _assert_png_and_svg(paths: list[Path], stem: Path) -> None:
    assert paths == [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    width, height = _png_size(paths[0])
    assert width > 0 and height > 0
    assert _is_svg(paths[1])


# ------------------------------------------------------------------ the funnel plot

@pytest.fixture(scope="module")
def banded() -> tuple[pd.DataFrame, float]:
    """band_table output with every band: R000 far above, R001 far below, R002 not banded."""
    rng = np.random.default_rng(5)
    n = 40
    e = np.round(rng.uniform(300, 3000, n), 2)
    o = rng.poisson(e).astype(float)
    o[0], o[1] = round(e[0] * 1.6), round(e[1] * 0.5)
    e[2], o[2] = 0.4, 1
    df = pd.DataFrame({"PROVIDER": [f"R{i:03d}" for i in range(n)], "OBSERVED": o, "EXPECTED": e})
    out, summary = band_table(df, "PROVIDER", "OBSERVED", "EXPECTED")
    return out, summary["tau2"]


def test_banded_fixture_has_every_band(banded):
    out, _ = banded
    codes = [band_code(v) for v in out["BANDING"]]
    assert codes[0] == 1 and codes[1] == 3 and codes[2] is None and 2 in codes[3:]


def _band_collections(fig) -> dict[str, object]:
    ax = fig.axes[0]
    return {c.get_label(): c for c in ax.collections}


def test_funnel_markers_differ_by_band(banded):
    out, tau2 = banded
    fig, _ = funnel_figure(out, "t", tau2=tau2)
    coll = _band_collections(fig)
    shapes = {}
    for code in (1, 2, 3):
        label = BANDING_LABELS[code]
        assert label in coll, f"no points drawn for {label!r}"
        shapes[code] = coll[label].get_paths()[0].vertices.round(6).tobytes()
    assert len(set(shapes.values())) == 3
    hollow = coll["Not banded: fewer than 1 expected death"]
    assert hollow.get_facecolors().size == 0             # no fill: told apart without colour
    assert coll[BANDING_LABELS[2]].get_facecolors().size > 0
    assert BAND_STYLE[1].marker != BAND_STYLE[2].marker != BAND_STYLE[3].marker != BAND_STYLE[1].marker


def test_funnel_labels_the_998_outliers_and_not_the_unbanded(banded):
    out, tau2 = banded
    fig, labelled = funnel_figure(out, "t", tau2=tau2)
    shmi = out["SHMI"].astype(float)
    expected = out.loc[out["BANDING"].notna() & ((shmi > out["OD998_UL"]) | (shmi < out["OD998_LL"])),
                       "PROVIDER"].tolist()
    assert "R000" in labelled and "R001" in labelled and "R002" not in labelled
    assert sorted(labelled) == sorted(expected)
    assert sorted(t.get_text() for t in fig.axes[0].texts) == sorted(labelled)


def test_funnel_highlight_and_two_formats(tmp_path, banded):
    out, tau2 = banded
    fig, labelled = funnel_figure(out, "SHMI funnel plot, 2005/06", tau2=tau2, highlight="R000")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts.count("R000") == 1 and "R000" not in labelled   # labelled once, as the highlight
    assert "R000 (highlighted)" in _band_collections(fig)
    # an as-expected trust is labelled too when highlighted
    as_expected = out.loc[out["BANDING"] == 2, "PROVIDER"].iloc[0]
    fig2, _ = funnel_figure(out, "t", tau2=tau2, highlight=as_expected)
    assert as_expected in [t.get_text() for t in fig2.axes[0].texts]
    paths = funnel_plot(out, tmp_path / "funnel", "SHMI funnel plot, 2005/06", tau2=tau2, highlight="R000",
                        formats=("png", "svg"))
    _assert_png_and_svg(paths, tmp_path / "funnel")
    with pytest.raises(ValueError, match="R999"):
        funnel_plot(out, tmp_path / "x.png", "t", tau2=tau2, highlight="R999")


def test_funnel_plot_single_format_writes_path_as_given(tmp_path, banded):
    out, tau2 = banded
    path = tmp_path / "funnel.img"
    assert funnel_plot(out, path, "t", tau2=tau2) == [path]
    assert _png_size(path)[0] == 900            # 9 inches at 100 dpi
    assert funnel_plot(out, tmp_path / "bare", "t", tau2=tau2) == [tmp_path / "bare.png"]
    assert (tmp_path / "bare.png").read_bytes()[:8] == PNG_SIGNATURE
    svg = funnel_plot(out, tmp_path / "f.svg", "t", tau2=tau2, formats=("svg",))
    assert svg == [tmp_path / "f.svg"] and _is_svg(svg[0])


@pytest.mark.parametrize("value, code", [(1, 1), ("2", 2), (3.0, 3), (pd.NA, None), (np.nan, None), ("", None),
                                         (4, None), (None, None)])
def test_band_code(value, code):
    assert band_code(value) == code


def test_output_and_stem_paths():
    assert output_paths("a/f.png", ("png",)) == [Path("a/f.png")]
    assert output_paths("a/f", ("png",)) == [Path("a/f.png")]
    assert output_paths("a/f.png", ("png", "svg")) == [Path("a/f.png"), Path("a/f.svg")]
    assert stem_paths("a/f_2005.06", ("png", "svg")) == [Path("a/f_2005.06.png"), Path("a/f_2005.06.svg")]
    assert stem_paths("a/f.SVG", ["png", "png"]) == [Path("a/f.png")]
    with pytest.raises(ValueError):
        stem_paths("a/f", ())


def test_save_figure_writes_only_the_formats_asked(tmp_path):
    from shmi_spark.indicator.plots import new_figure

    fig = new_figure(4, 3)
    fig.add_subplot().plot([0, 1], [0, 1])
    assert save_figure(fig, tmp_path / "one", formats=("png",)) == [tmp_path / "one.png"]
    assert _png_size(tmp_path / "one.png") == (400, 300) and not (tmp_path / "one.svg").exists()


# ------------------------------------------------------------------ trend

def test_trend_plot(tmp_path):
    rows = pd.DataFrame({
        "PERIOD": ["2003/04", "2004/05", "2005/06", "2006/07"],
        "SHMI": [1.02, 1.21, np.nan, 0.8],
        "OD95_LL": [0.9, 0.9, 0.91, 0.88], "OD95_UL": [1.1, 1.1, 1.09, 1.12],
        "OD998_LL": [0.85, 0.85, 0.86, 0.83], "OD998_UL": [1.17, 1.17, 1.16, 1.2],
        "BANDING": [2, 1, np.nan, 3],
    })
    paths = trend_plot(rows, tmp_path / "trend", title="R0A: SHMI by period")
    _assert_png_and_svg(paths, tmp_path / "trend")
    assert _png_size(paths[0])[0] <= 800
    with pytest.raises(ValueError, match="BANDING"):
        trend_plot(rows.drop(columns="BANDING"), tmp_path / "bad", title="t")


# ------------------------------------------------------------------ drill-down

def _groups() -> pd.DataFrame:
    return pd.DataFrame({
        "LABEL": ["A", "B", "C", "D", "E"],
        "OBSERVED": [10, 0, 3, 4, 20],
        "EXPECTED": [5.0, 2.0, 0.0, 4.5, 28.0],
    })


def test_drilldown_table_order_and_selection():
    full = drilldown_table(_groups())
    assert list(full.columns) == DRILLDOWN_COLUMNS
    assert full["LABEL"].tolist() == ["A", "C", "D", "B", "E"]         # O − E: 5, 3, −0.5, −2, −8
    assert full["O_MINUS_E"].tolist() == [5.0, 3.0, -0.5, -2.0, -8.0]
    top3 = drilldown_table(_groups(), top=3)                           # largest |O − E|: E, A, C
    assert top3["LABEL"].tolist() == ["A", "C", "E"]
    tie = pd.DataFrame({"LABEL": ["minus", "plus"], "OBSERVED": [0, 4], "EXPECTED": [2.0, 2.0]})
    assert drilldown_table(tie, top=1)["LABEL"].tolist() == ["plus"]   # a tie goes to the excess


def test_drilldown_table_intervals_by_hand():
    from scipy.stats import chi2

    t = drilldown_table(_groups()).set_index("LABEL")
    # O = 10, E = 5: ratio 2; the exact 95% interval for a count of 10 is (4.7954, 18.3904), over 5
    assert t.loc["A", "RATIO"] == 2.0
    assert t.loc["A", "RATIO_LL95"] == pytest.approx(4.7954 / 5, abs=1e-4)
    assert t.loc["A", "RATIO_UL95"] == pytest.approx(18.3904 / 5, abs=1e-4)
    assert t.loc["A", "RATIO_LL95"] == pytest.approx(chi2.ppf(0.025, 20) / 2 / 5, rel=1e-12)
    # O = 0, E = 2: lower 0, upper −ln(0.025) / 2
    assert t.loc["B", "RATIO"] == 0.0 and t.loc["B", "RATIO_LL95"] == 0.0
    assert t.loc["B", "RATIO_UL95"] == pytest.approx(-math.log(0.025) / 2, rel=1e-9)
    # E = 0: no ratio
    assert t.loc["C", ["RATIO", "RATIO_LL95", "RATIO_UL95"]].isna().all()


def test_drilldown_table_keeps_spells_and_rejects_bad_counts():
    g = _groups().assign(SPELLS=[100, 50, 20, 80, 900])
    t = drilldown_table(g)
    assert list(t.columns) == DRILLDOWN_COLUMNS[:3] + ["SPELLS"] + DRILLDOWN_COLUMNS[3:]
    assert t.set_index("LABEL").loc["E", "SPELLS"] == 900
    with pytest.raises(ValueError, match="EXPECTED"):
        drilldown_table(_groups().assign(EXPECTED=[1.0, -1.0, 0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="top"):
        drilldown_table(_groups(), top=0)


def test_drilldown_plot(tmp_path):
    table = drilldown_plot(_groups(), tmp_path / "drill", title="R0A, 2005/06: deaths by group", top=4)
    pd.testing.assert_frame_equal(table, drilldown_table(_groups(), top=4))
    _assert_png_and_svg(table.attrs["paths"], tmp_path / "drill")


# ------------------------------------------------------------------ model quality

def test_c_statistic_plot(tmp_path):
    n = 30
    rng = np.random.default_rng(2)
    quality = pd.DataFrame({
        "DIAG_GROUP": [float(i) for i in range(1, n + 1)] + [np.nan],
        "LABEL": [f"Group {i}" for i in range(1, n + 1)] + ["All groups"],
        "SPELLS": list(rng.integers(20, 50_000, n)) + [400_000],
        "DEATHS": list(rng.integers(0, 500, n)) + [9_000],
        "C_STATISTIC": list(rng.uniform(0.55, 0.95, n)) + [0.91],
    })
    quality.loc[3, "C_STATISTIC"] = np.nan
    paths = c_statistic_plot(quality, tmp_path / "cstat", title="C statistic by diagnosis group, 2005/06")
    _assert_png_and_svg(paths, tmp_path / "cstat")


def test_calibration_plot(tmp_path):
    spells = np.full(10, 10_000.0)
    expected = spells * np.geomspace(0.001, 0.2, 10)
    observed = np.round(expected * 1.05)
    observed[0] = 0                                                     # a tenth with no deaths is drawn
    expected[1] = 0.0                                                   # a tenth at the limit 0: no O/E
    deciles = pd.DataFrame({"DECILE": range(1, 11), "SPELLS": spells, "OBSERVED": observed, "EXPECTED": expected})
    paths = calibration_plot(deciles, tmp_path / "calib", title="Calibration, 2005/06")
    _assert_png_and_svg(paths, tmp_path / "calib")
    with pytest.raises(ValueError, match="no decile"):
        calibration_plot(deciles.assign(SPELLS=0.0), tmp_path / "none", title="t")


# ------------------------------------------------------------------ diffsum

def _diff() -> pd.DataFrame:
    """diffsum's output columns: R1 +8%, R2 −6%, R3 +2%, R4 exactly +5% (on the line: inside), R5 −20%."""
    a = np.array([108.0, 94.0, 1020.0, 1050.0, 400.0])
    b = np.array([100.0, 100.0, 1000.0, 1000.0, 500.0])
    mean, diff = (a + b) / 2, a - b
    mean[3], diff[3] = 1000.0, 50.0
    return pd.DataFrame({"PROVIDER_CODE": ["R1", "R2", "R3", "R4", "R5"], "EXPECTED_A": a, "EXPECTED_B": b,
                         "MEAN": mean, "DIFF": diff, "DIFF_PCT": diff / mean, "ABOVE": diff > 0.05 * mean,
                         "BELOW": diff < -0.05 * mean, "OUTSIDE": np.abs(diff) > 0.05 * mean})


def test_diffsum_labels_exactly_the_trusts_outside(tmp_path):
    diff = _diff()
    fig, labelled = diffsum_figure(diff, title="t", label_a="Age and sex", label_b="Final model")
    assert labelled == ["R1", "R2", "R5"] == diff.loc[diff["OUTSIDE"], "PROVIDER_CODE"].tolist()
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["R1", "R2", "R5"]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "Age and sex more than 5% above Final model" in legend
    _, wide = diffsum_figure(diff, title="t", label_a="A", label_b="B", lines=0.10)
    assert wide == ["R5"]                                   # the flags follow the lines drawn
    _, keyed = diffsum_figure(diff.rename(columns={"PROVIDER_CODE": "PROCODE3"}), title="t", label_a="A",
                              label_b="B", key="PROCODE3")
    assert keyed == labelled
    paths = diffsum_plot(diff, tmp_path / "diffsum", title="Diffsum", label_a="A", label_b="B")
    _assert_png_and_svg(paths, tmp_path / "diffsum")
    with pytest.raises(ValueError, match="PROVIDER_CODE"):
        diffsum_figure(diff.drop(columns="PROVIDER_CODE"), title="t", label_a="A", label_b="B")


# ------------------------------------------------------------------ SHMI against HSMR

@pytest.mark.parametrize("shmi, hsmr, key", [
    (1, 1, "both_higher"), (2, 2, "both_expected"), (3, 3, "both_lower"), (1, 3, "opposite"), (3, 1.0, "opposite"),
    (1, 2, "shmi_higher"), (1, np.nan, "shmi_higher"), ("2", 1, "hsmr_higher"), (np.nan, 1, "hsmr_higher"),
    (3, 2, "shmi_lower"), (3, None, "shmi_lower"), (2, 3, "hsmr_lower"), (np.nan, 3, "hsmr_lower"),
    (2, np.nan, "not_banded"), (np.nan, 2, "not_banded"), (None, np.nan, "not_banded")])
def test_agreement(shmi, hsmr, key):
    assert agreement(shmi, hsmr) == key


def test_agreement_styles_tell_every_combination_apart_without_colour():
    shapes = {(style.marker, style.filled) for style in AGREEMENT_STYLE.values()}
    assert len(shapes) == len(AGREEMENT_STYLE)                          # shape (and fill), not colour alone
    assert AGREEMENT_STYLE["both_higher"].marker == BAND_STYLE[1].marker   # agreement drawn as in the funnel plot
    assert AGREEMENT_STYLE["both_lower"].marker == BAND_STYLE[3].marker
    assert AGREEMENT_STYLE["not_banded"].filled is False
    assert DISAGREEING == {"shmi_higher", "hsmr_higher", "opposite", "shmi_lower", "hsmr_lower"}


def _both() -> pd.DataFrame:
    """One trust per combination of bandings, plus one without an HSMR and one with a SHMI of 0 (not banded)."""
    rows = [("R01", 1.4, 1, 135.0, 1), ("R02", 1.3, 1, 104.0, 2), ("R03", 1.02, 2, 131.0, 1), ("R04", 1.35, 1, 70.0, 3),
            ("R05", 1.0, 2, 99.0, 2), ("R06", 0.75, 3, 97.0, 2), ("R07", 0.98, 2, 72.0, 3), ("R08", 0.7, 3, 74.0, 3),
            ("R09", 1.1, np.nan, 95.0, 2), ("R10", 0.9, 2, np.nan, np.nan), ("R11", 0.0, np.nan, 300.0, np.nan)]
    return pd.DataFrame(rows, columns=["PROVIDER_CODE", "SHMI", "SHMI_BANDING", "HSMR", "HSMR_BANDING"])


def test_shmi_hsmr_scatter_draws_each_combination_in_words(tmp_path):
    fig, labelled = shmi_hsmr_figure(_both(), title="SHMI and HSMR, 2009/10")
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    for key in ("both_higher", "shmi_higher", "hsmr_higher", "opposite", "both_expected", "shmi_lower",
                "hsmr_lower", "both_lower"):
        assert f"{AGREEMENT_STYLE[key].label} (1)" in legend, key
    assert f"{AGREEMENT_STYLE['not_banded'].label} (2)" in legend      # R09 and R11; R10 has no HSMR
    assert labelled == ["R01", "R02", "R03", "R04"]                     # banded higher on either
    notes = [t.get_text() for t in ax.texts]
    assert any("1 trust(s) without both ratios not drawn" in t for t in notes)
    assert any("1 trust(s) beyond the axes" in t for t in notes)      # R11: a SHMI of 0 on a log axis
    assert ax.get_xscale() == ax.get_yscale() == "log" and ax.get_xlim() == ax.get_ylim()
    assert "1" in [t.get_text() for t in ax.get_xticklabels()]
    paths = shmi_hsmr_scatter(_both(), tmp_path / "scatter", title="SHMI and HSMR, 2009/10")
    _assert_png_and_svg(paths, tmp_path / "scatter")


def test_shmi_hsmr_scatter_highlight(tmp_path):
    fig, labelled = shmi_hsmr_figure(_both(), title="t", highlight="R04")
    texts = [t.get_text() for t in fig.axes[0].texts if t.get_visible()]
    assert texts.count("R04") == 1 and "R04" not in labelled         # labelled once, as the highlight
    bold = [t for t in fig.axes[0].texts if t.get_text() == "R04" and t.get_visible()]
    assert bold[0].get_fontweight() == "bold"
    fig2, _ = shmi_hsmr_figure(_both(), title="t", highlight="R05")  # an as-expected trust is labelled too
    assert "R05" in [t.get_text() for t in fig2.axes[0].texts]
    for code in ("R10", "R99"):                                          # no HSMR, no such trust
        with pytest.raises(ValueError, match=code):
            shmi_hsmr_figure(_both(), title="t", highlight=code)
    paths = shmi_hsmr_scatter(_both(), tmp_path / "lit", title="t", highlight="R04")
    _assert_png_and_svg(paths, tmp_path / "lit")


def test_scatter_highlights_write_each_trust_and_restore_the_figure(tmp_path):
    highlights = ScatterHighlights(_both(), title="SHMI and HSMR, 2009/10")
    assert highlights.can_highlight("R04") and not highlights.can_highlight("R10")
    first = highlights.write("R04", tmp_path / "a", title="SHMI and HSMR, 2009/10: R04")
    _assert_png_and_svg(first, tmp_path / "a")
    highlights.write("R01", tmp_path / "b", title="SHMI and HSMR, 2009/10: R01")
    again = highlights.write("R04", tmp_path / "c", title="SHMI and HSMR, 2009/10: R04")
    assert again[0].read_bytes() == first[0].read_bytes()              # each highlight is removed after its write
    assert (tmp_path / "b.png").read_bytes() != first[0].read_bytes()
    assert _png_size(first[0]) == _png_size(
        shmi_hsmr_scatter(_both(), tmp_path / "d", title="SHMI and HSMR, 2009/10: R04", highlight="R04")[0])
    with pytest.raises(ValueError, match="R10"):
        highlights.write("R10", tmp_path / "e")


def test_shmi_hsmr_scatter_of_an_empty_period(tmp_path):
    empty = _both().iloc[:0]
    fig, labelled = shmi_hsmr_figure(empty, title="t")
    assert labelled == [] and any("No trust" in t.get_text() for t in fig.axes[0].texts)
    _assert_png_and_svg(shmi_hsmr_scatter(empty, tmp_path / "empty", title="t"), tmp_path / "empty")
    no_hsmr = _both().assign(HSMR=np.nan)                                # trusts, but none with an HSMR
    _assert_png_and_svg(shmi_hsmr_scatter(no_hsmr, tmp_path / "none", title="t"), tmp_path / "none")
    with pytest.raises(ValueError, match="HSMR_BANDING"):
        shmi_hsmr_figure(_both().drop(columns="HSMR_BANDING"), title="t")


def _bridge(ratios, largest: int) -> pd.DataFrame:
    names = ["SHMI", "deaths in hospital only", "the HSMR's diagnosis groups", "superspells instead of provider spells",
             "the HSMR's case mix (palliative care, prior emergency admissions, source, deprivation)"]
    ratio = pd.Series(ratios, dtype=float)
    return pd.DataFrame({"PERIOD": "2009/10", "PROVIDER_CODE": "R01", "STEP": range(1, 6), "STEP_NAME": names,
                         "OBSERVED": [120, 80, 70, 66, 66], "EXPECTED": [100.0, 80.0, 70.0, 60.0, 55.0],
                         "RATIO": ratio, "CHANGE": ratio.diff(), "LARGEST_CHANGE": [s == largest for s in range(1, 6)]})


def test_step_label():
    assert step_label(2, "deaths in hospital only") == "2. Deaths in hospital only"
    wrapped = step_label(5, "the HSMR's case mix (palliative care, prior emergency admissions, source)", width=30)
    assert wrapped.startswith("5. The HSMR's case mix") and "\n" in wrapped and "…" not in wrapped
    assert max(len(line) for line in wrapped.splitlines()) <= 30


def test_bridge_plot(tmp_path):
    steps = _bridge([1.2, 1.0, 1.0, 1.1, 1.2], largest=2)
    fig = bridge_figure(steps.sample(frac=1, random_state=1), title="R01: from the SHMI to the HSMR")  # any order
    ax = fig.axes[0]
    ticks = [t.get_text().replace("\n", " ") for t in ax.get_yticklabels()]
    assert ticks[0] == "1. SHMI" and ticks[1] == "2. Deaths in hospital only" and ticks[4].startswith("5. The HSMR")
    assert [t.get_fontweight() for t in ax.get_yticklabels()] == ["normal", "bold", "normal", "normal", "normal"]
    labels = [t.get_text() for t in ax.texts]
    assert "1.00 (−0.20) largest" in labels and "1.20" in labels and "1.10 (+0.10)" in labels
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "Largest change" in legend and "Ratio rises" in legend and "Ratio falls" in legend
    _assert_png_and_svg(bridge_plot(steps, tmp_path / "bridge", title="t"), tmp_path / "bridge")
    with pytest.raises(ValueError, match="LARGEST_CHANGE"):
        bridge_plot(steps.drop(columns="LARGEST_CHANGE"), tmp_path / "bad", title="t")


def test_bridge_plot_with_a_step_without_a_ratio(tmp_path):
    steps = _bridge([0.9, np.nan, 1.1, 1.15, 1.3], largest=5)          # no deaths expected at step 2
    steps["LARGEST_CHANGE"] = steps["LARGEST_CHANGE"].map({True: "True", False: "False"})  # as read from a CSV
    fig = bridge_figure(steps, title="t")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "no ratio: no deaths expected at this step" in texts
    assert "1.10" in texts                                             # step 3: a level again, no change to show
    assert "1.30 (+0.15) largest" in texts
    _assert_png_and_svg(bridge_plot(steps, tmp_path / "gap", title="t"), tmp_path / "gap")
    none = _bridge([np.nan] * 5, largest=0)
    _assert_png_and_svg(bridge_plot(none, tmp_path / "none", title="t"), tmp_path / "none")


def test_bridge_plot_of_an_empty_period(tmp_path):
    empty = _bridge([1.0] * 5, largest=0).iloc[:0]
    fig = bridge_figure(empty, title="t")
    assert any("No step" in t.get_text() for t in fig.axes[0].texts)
    _assert_png_and_svg(bridge_plot(empty, tmp_path / "empty", title="t"), tmp_path / "empty")


def test_report_plots_import_neither_matplotlib_nor_spark():
    code = ("import sys; import shmi_spark.report.plots; "
            "print(','.join(m for m in ('pyspark', 'scipy.stats', 'matplotlib') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
