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
    for html in [report / "index.html", *sorted((report / "trusts").glob("*.html"))[:20]]:
        p = _page(html)
        for ref in [*p.links, *(src for src, _ in p.images)]:
            if ref.startswith("#"):
                continue
            assert not re.match(r"^[a-z]+:", ref), f"{html.name} refers outside the report: {ref}"
            assert (html.parent / ref).resolve().is_file(), f"{html.name}: broken link {ref}"
        assert all(alt for _, alt in p.images), f"{html.name}: an image without a text alternative"


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
    import shmi_spark.report.build as build
    from conftest import TEST_PROFILE

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
