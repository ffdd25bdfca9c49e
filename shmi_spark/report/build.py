"""Write a run's report: ``<run>/report/index.html``, ``trusts/<code>.html`` and ``img/`` (issue 15).

:func:`write_report` reads the run's own files (:mod:`shmi_spark.report.data`),
draws the figures (:mod:`shmi_spark.indicator.plots`,
:mod:`shmi_spark.report.plots`) and writes the pages
(:mod:`shmi_spark.report.pages`).  The national figures are drawn here, each
trust's (its funnel, trend, drill-downs and, with the HSMR, its bridge and its
point on the SHMI-HSMR scatter) in spawned worker processes.  The report is built in a folder beside its
destination and moved into place when complete; an earlier report (a folder
holding ``_SHMI_REPORT.json``) is replaced, any other non-empty folder is
refused.  No Spark: ``shmi report`` runs on a laptop from a copied run folder.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from shmi_spark.errors import InputError
from shmi_spark.io.outputs import REPORT_DIR, REPORT_MARKER_NAME
from shmi_spark.report.data import RunTables, count_value, flag, period_slug, read_history, read_run
from shmi_spark.report.pages import Figure, PageFigures, index_page, trust_page

__all__ = ["REPORT_MARKER", "ReportResult", "write_report", "trust_drilldown", "hsmr_drilldown", "supergroup_drilldown",
           "compare_runs"]

REPORT_MARKER = REPORT_MARKER_NAME  # the report folder's marker (what io.outputs recognises a report by)


@dataclass(frozen=True)
class ReportResult:
    """Where the report went and what it holds."""

    index: Path
    trust_pages: int
    figures: int
    seconds: float


def _known_numbers(df: pd.DataFrame) -> pd.DataFrame:
    """Rows whose observed and expected deaths are published numbers (suppressed counts, ``*``, left out)."""
    out = df.copy()
    out["OBSERVED"] = out["OBSERVED"].map(count_value)
    out["EXPECTED"] = out["EXPECTED"].map(count_value)
    return out.dropna(subset=["OBSERVED", "EXPECTED"])


def trust_drilldown(run: RunTables, code: str, period: str, *, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """One trust's diagnosis groups in ``period``: ``DIAG_GROUP, LABEL, SPELLS, OBSERVED, EXPECTED``.

    ``table``: the SHMI's ``shmi_trust_diag_group`` (default, ``run.groups``)
    or another indicator's table of the same shape (the HSMR's ``hsmr_trust_diag_group``).
    """
    table = run.groups if table is None else table
    if table.empty:
        return table
    rows = table[(table["PROVIDER_CODE"] == code) & (table["PERIOD"] == period)]
    rows = _known_numbers(rows)
    if len(run.diag_groups):
        rows = rows.merge(run.diag_groups[["DIAG_GROUP", "LABEL", "SUPERGROUP"]], on="DIAG_GROUP", how="left")
    else:
        rows = rows.assign(LABEL=None, SUPERGROUP="All groups")
    rows["LABEL"] = rows["LABEL"].fillna(rows["DIAG_GROUP"].map(lambda g: f"Group {g}"))
    rows.loc[rows["DIAG_GROUP"] == 0, "LABEL"] = "Invalid primary diagnosis"
    rows["SUPERGROUP"] = rows["SUPERGROUP"].fillna("Invalid primary diagnosis")
    return rows


def hsmr_drilldown(run: RunTables, code: str) -> pd.DataFrame | None:
    """The trust's HSMR diagnosis groups with the largest ``|O − E|`` in the main period (the SHMI's rule,
    :func:`shmi_spark.report.plots.drilldown_table`, top 10); None without the HSMR's breakdown."""
    from shmi_spark.report.plots import drilldown_table

    groups = trust_drilldown(run, code, run.main_period, table=run.hsmr_by_group)
    return drilldown_table(groups, top=10) if len(groups) else None


def supergroup_drilldown(groups: pd.DataFrame) -> pd.DataFrame:
    """The drill-down summed by supergroup (ICD-10 chapter, :meth:`DiagLookup.supergroups`)."""
    agg = groups.groupby("SUPERGROUP", as_index=False).agg(OBSERVED=("OBSERVED", "sum"), EXPECTED=("EXPECTED", "sum"))
    return agg.rename(columns={"SUPERGROUP": "LABEL"})


