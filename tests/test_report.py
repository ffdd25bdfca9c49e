"""The run report (issue 15): written by the run, read only from the run's files, complete, offline,
suppressed as the publication files are, and rewritable by ``shmi report`` without breaking the run folder."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from shmi_spark.cli import main
from shmi_spark.report.build import REPORT_MARKER, write_report
from shmi_spark.report.data import period_slug
from shmi_spark.report.plots import DISAGREEING, agreement

pytestmark = pytest.mark.slow


class Page(HTMLParser):
    """The parts of a report page the tests read: links, images, trust rows per period, band cells."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.links: list[str] = []
        self.images: list[tuple[str, str]] = []
        self.rows: dict[str, list[dict]] = {}
        self.band_cells: list[str] = []
        self._period: str | None = None
        self._row: dict | None = None
        self._cell: list[str] | None = None
        self._band = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag == "img":
            self.images.append((a.get("src", ""), a.get("alt", "")))
        if tag == "section" and "period" in (a.get("class") or "").split():
            self._period = a["data-period"]
            self.rows[self._period] = []
        if tag == "tr" and "data-code" in a and self._period is not None:
            self._row = {"code": a["data-code"], "band": a["data-band"], "cells": []}
        if tag == "td":
            self._cell = []
            self._band = "band" in (a.get("class") or "").split()

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            text = "".join(self._cell).strip()
            if self._row is not None:
                self._row["cells"].append(text)
            if self._band:
                self.band_cells.append(text)
            self._cell = None
        if tag == "tr" and self._row is not None:
            self.rows[self._period].append(self._row)  # type: ignore[index]
            self._row = None
        if tag == "section":
            self._period = None


def _page(path: Path) -> Page:
    return Page(path.read_text(encoding="utf-8"))


class Tables(HTMLParser):
    """Every table of a page by its class: its attributes and its rows, each a list of (text, attributes) cells."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: dict[str, list[tuple[dict, list[list[tuple[str, dict]]]]]] = {}
        self.paragraphs: dict[str, list[str]] = {}
        self._rows: list | None = None
        self._cell: tuple[list[str], dict] | None = None
        self._p: tuple[str, list[str]] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._rows = []
            self.tables.setdefault(a.get("class") or "", []).append((a, self._rows))
        elif tag == "tr" and self._rows is not None:
            self._rows.append([])
        elif tag in ("td", "th") and self._rows is not None:
            self._cell = ([], a)
        elif tag == "p" and a.get("class"):
            self._p = (a["class"], [])

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[0].append(data)
        if self._p is not None:
            self._p[1].append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._rows:
            self._rows[-1].append(("".join(self._cell[0]).strip(), self._cell[1]))
            self._cell = None
        elif tag == "table":
            self._rows = None
        elif tag == "p" and self._p is not None:
            self.paragraphs.setdefault(self._p[0], []).append("".join(self._p[1]).strip())
            self._p = None


def _tables(path: Path) -> Tables:
    return Tables(path.read_text(encoding="utf-8"))


def _assert_links_resolve(pages: list[Path]) -> set[Path]:
    """Every link and image of ``pages`` is a file of the report (none outside it), every image has an alt text;
    the images shown."""
    shown = set()
    for html in pages:
        p = _page(html)
        for ref in [*p.links, *(src for src, _ in p.images)]:
            if ref.startswith("#"):
                continue
            assert not re.match(r"^[a-z]+:", ref), f"{html.name} refers outside the report: {ref}"
            assert (html.parent / ref).resolve().is_file(), f"{html.name}: broken link {ref}"
        assert all(alt for _, alt in p.images), f"{html.name}: an image without a text alternative"
        shown |= {(html.parent / src).resolve() for src, _ in p.images}
    return shown


@pytest.fixture(scope="module")
def hsmr_report(run_all, tmp_path_factory):
    """``run_all`` (one 60-month period, a publication run with the HSMR, its bridge and a basket file) with its
    report written elsewhere by ``write_report``, the trusts' figures drawn in two spawned processes."""
    out, summary = run_all
    report = tmp_path_factory.mktemp("hsmr_report") / "report"
    result = write_report(out, out=report, workers=2)
    return out, summary, report, result


def _published(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / "publication" / f"{name}.csv", dtype=str, keep_default_na=False)


def _band(value: str) -> str:
    number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    return "0" if pd.isna(number) else str(int(number))