def compare_runs(run: RunTables, other: RunTables, *, period: str | None = None) -> pd.DataFrame:
    """Expected deaths per trust of two runs on the same data (:func:`shmi_spark.model.quality.diffsum` shape)."""
    from shmi_spark.model.quality import diffsum

    period = period or run.main_period
    if period not in other.periods:
        raise InputError(f"the run to compare with has no period {period} (it has {', '.join(other.periods)})")
    a = run.trusts.loc[run.trusts["PERIOD"] == period, ["PROVIDER_CODE", "EXPECTED"]]
    b = other.trusts.loc[other.trusts["PERIOD"] == period, ["PROVIDER_CODE", "EXPECTED"]]
    try:
        return diffsum(a.astype({"EXPECTED": float}), b.astype({"EXPECTED": float}), key="PROVIDER_CODE")
    except ValueError as exc:
        raise InputError(f"cannot compare the two runs in {period}: {exc}") from None


def _check_destination(target: Path) -> None:
    if target.exists() and (not target.is_dir() or (any(target.iterdir()) and not (target / REPORT_MARKER).is_file())):
        raise InputError(f"{target} exists and is not an earlier report (no {REPORT_MARKER}): choose another --out")


def _figure_name(kind: str, key: str) -> str:
    return f"img/{kind}_{period_slug(key)}"


def _national_figures(run: RunTables, folder: Path, figures: PageFigures) -> int:
    from shmi_spark.indicator.plots import funnel_plot
    from shmi_spark.report.plots import c_statistic_plot, calibration_plot

    drawn = 0
    for period in run.periods:
        p = run.period_summary(period)
        rows = run.trusts[run.trusts["PERIOD"] == period]
        stem = _figure_name("funnel", period)
        funnel_plot(rows, folder / stem, f"SHMI funnel plot, {period}", id_col="PROVIDER_CODE",
                    tau2=p.get("tau2"), formats=("png", "svg"))
        figures.funnel[period] = Figure(f"{stem}.png", _funnel_alt(run, period), f"{stem}.svg",
                                        f"SHMI against expected deaths, {period}, with the 95% and 99.8% "
                                        "over-dispersed control limits.")
        quality = run.quality[run.quality["PERIOD"] == period]
        if len(quality):
            if len(run.diag_groups):
                quality = quality.merge(run.diag_groups[["DIAG_GROUP", "LABEL"]], on="DIAG_GROUP", how="left")
            else:
                quality = quality.assign(LABEL=None)
            stem = _figure_name("cstat", period)
            c_statistic_plot(quality, folder / stem, title=f"C statistic by diagnosis group, {period}")
            figures.c_statistic[period] = Figure(f"{stem}.png", f"C statistic of each diagnosis group's model in "
                                                 f"{period} against its spells", f"{stem}.svg")
            drawn += 1
        cal = run.calibration[run.calibration["PERIOD"] == period] if len(run.calibration) else pd.DataFrame()
        if len(cal):
            stem = _figure_name("calibration", period)
            calibration_plot(cal, folder / stem, title=f"Observed and expected deaths by tenth of risk, {period}")
            figures.calibration[period] = Figure(f"{stem}.png", f"Observed against expected deaths by tenth of "
                                                 f"predicted risk, {period} (numbers in the table below)",
                                                 f"{stem}.svg")
            drawn += 1
        drawn += 1
        drawn += _hsmr_scatter(run, period, folder, figures)
    return drawn


def _hsmr_scatter(run: RunTables, period: str, folder: Path, figures: PageFigures) -> int:
    """The period's SHMI-HSMR scatter (none without the HSMR, or when no trust of the period has one)."""
    if not run.has_hsmr:
        return 0
    from shmi_spark.report.plots import shmi_hsmr_scatter

    rows = run.shmi_hsmr(period)
    if not rows["IN_HSMR"].any():
        return 0
    stem = _figure_name("shmi_hsmr", period)
    shmi_hsmr_scatter(rows, folder / stem, title=f"SHMI and HSMR, {period}")
    figures.hsmr_scatter[period] = Figure(f"{stem}.png", _scatter_alt(rows, period), f"{stem}.svg",
                                          "Each trust's HSMR / 100 against its SHMI (log scales), shaped by its "
                                          "two bandings; the dotted diagonal is where the two are equal.")
    return 1


def _both_ratios(rows: pd.DataFrame) -> pd.Series:
    """The trusts with both a SHMI and an HSMR: those the scatter draws."""
    return pd.to_numeric(rows["SHMI"], errors="coerce").notna() & pd.to_numeric(rows["HSMR"], errors="coerce").notna()


def _scatter_alt(rows: pd.DataFrame, period: str) -> str:
    from shmi_spark.report.plots import AGREEMENT_STYLE, agreement

    both = rows[_both_ratios(rows)]
    kinds = pd.Series([agreement(a, b) for a, b in zip(both["SHMI_BANDING"], both["HSMR_BANDING"], strict=True)],
                      dtype=object)
    counts = kinds.value_counts()
    parts = [f"{int(counts[k])} {style.label[:1].lower()}{style.label[1:]}" for k, style in AGREEMENT_STYLE.items()
             if k in counts.index]
    return (f"Scatter of HSMR / 100 against SHMI for {len(both)} trusts, {period}: {'; '.join(parts)}. "
            "The counts and the trusts whose bandings disagree are in the tables below.")


def _funnel_alt(run: RunTables, period: str) -> str:
    rows = run.trusts[run.trusts["PERIOD"] == period]
    high = rows[rows["OUTLIER_998"].astype(str).str.lower() == "true"]["PROVIDER_CODE"].astype(str).tolist()
    text = f"Funnel plot of SHMI against expected deaths for {len(rows)} trusts, {period}. "
    text += (f"Above the 99.8% limit: {', '.join(high)}." if high else "No trust above the 99.8% limit.")
    return text


@dataclass(frozen=True)
class TrustFigures:
    """What :func:`_draw_trust` drew for one trust: its figures and the drill-down tables shown beside them."""

    code: str
    funnel: Figure | None
    trend: Figure | None
    drilldown: Figure | None
    drilldown_super: Figure | None
    drill: pd.DataFrame | None
    drill_super: pd.DataFrame | None
    scatter: Figure | None = None
    bridge: Figure | None = None

    @property
    def count(self) -> int:
        return sum(f is not None for f in (self.funnel, self.trend, self.drilldown, self.drilldown_super,
                                           self.scatter, self.bridge))


def _draw_trust(run: RunTables, code: str, folder: Path, drawn: dict | None = None) -> TrustFigures:
    """One trust's place on the funnel and drill-downs (main period) and trend (over ``run.trend_periods``).

    ``drawn``: figures kept between trusts drawn by the same process (the
    main period's SHMI-HSMR scatter, which each trust's page shows with that
    trust highlighted).
    """
    from shmi_spark.indicator.plots import funnel_plot
    from shmi_spark.report.plots import drilldown_plot, trend_plot

    name = run.trusts.loc[run.trusts["PROVIDER_CODE"] == code, "PROVIDER_NAME"].astype(str).iloc[0]
    period = run.main_period
    funnel = trend = drilldown = drilldown_super = None
    rows = run.trusts[run.trusts["PERIOD"] == period]
    if code in set(rows.loc[pd.to_numeric(rows["SHMI"], errors="coerce").notna(), "PROVIDER_CODE"]):
        stem = f"img/trusts/{code}_funnel"
        funnel_plot(rows, folder / stem, f"SHMI funnel plot, {period}: {code}", id_col="PROVIDER_CODE",
                    tau2=run.period_summary(period).get("tau2"), highlight=code, formats=("png", "svg"))
        funnel = Figure(f"{stem}.png", f"Funnel plot of {period} with {name} highlighted", f"{stem}.svg")
    if len(run.trend_periods) > 1:
        rows = run.trend_rows(code)
        if len(rows):
            stem = f"img/trusts/{code}_trend"
            trend_plot(rows, folder / stem, title=f"{code}: SHMI by period")
            trend = Figure(f"{stem}.png", f"SHMI of {name} by period with its control limits (numbers in the table "
                           "above)", f"{stem}.svg")
    groups = trust_drilldown(run, code, period)
    drill = drill_super = None
    if len(groups):
        stem = f"img/trusts/{code}_groups"
        drill = drilldown_plot(groups, folder / stem, title=f"{code}: diagnosis groups, {period}")
        drilldown = Figure(f"{stem}.png", f"Observed minus expected deaths and observed over expected by diagnosis "
                           f"group for {name}, {period} (numbers in the table below)", f"{stem}.svg")
        stem = f"img/trusts/{code}_supergroups"
        drill_super = drilldown_plot(supergroup_drilldown(groups), folder / stem,
                                     title=f"{code}: diagnosis supergroups, {period}", top=25)
        drilldown_super = Figure(f"{stem}.png", f"The same by supergroup (ICD-10 chapter) for {name}, {period}",
                                 f"{stem}.svg")
    scatter, bridge = _draw_trust_hsmr(run, code, name, folder, {} if drawn is None else drawn) \
        if run.has_hsmr else (None, None)
    return TrustFigures(code, funnel, trend, drilldown, drilldown_super, drill, drill_super, scatter, bridge)