def test_the_run_writes_its_report_into_the_output(report_run):
    out, summary = report_run
    report = out / "report"
    assert (report / "index.html").is_file() and (report / "_SHMI_REPORT.json").is_file()
    assert summary["report"] == str(report / "index.html")
    # written after the commit: not in the run's manifest, yet the folder is still an output a run may replace
    manifest = json.loads((out / "_SHMI_OUTPUT.json").read_text())["files"]
    assert "shmi_trust.csv" in manifest and not any(f.startswith("report/") for f in manifest)
    from shmi_spark.io.outputs import check_destination
    check_destination(str(out), [], overwrite=True, kind="run")
    marker = json.loads((report / "_SHMI_REPORT.json").read_text())
    assert marker["periods"] == [p["period"] for p in summary["periods"]] and marker["publication"] is True


def test_index_has_one_row_per_trust_and_period_and_every_link_resolves(report_run):
    out, summary = report_run
    report = out / "report"
    page = _page(report / "index.html")
    trusts = pd.read_csv(out / "shmi_trust.csv", dtype={"PERIOD": str})
    assert list(page.rows) == [p["period"] for p in summary["periods"]]
    for period, rows in page.rows.items():
        assert sorted(r["code"] for r in rows) == sorted(trusts.loc[trusts["PERIOD"] == period, "PROVIDER_CODE"])
    for period in page.rows:
        assert (report / "img" / f"funnel_{period_slug(period)}.png").is_file()
        assert (report / "img" / f"funnel_{period_slug(period)}.svg").is_file()
    codes = set(trusts["PROVIDER_CODE"])
    assert {p.stem for p in (report / "trusts").glob("*.html")} == codes
    _assert_links_resolve([report / "index.html", *sorted((report / "trusts").glob("*.html"))[:20]])


def test_no_network_reference_and_no_patient_identifier(report_run, run_all):
    out, _ = report_run
    spells = pd.read_parquet(run_all[0] / "spells", columns=["HESID"])
    ids = set(spells["HESID"].astype(str))
    pattern = re.compile(r"\b\d{10,}\b")
    for f in (out / "report").rglob("*"):
        if f.suffix not in (".html", ".svg", ".json"):
            continue
        text = f.read_text(encoding="utf-8")
        if f.suffix == ".svg":  # namespace names are not requests; a link or an image would be
            assert not re.search(r'href="(https?:)?//', text), f
        else:
            assert "http://" not in text and "https://" not in text, f
        assert not (set(pattern.findall(text)) & ids), f"{f} holds a patient identifier"


def test_counts_are_those_of_the_publication_files(report_run):
    out, summary = report_run
    published = pd.read_csv(out / "publication" / "shmi_trust.csv", dtype=str, keep_default_na=False)
    period = summary["periods"][-1]["period"]
    rows = {r["code"]: r["cells"] for r in _page(out / "report" / "index.html").rows[period]}
    suppressed = 0
    for r in published[published["PERIOD"] == period].itertuples():
        spells_cell, observed_cell = rows[r.PROVIDER_CODE][4], rows[r.PROVIDER_CODE][5]
        expected = r.OBSERVED if r.OBSERVED == "*" else f"{int(r.OBSERVED):,}"
        assert observed_cell == expected, (r.PROVIDER_CODE, observed_cell, r.OBSERVED)
        assert spells_cell == (r.SPELLS if r.SPELLS == "*" else f"{int(r.SPELLS):,}")
        suppressed += r.OBSERVED == "*"
    assert suppressed > 0, "the 20k world should have trusts with 1-7 deaths in the pooled years"
    text = (out / "report" / "index.html").read_text(encoding="utf-8")
    assert "Publication run: counts from 1 to 7 are suppressed" in text


def test_banding_is_never_shown_by_colour_alone(report_run):
    out, _ = report_run
    page = _page(out / "report" / "index.html")
    words = {"▲ Higher than expected", "● As expected", "▼ Lower than expected"}
    assert page.band_cells
    for cell in page.band_cells:
        assert cell in words or cell.startswith("○ Not banded"), cell
    bands = {r["band"] for rows in page.rows.values() for r in rows}
    assert "2" in bands and "0" in bands


def test_trend_and_drilldown_on_trust_pages(report_run):
    out, summary = report_run
    trusts = pd.read_csv(out / "shmi_trust.csv", dtype={"PERIOD": str})
    code = trusts.sort_values("OBSERVED").iloc[-1]["PROVIDER_CODE"]
    page = _page(out / "report" / "trusts" / f"{code}.html")
    srcs = [src for src, _ in page.images]
    assert f"../img/trusts/{code}_trend.png" in srcs and f"../img/trusts/{code}_groups.png" in srcs
    assert f"../img/trusts/{code}_supergroups.png" in srcs
    text = (out / "report" / "trusts" / f"{code}.html").read_text(encoding="utf-8")
    for p in summary["periods"]:
        assert f"<td>{p['period']}</td>" in text
    assert "Median trust" in text and "ICD-10 chapters" in text


def test_report_command_rewrites_and_refuses(report_run, tmp_path, capsys):
    out, _ = report_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    (copy / "report" / "index.html").write_text("stale")
    assert main(["report", "--run", str(copy)]) == 0
    assert "stale" not in (copy / "report" / "index.html").read_text()
    assert "report written" in capsys.readouterr().out
    # a run folder with its report rewritten is still an earlier output a new run may replace
    from shmi_spark.io.outputs import check_destination
    check_destination(str(copy), [], overwrite=True, kind="run")
    (copy / "stray.txt").write_text("x")
    with pytest.raises(Exception, match="stray.txt"):
        check_destination(str(copy), [], overwrite=True, kind="run")
    # elsewhere: refused over a folder that is not an earlier report; not a run: refused, exit 2
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert main(["report", "--run", str(copy), "--out", str(other)]) == 2
    assert (other / "notes.txt").read_text() == "keep me"
    assert "not an earlier report" in capsys.readouterr().err
    assert main(["report", "--run", str(tmp_path)]) == 2
    assert "not the output folder of a complete `shmi run`" in capsys.readouterr().err


def test_compare_two_runs_draws_the_diffsum(report_run, tmp_path):
    out, summary = report_run
    other = tmp_path / "other"
    shutil.copytree(out, other, ignore=shutil.ignore_patterns("report"))
    period = summary["periods"][-1]["period"]
    for table in (other / "shmi_trust.csv", other / "publication" / "shmi_trust.csv"):  # a publication run
        trusts = pd.read_csv(table, dtype={"PERIOD": str, "OBSERVED": str, "SPELLS": str})
        rows = trusts[trusts["PERIOD"] == period].sort_values(["EXPECTED", "PROVIDER_CODE"])
        moved = rows.iloc[-1]["PROVIDER_CODE"]
        trusts.loc[(trusts["PERIOD"] == period) & (trusts["PROVIDER_CODE"] == moved), "EXPECTED"] *= 1.2
        trusts.to_csv(table, index=False)
    result = write_report(out, out=tmp_path / "cmp", compare=other, workers=1)
    text = result.index.read_text(encoding="utf-8")
    assert f"1 of {len(rows)} trusts outside the ±5% lines: {moved}." in text
    assert (tmp_path / "cmp" / "img" / f"diffsum_{period_slug(period)}.png").is_file()
    assert (tmp_path / "cmp" / REPORT_MARKER).is_file()


def test_a_failing_report_fails_the_run_after_its_tables_are_committed(spark, world, run_all, tmp_path,
                                                                        monkeypatch):
    from conftest import TEST_PROFILE

    import shmi_spark.report.build as build
    from shmi_spark.config import load_config
    from shmi_spark.pipeline import ReportFailed, run_pipeline

    def broken(*args, **kwargs):
        raise KeyError("PROVIDER_CODE")

    monkeypatch.setattr(build, "write_report", broken)
    out = tmp_path / "run"
    cfg = load_config(TEST_PROFILE, settings={
        "input": {"spells": str(run_all[0] / "spells"), "trusts": str(world / "reference" / "trusts.csv")},
        "output": {"dir": str(out), "report": True},
        "method": {"period_months": 60, "modelling_window_months": 60}})
    with pytest.raises(ReportFailed, match=r"outputs are complete in .*shmi report --run"):
        run_pipeline(spark, cfg, quiet=True)
    assert (out / "_SHMI_OUTPUT.json").is_file() and (out / "shmi_trust.csv").is_file()
    assert not (out / "report").exists()


# ---- the SHMI beside the HSMR (issue 16): run_all has the HSMR's files, report_run (HSMR off) has none