def _draw_trust_hsmr(run: RunTables, code: str, name: str, folder: Path,
                     drawn: dict) -> tuple[Figure | None, Figure | None]:
    """One trust's point on the main period's SHMI-HSMR scatter, and its bridge from one to the other."""
    from shmi_spark.report.plots import AGREEMENT_STYLE, ScatterHighlights, agreement, bridge_plot, step_label

    period = run.main_period
    scatter = bridge = None
    key = ("shmi_hsmr", str(run.folder), period)
    if key not in drawn:
        rows = run.shmi_hsmr(period)
        drawn[key] = (rows, ScatterHighlights(rows, title=f"SHMI and HSMR, {period}"))
    rows, highlights = drawn[key]
    mine = rows[(rows["PROVIDER_CODE"] == code) & _both_ratios(rows)]
    if len(mine) and highlights.can_highlight(code):
        r = mine.iloc[0]
        stem = f"img/trusts/{code}_shmi_hsmr"
        highlights.write(code, folder / stem, title=f"SHMI and HSMR, {period}: {code}")
        kind = AGREEMENT_STYLE[agreement(r["SHMI_BANDING"], r["HSMR_BANDING"])].label
        scatter = Figure(f"{stem}.png", f"Scatter of HSMR / 100 against SHMI, {period}, with {name} highlighted: "
                         f"SHMI {float(r['SHMI']):.2f}, HSMR / 100 {float(r['HSMR']) / 100:.2f}; {kind[:1].lower()}"
                         f"{kind[1:]}", f"{stem}.svg")
    steps = run.bridge_rows(code, period)
    if len(steps):
        stem = f"img/trusts/{code}_bridge"
        bridge_plot(steps, folder / stem, title=f"{code}: from the SHMI to the HSMR, {period}")
        top = steps[flag(steps["LARGEST_CHANGE"])]
        where = (f"; the largest change is at step {step_label(top['STEP'].iloc[0], top['STEP_NAME'].iloc[0])}"
                 .replace(". ", ": ", 1) if len(top) else "")
        bridge = Figure(f"{stem}.png", f"Ratio of observed to expected deaths of {name} after each step from its "
                        f"SHMI to its HSMR / 100, {period}{where} (numbers in the table below)", f"{stem}.svg")
    return scatter, bridge


_WORKER_RUN: dict[str, RunTables] = {}


def _worker_start(run_folder: str, history: list[str]) -> None:
    """A drawing process reads the run once (a process-local cache, not shared state)."""
    _WORKER_RUN[run_folder] = read_run(run_folder).with_history(read_history(history))


_WORKER_DRAWN: dict = {}


def _worker_draw(run_folder: str, codes: list[str], folder: str) -> list[TrustFigures]:
    run = _WORKER_RUN[run_folder]
    return [_draw_trust(run, code, Path(folder), _WORKER_DRAWN) for code in codes]


def _draw_trusts(run: RunTables, codes: list[str], folder: Path, workers: int,
                 history: list[str]) -> Iterator[TrustFigures]:
    """Every trust's figures, in ``codes`` order: in ``workers`` processes (spawned: nothing of Spark forked)."""
    if workers <= 1 or len(codes) < 8:
        drawn: dict = {}
        for code in codes:
            yield _draw_trust(run, code, folder, drawn)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    chunks = [codes[i:i + 8] for i in range(0, len(codes), 8)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_start,
                             initargs=(str(run.folder), history)) as pool:
        for result in pool.map(_worker_draw, [str(run.folder)] * len(chunks), chunks, [str(folder)] * len(chunks)):
            yield from result