def test_the_hsmr_section_is_there_only_when_the_run_has_the_hsmr(report_run, hsmr_report):
    out, summary, report, result = hsmr_report
    period = summary["periods"][-1]["period"]
    text = (report / "index.html").read_text(encoding="utf-8")
    assert '<section id="shmi-hsmr"' in text and '<a href="#shmi-hsmr">SHMI and HSMR</a>' in text
    for suffix in ("png", "svg"):
        assert (report / "img" / f"shmi_hsmr_{period_slug(period)}.{suffix}").is_file()
    codes = sorted(pd.read_csv(out / "shmi_trust.csv", dtype={"PROVIDER_CODE": str})["PROVIDER_CODE"])
    assert result.trust_pages == len(codes)
    assert all((report / "img" / "trusts" / f"{c}_bridge.png").is_file() for c in codes)
    assert "SHMI and HSMR" in (report / "trusts" / f"{codes[0]}.html").read_text(encoding="utf-8")
    five, _ = report_run                                  # hsmr.enabled = false: none of the files, none of the section
    assert not any((five / f"{name}.csv").exists() for name in ("hsmr_trust", "shmi_vs_hsmr", "hsmr_groups"))
    for page in [five / "report" / "index.html", *sorted((five / "report" / "trusts").glob("*.html"))[:5]]:
        old = page.read_text(encoding="utf-8")
        assert "shmi-hsmr" not in old and "SHMI and HSMR" not in old and 'class="bridge' not in old, page
    assert not [f for f in (five / "report" / "img").rglob("*") if "hsmr" in f.name or "bridge" in f.name]


def test_every_link_and_image_of_the_hsmr_report_resolves(hsmr_report):
    out, summary, report, _ = hsmr_report
    pages = [report / "index.html", *sorted((report / "trusts").glob("*.html"))]
    shown = _assert_links_resolve(pages)
    drawn = {f.resolve() for f in (report / "img").rglob("*.png")}
    assert drawn == shown, f"figures drawn and not shown: {sorted(p.name for p in drawn - shown)[:5]}"
    assert any(p.name.endswith("_shmi_hsmr.png") for p in shown) and any(p.name.endswith("_bridge.png") for p in shown)
    for html in pages:                                    # banding in words and shape, wherever it is shown
        for cell in _page(html).band_cells:
            assert cell[:2] in ("▲ ", "● ", "▼ ", "○ ") and len(cell) > 3, (html.name, cell)
        text = html.read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text


def test_hsmr_counts_are_those_of_hsmr_trust(hsmr_report):
    out, summary, report, _ = hsmr_report
    period = summary["periods"][-1]["period"]
    hsmr = _published(out, "hsmr_trust")                  # a publication run: the report reads publication/
    hsmr = hsmr[hsmr["PERIOD"] == period]
    shmi = _published(out, "shmi_trust")
    shmi = shmi[shmi["PERIOD"] == period]
    both = shmi[["PROVIDER_CODE", "BANDING"]].merge(hsmr[["PROVIDER_CODE", "BANDING"]], on="PROVIDER_CODE",
                                                    how="outer", suffixes=("_S", "_H"), indicator=True)
    s_key = [_band(b) if m != "right_only" else "none" for b, m in zip(both["BANDING_S"], both["_merge"], strict=True)]
    h_key = [_band(b) if m != "left_only" else "none" for b, m in zip(both["BANDING_H"], both["_merge"], strict=True)]
    [(_, rows)] = _tables(report / "index.html").tables["hsmr-counts"]
    cells = {(a["data-shmi"], a["data-hsmr"]): int(t) for row in rows for t, a in row if "data-shmi" in a}
    assert sum(cells[("all", k)] for k in ("1", "2", "3", "0")) == len(hsmr)
    for k in ("1", "2", "3", "0"):
        assert cells[("all", k)] == sum(_band(b) == k for b in hsmr["BANDING"]), k          # hsmr_trust's counts
        assert cells[(k, "all")] == sum(_band(b) == k for b in shmi["BANDING"]), k          # shmi_trust's
    for (s, h), n in cells.items():
        if "all" not in (s, h):
            assert n == sum(a == s and b == h for a, b in zip(s_key, h_key, strict=True)), (s, h)
    assert cells[("all", "all")] == len(both)
    assert cells.get(("all", "none"), 0) == sum(both["_merge"] == "left_only")
    # the trusts whose bandings disagree, each with its largest bridge step
    bridge = _published(out, "shmi_vs_hsmr")
    largest = bridge[(bridge["PERIOD"] == period) & (bridge["LARGEST_CHANGE"] == "True")].set_index("PROVIDER_CODE")
    want = sorted(c for c, a, b in zip(both["PROVIDER_CODE"], both["BANDING_S"], both["BANDING_H"], strict=True)
                  if agreement(a, b) in DISAGREEING)
    tables = _tables(report / "index.html").tables.get("disagree", [])
    got = {row[0][0]: row for _, rows in tables for row in rows[1:]}
    assert sorted(got) == want
    for code, row in got.items():
        step = row[6]
        assert step[0].startswith(f"{largest.loc[code, 'STEP']}. "), (code, step)
    groups = pd.read_csv(out / "hsmr_groups.csv")
    covered = groups[groups["COVERED"] & (groups["PERIOD"].astype(str) == period)]
    coverage = _tables(report / "index.html").paragraphs["hsmr-coverage"][0]
    assert f"counts the {len(covered)} diagnosis groups" in coverage
    assert f"{100 * covered['SHARE'].sum():.1f}% of those deaths" in coverage


def _step_name(name: str) -> str:
    return name[:1].upper() + name[1:]


def test_trust_page_bridge_is_shmi_vs_hsmr(hsmr_report):
    out, summary, report, _ = hsmr_report
    period = summary["periods"][-1]["period"]
    bridge = _published(out, "shmi_vs_hsmr")
    bridge = bridge[bridge["PERIOD"] == period]
    trusts = pd.read_csv(out / "shmi_trust.csv", dtype={"PROVIDER_CODE": str})
    codes = [trusts.sort_values("EXPECTED")["PROVIDER_CODE"].iloc[-1], *sorted(bridge["PROVIDER_CODE"].unique())[:10]]
    for code in codes:
        want = bridge[bridge["PROVIDER_CODE"] == code].sort_values("STEP", key=lambda s: s.astype(int))
        page = report / "trusts" / f"{code}.html"
        [(_, rows)] = _tables(page).tables["bridge"]
        got = [[t for t, _ in row] for row in rows[1:]]
        assert len(got) == len(want) == 5
        for cells, r in zip(got, want.itertuples(), strict=True):
            ratio = "" if r.RATIO == "" else f"{float(r.RATIO):,.4f}"
            change = "" if r.CHANGE == "" else f"{float(r.CHANGE) + 0.0:,.4f}"
            observed = r.OBSERVED if r.OBSERVED == "*" else f"{int(r.OBSERVED):,}"
            assert cells == [r.STEP, _step_name(r.STEP_NAME), observed, f"{float(r.EXPECTED):,.1f}", ratio, change,
                             "◆ Largest change" if r.LARGEST_CHANGE == "True" else ""], (code, cells)
        top = want[want["LARGEST_CHANGE"] == "True"]
        sentence = _tables(page).paragraphs["bridge-sentence"][0]
        if len(top) and float(top["CHANGE"].iloc[0]) != 0:
            name = top["STEP_NAME"].iloc[0].split(" (")[0]
            assert f"step {top['STEP'].iloc[0]}: {name} — its ratio" in sentence, sentence
        srcs = {src: alt for src, alt in _page(page).images}
        assert f"../img/trusts/{code}_bridge.png" in srcs
        shmi = trusts.set_index("PROVIDER_CODE").loc[code, "SHMI"]
        hsmr = pd.read_csv(out / "hsmr_trust.csv", dtype={"PROVIDER_CODE": str}).set_index("PROVIDER_CODE")
        if code in hsmr.index and pd.notna(shmi) and pd.notna(hsmr.loc[code, "HSMR"]):
            assert "highlighted" in srcs[f"../img/trusts/{code}_shmi_hsmr.png"]
            [(_, by_period)] = _tables(page).tables["shmi-hsmr"]
            assert by_period[1][3][0] == f"{hsmr.loc[code, 'HSMR']:,.2f}"                # its HSMR beside its SHMI
            assert by_period[1][1][0] == f"{shmi:,.4f}"


def test_basket_tables_list_the_trusts_higher_under_either_indicator(hsmr_report):
    out, summary, report, _ = hsmr_report
    period = summary["periods"][-1]["period"]
    baskets = _published(out, "basket_trust")
    baskets = baskets[baskets["PERIOD"] == period]
    assert len(baskets), "run_all has a basket file"
    page = _tables(report / "index.html")
    shown = {a["data-basket"]: sorted(row[0][0] for row in rows[2:]) for a, rows in page.tables.get("basket", [])}
    text = (report / "index.html").read_text(encoding="utf-8")
    for basket, rows in baskets.groupby("BASKET"):
        higher = sorted(set(rows.loc[rows["BANDING"].map(_band) == "1", "PROVIDER_CODE"]))
        if higher:
            assert shown[basket] == higher, basket
        else:
            assert basket not in shown and f"{basket}: no trust banded higher than expected" in text