def write_report(run_folder: str | Path, *, out: str | Path | None = None, compare: str | Path | None = None,
                 history: Sequence[str | Path] | None = None, workers: int | None = None, say=None) -> ReportResult:
    """Write the report of the run in ``run_folder`` to ``out`` (default ``run_folder/report``).

    ``compare``: another run's folder on the same data; the report then has
    the diffsum plot of the two runs' expected deaths per trust in the main
    period (the paper's Figure 1).  ``history``: earlier runs' folders (oldest
    first) whose periods the trusts' trends include, e.g. the monthly
    refreshes published before this one.  ``workers``: processes drawing the trust
    pages' figures (default: the machine's cores, at most 4; 1 draws them
    here).  ``say``: a function for progress lines.
    """
    started = time.perf_counter()
    workers = min(4, os.cpu_count() or 1) if workers is None else workers
    history_folders = [str(h) for h in history or []]
    run = read_run(run_folder).with_history(read_history(history_folders))
    target = Path(out) if out is not None else run.folder / REPORT_DIR
    _check_destination(target)
    building = target.with_name(f".{target.name}.building-{os.getpid()}")
    if building.exists():
        shutil.rmtree(building)
    (building / "img" / "trusts").mkdir(parents=True)
    (building / "trusts").mkdir()
    try:
        figures = PageFigures()
        drawn = _national_figures(run, building, figures)
        note = ""
        if compare is not None:
            other = read_run(compare)
            diff = compare_runs(run, other)
            from shmi_spark.report.plots import diffsum_plot

            stem = _figure_name("diffsum", run.main_period)
            diffsum_plot(diff, building / stem, title=f"Difference in expected deaths, {run.main_period}",
                         label_a="this run", label_b=str(other.folder))
            outside = diff.loc[diff["OUTSIDE"], "PROVIDER_CODE"].astype(str).tolist()
            figures.diffsum = Figure(f"{stem}.png", "Difference in expected deaths per trust between this run and "
                                     f"{other.folder} against their mean, with the ±5% lines", f"{stem}.svg")
            note = (f"This run against {other.folder}, {run.main_period}: {len(outside)} of {len(diff)} trusts "
                    f"outside the ±5% lines{': ' + ', '.join(outside) if outside else ''}.")
            drawn += 1
        codes = sorted(run.trusts["PROVIDER_CODE"].astype(str).unique())
        for i, drawn_trust in enumerate(_draw_trusts(run, codes, building, workers, history_folders), 1):
            code = drawn_trust.code
            for kind, by_trust in (("funnel", figures.trust_funnel), ("trend", figures.trend),
                                   ("drilldown", figures.drilldown), ("drilldown_super", figures.drilldown_super),
                                   ("scatter", figures.trust_scatter), ("bridge", figures.bridge)):
                figure = getattr(drawn_trust, kind)
                if figure is not None:
                    by_trust[code] = figure
            drawn += drawn_trust.count
            (building / "trusts" / f"{code}.html").write_text(
                trust_page(run, code, figures, drill=drawn_trust.drill, drill_super=drawn_trust.drill_super,
                           hsmr_drill=hsmr_drilldown(run, code)),
                encoding="utf-8")
            if say is not None and (i % 50 == 0 or i == len(codes)):
                say(f"report: {i} of {len(codes)} trust pages")
        (building / "index.html").write_text(index_page(run, figures, compare_note=note), encoding="utf-8")
        seconds = round(time.perf_counter() - started, 1)
        (building / REPORT_MARKER).write_text(json.dumps(
            {"run_id": run.summary.get("output", {}).get("run_id"), "periods": run.periods,
             "trend_periods": run.trend_periods,
             "trust_pages": len(codes), "figures": drawn,
             "publication": run.publication, "seconds": seconds}, indent=2) + "\n")
        _check_destination(target)  # again: a file dropped into it while the report was drawn is never deleted
        if target.exists():
            shutil.rmtree(target)
        building.rename(target)
    finally:
        if building.exists():
            shutil.rmtree(building)
    return ReportResult(target / "index.html", len(codes), drawn, round(time.perf_counter() - started, 1))