def test_basket_and_disagreement_tables_from_the_run_s_tables(run_all):
    """The page from the run's tables, with one trust made higher on a basket and one disagreeing on purpose
    (the 20k world has few of either)."""
    from dataclasses import replace

    from shmi_spark.report.data import read_run
    from shmi_spark.report.pages import PageFigures, index_page, trust_page

    out, summary = run_all
    run = read_run(out)
    period = run.main_period
    baskets = run.baskets.copy()
    code = sorted(baskets["PROVIDER_CODE"])[0]
    basket = baskets.loc[baskets["PROVIDER_CODE"] == code, "BASKET"].iloc[0]
    baskets.loc[(baskets["PROVIDER_CODE"] == code) & (baskets["BASKET"] == basket)
                & (baskets["INDICATOR"] == "HSMR"), "BANDING"] = 1
    hsmr = run.hsmr.copy()
    other = sorted(set(hsmr["PROVIDER_CODE"]) & set(run.trusts.loc[run.trusts["BANDING"] == 2, "PROVIDER_CODE"]))[0]
    hsmr.loc[hsmr["PROVIDER_CODE"] == other, ["BANDING", "BANDING_LABEL"]] = [1, "Higher than expected"]
    page = Tables(index_page(replace(run, baskets=baskets, hsmr=hsmr), PageFigures()))
    shown = {a["data-basket"]: [[t for t, _ in row] for row in rows[2:]] for a, rows in page.tables["basket"]}
    assert [row[0] for row in shown[basket]] == [code]
    assert shown[basket][0][11] == "▲ Higher than expected"             # the HSMR's banding, in words
    [(_, rows)] = page.tables["disagree"]
    row = next(r for r in rows[1:] if r[0][0] == other)
    assert [row[3][0], row[5][0]] == ["● As expected", "▲ Higher than expected"]
    [(_, counts)] = page.tables["hsmr-counts"]
    cells = {(a["data-shmi"], a["data-hsmr"]): int(t) for r in counts for t, a in r if "data-shmi" in a}
    assert cells[("all", "1")] == int((hsmr["BANDING"] == 1).sum())
    without = trust_page(replace(run, hsmr=run.hsmr.iloc[:0], bridge=run.bridge.iloc[:0]), code, PageFigures())
    assert "SHMI and HSMR" not in without and "SHMI and HSMR" in trust_page(run, code, PageFigures())
    assert period in without


def test_trust_page_shows_the_hsmr_s_diagnosis_groups(run_all):
    """The trust page's HSMR section lists the HSMR's groups with the largest |O − E| (its published breakdown)."""
    import html
    from dataclasses import replace

    from shmi_spark.report.build import hsmr_drilldown
    from shmi_spark.report.data import read_run
    from shmi_spark.report.pages import PageFigures, trust_page

    out, _ = run_all
    run = read_run(out)
    published = pd.read_csv(out / "publication" / "hsmr_trust_diag_group.csv", dtype={"PERIOD": str})
    for col in ("OBSERVED", "EXPECTED"):  # suppressed counts are not shown
        published[col] = pd.to_numeric(published[col], errors="coerce")
    published = published.dropna(subset=["OBSERVED", "EXPECTED"])
    published = published[published["PERIOD"] == run.main_period]
    # the trust with the most groups, so that the top 10 is a choice
    code = published["PROVIDER_CODE"].value_counts().index[0]
    mine = published[published["PROVIDER_CODE"] == code]
    assert len(mine) > 10
    drill = hsmr_drilldown(run, code)
    assert len(drill) == 10
    gap = (mine["OBSERVED"] - mine["EXPECTED"]).abs().sort_values(ascending=False)
    assert drill["O_MINUS_E"].abs().min() == pytest.approx(gap.iloc[9])  # the ten largest
    assert list(drill["O_MINUS_E"]) == sorted(drill["O_MINUS_E"], reverse=True)  # any excess first
    page = trust_page(run, code, PageFigures(), hsmr_drill=drill)
    assert "HSMR diagnosis groups with the largest differences" in page
    assert all(html.escape(str(label)) in page for label in drill["LABEL"])
    assert hsmr_drilldown(replace(run, hsmr_by_group=pd.DataFrame()), code) is None
