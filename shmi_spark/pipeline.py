"""The run: inputs → validate → spells → linkage → periods → models → expected → indicator (→ HSMR) → files.

This module only wires the stages, each a function in its package returning a
small typed result: :mod:`shmi_spark.io.inputs` (checked before Spark starts),
:mod:`shmi_spark.hes.prepare` (validation, spells, linkage),
:mod:`shmi_spark.indicator.compute` (periods, models, banding, files).  It
prints one line per stage (rows in and out, seconds) and builds
``summary.json`` from the results.

A run is safe by construction (:mod:`shmi_spark.io.outputs`):

1. :func:`prepare_run`, before Spark starts: every local input file is
   inspected against the input contract, the trust and reference tables are
   loaded and checked, and the output folder is checked (never an input,
   never a user's folder).
2. The run takes the output folder's lock and writes everything into a
   staging folder beside it; the previous output stays untouched.
3. Validation's counts go through the data-quality gate
   (:mod:`shmi_spark.hes.quality_gate`), and the periods are planned from the
   data before any model is fitted.
4. Before the staging folder is moved into place, the outputs are checked:
   every input row accounted for, one row per trust and period, national
   ``ΣE = ΣO`` after rescaling, no non-finite value in any table.

Output folder (``output.dir``)::

    spells/                    the spell table (docs/tables.md), by DIS_FYEAR, with
                               _SUCCESS and _SHMI_SPELLS.json (rows per year, schema)
    rejects/                   rejected input rows with reasons (no patient id)
    model/<period>/            coefficients and diagnostics per fitted period
    shmi_trust.csv/.parquet    one row per trust and period
    shmi_trust_diag_group.csv  per trust × diagnosis group
    shmi_area.csv              national, regional and peer-group summaries
    contextual.csv             METHOD.md §7 per trust and period
    model_quality.csv          C statistics per group and period
    shmi_panel.csv, outliers.csv   (five-year runs) the paper's Table 4
    publication/               (publication mode) disclosure-controlled CSVs
    summary.json               counts in and out of every stage, settings, timings
    trust_areas.csv, diag_groups.csv, model_calibration.csv   for the report: region and peer
                               group per trust, supergroup per group, deaths by tenth of risk
    hsmr_trust.csv, hsmr_trust_diag_group.csv, hsmr_groups.csv, shmi_vs_hsmr.csv, basket_trust.csv
                               (hsmr.enabled) the HSMR, its groups, and the bridge from the SHMI
                               (shmi_spark.indicator.bridge); model/<period>/<step>/ each step's models
    report/                    the HTML report (shmi_spark.report; output.report, --no-report),
                               written once the rest is committed
    _SHMI_OUTPUT.json          the run's marker and manifest, written last
"""

from __future__ import annotations

import datetime as dt
import logging
import platform
import sys
import time
from collections.abc import Callable

from py4j.protocol import Py4JError
from pyspark.sql import DataFrame, SparkSession

from shmi_spark import __version__
from shmi_spark.config import Config
from shmi_spark.console import StageLog
from shmi_spark.errors import InputError
from shmi_spark.hes.prepare import (
    SpellTable,
    build_provider_spells,
    check_spell_table,
    link_spell_table,
    read_spell_table,
    validate_inputs,
)
from shmi_spark.hes.quality_gate import check_quality, format_report
from shmi_spark.hes.superspells import superspell_table
from shmi_spark.indicator.baskets import Basket, read_baskets
from shmi_spark.indicator.bridge import compute_hsmr_period, write_hsmr_tables
from shmi_spark.indicator.compute import PeriodResult, compute_period, plan_run_periods, write_indicator_tables
from shmi_spark.indicator.definitions import read_group_list
from shmi_spark.indicator.periods import PeriodPlan
from shmi_spark.io.contract import DEATH_CONTRACT, EPISODE_CONTRACT
from shmi_spark.io.ingest import read_input
from shmi_spark.io.inputs import (
    DEATHS,
    HES,
    RunInputs,
    input_files,
    input_fingerprint,
    inspected,
    load_run_inputs,
    trusts_of,
)
from shmi_spark.io.outputs import OutputFolder, check_destination
from shmi_spark.io.paths import is_local, local_path
from shmi_spark.io.publish import write_json
from shmi_spark.provenance import code_revision, config_sha256
from shmi_spark.session import executor_environment, size_shuffles

__all__ = ["STAGES", "ReportFailed", "prepare_run", "run_pipeline", "execute", "write_run_report", "stop_session"]

STAGES = ("spells", "all")

log = logging.getLogger("shmi")


def prepare_run(cfg: Config) -> RunInputs:
    """Check everything that can be checked before Spark starts (module docstring, step 1)."""
    inputs = load_run_inputs(cfg)
    if inputs.spells and is_local(inputs.spells):
        check_spell_table(inputs.spells)
    if not cfg.output.dir.strip():
        raise InputError("no output folder: set --out DIR or output.dir")
    check_destination(cfg.output.dir, inputs.paths, overwrite=cfg.output.overwrite, kind="run")
    hsmr_lists(cfg)  # a bad basket or groups file fails before Spark starts
    return inputs


def run_pipeline(spark: SparkSession | Callable[[], SparkSession], cfg: Config, *, stage: str = "all",
                 quiet: bool = False, prepared: RunInputs | None = None, command: str = "",
                 annotate: dict | None = None, report_history: list[str] | None = None) -> dict:
    """Run the pipeline into ``cfg.output.dir`` through a staging folder; return the summary.

    ``spark`` is a session, or a function returning one (called once the
    inputs and the output folder have been checked and the lock taken, so a
    bad input or a busy folder fails before Spark starts; a session it
    returns is stopped before the staging folder is removed or committed).
    ``annotate``: more top-level entries for ``summary.json`` (a refresh's own).
    ``report_history``: earlier runs' folders whose periods the report's trends
    include (a refresh's earlier periods).
    """
    if stage not in STAGES:
        raise InputError(f"unknown stage '{stage}' (known: {', '.join(STAGES)})")
    inputs = prepared or prepare_run(cfg)
    start = None if isinstance(spark, SparkSession) else spark
    session: SparkSession | None = spark if isinstance(spark, SparkSession) else None
    if start is not None and not is_local(cfg.output.dir):
        session = start()  # Hadoop's file system is needed for the lock
    o = cfg.output
    try:
        with OutputFolder(o.dir, inputs.paths, kind="run", overwrite=o.overwrite,
                          command=command or " ".join(sys.argv), spark=session,
                          stale_seconds=o.lock_stale_seconds, warn=StageLog().warn) as out:
            try:
                if session is None and start is not None:
                    session = start()
                if session is None:
                    raise TypeError("run_pipeline needs a SparkSession or a function returning one")
                summary = execute(session, cfg, inputs, out.staging, stage=stage, log=StageLog(quiet=quiet))
                work = _inner(out, f"{out.staging}/_work")
                if out.fs.exists(work):  # the run's own intermediate tables
                    out.fs.delete(work)
                summary["output"] = {"dir": o.dir, "run_id": out.run_id}
                summary |= annotate or {}
                write_json(session, summary, out.staging, "summary.json")
                out.commit(run_fingerprint(cfg, inputs, summary))
                if stage == "all" and o.report:  # after the commit: the run's tables never wait on its report
                    report = write_run_report(out.path, StageLog(quiet=quiet), history=report_history or [])
                    if report is not None:
                        summary["report"] = str(report)
            finally:
                if start is not None and session is not None:  # stopped before the staging folder is discarded
                    stop_session(session)
                    session = None
    finally:
        if start is not None and session is not None:
            stop_session(session)
    return summary


class ReportFailed(RuntimeError):
    """The run's outputs are committed but its report could not be written (a failure of the report's code)."""


def write_run_report(folder: str, log: StageLog, *, history: list[str]):
    """The committed run's HTML report, ``folder/report/`` (:mod:`shmi_spark.report`); local folders only.

    Written after the commit, under the run's lock: a report that fails never
    holds back or discards the run's tables; the failure still fails the
    command (:class:`ReportFailed`, naming the folder and ``shmi report``).
    Returns the report's ``index.html``, or ``None`` for a folder that is not local.
    """
    from shmi_spark.report.build import write_report

    if not is_local(folder):
        log.warn("no report written: the output folder is not local; run `shmi report --run DIR` on a local copy")
        return None
    t0 = time.perf_counter()
    try:
        result = write_report(local_path(folder), history=history)
    except Exception as exc:  # noqa: BLE001 - re-raised with what is safe and what to run
        raise ReportFailed(f"the run's outputs are complete in {folder}, but its report could not be written "
                           f"({type(exc).__name__}: {exc}); `shmi report --run {folder}` retries it") from exc
    log.record("report", result.trust_pages, result.figures, time.perf_counter() - t0)
    return result.index


def stop_session(spark: SparkSession) -> None:
    """Stop Spark; after Ctrl-C the gateway may already be gone, which is logged, not raised."""
    try:
        spark.stop()
    except (Py4JError, ConnectionError) as exc:
        log.warning("stopping Spark: %s", exc)


def _inner(out: OutputFolder, path: str) -> str:
    """A staging path in the style the output folder's file system expects."""
    return path[7:] if path.startswith("file://") and not out.dest.startswith("file:") else path


def execute(spark: SparkSession, cfg: Config, inputs: RunInputs, out: str, *, stage: str, log: StageLog) -> dict:
    """Every stage, writing under ``out`` (the staging folder); returns the summary."""
    started = time.perf_counter()
    stamps = input_files(inputs)
    summary: dict = {
        "shmi_spark_version": __version__, "code_revision": code_revision(), "spark_version": spark.version,
        "spark_master": spark.sparkContext.master, "python": platform.python_version(),
        "started_utc": dt.datetime.now(dt.UTC).isoformat(), "command": " ".join(sys.argv),
        "config_sha256": config_sha256(cfg), "config": cfg.to_dict(),
        "inputs": {**inputs.summary(), **input_fingerprint(inputs, stamps),
                   "files": [{k: f[k] for k in ("path", "bytes", "modified_utc")} for f in stamps]},
    }
    summary["executors"] = executor_environment(spark)
    trusts = trusts_of(spark, inputs)
    if spark.sparkContext.uiWebUrl:
        log.say(f"Spark UI: {spark.sparkContext.uiWebUrl}")
    if inputs.spells:
        t0 = time.perf_counter()
        with log.running("spells read", spark):
            spells = read_spell_table(spark, inputs.spells)
        log.record("spells read", None, spells.spells["spells_included"], time.perf_counter() - t0)
    else:
        spells = prepare_spells(spark, cfg, inputs, trusts, out, log, summary)
    summary["spells"] = spells.spells
    if spells.linkage is not None:
        summary["linkage"] = spells.linkage
    plan = plan_run_periods(spells.table, cfg)
    for warning in plan.warnings:
        log.warn(warning)
    summary["period_plan"] = period_plan_summary(plan)
    if stage == "all":
        results = []
        for period in plan.periods:
            with log.running(f"period {period.label}"[:12], spark):
                r = compute_period(spark, cfg, spells.table, period, lookup=inputs.lookup, trusts=trusts, out=out)
            log.record(f"models {period.label}"[:12], r.n_cells, len(r.models.diagnostics), r.seconds_models)
            log.record("expected", r.summary["spells"], len(r.trust_rows), r.seconds_expected)
            log.record("indicator", len(r.trust_rows), int(r.trust_rows["BANDING"].notna().sum()),
                       r.seconds_indicator)
            results.append(r)
        hsmr_files: list[str] = []
        if cfg.hsmr.enabled:
            hsmr_files, summary["hsmr"] = compute_hsmr(spark, cfg, spells.table, results, inputs, trusts, out, log)
        t0 = time.perf_counter()
        with log.running("files", spark):
            files = write_indicator_tables(spark, cfg, results, trusts, out, lookup=inputs.lookup)
        summary["periods"] = [r.summary for r in results]
        summary["files"] = files.files + hsmr_files
        if files.outliers_by_year is not None:
            summary["outliers_by_year"] = files.outliers_by_year
        log.record("files", sum(len(r.trust_rows) for r in results), len(files.files), time.perf_counter() - t0)
    summary["stages"] = log.rows
    summary["seconds_total"] = round(time.perf_counter() - started, 1)
    return summary


def hsmr_lists(cfg: Config) -> tuple[list[Basket], list[int] | None]:
    """The baskets (``hsmr.basket_file``) and the listed HSMR groups (``hsmr.groups_file``), read and checked."""
    h = cfg.hsmr
    baskets = read_baskets(h.basket_file) if h.enabled and h.basket_file else []
    listed = read_group_list(h.groups_file) if h.enabled and h.groups_file else None
    return baskets, listed


def compute_hsmr(spark: SparkSession, cfg: Config, spells: DataFrame, results: list[PeriodResult],
                 inputs: RunInputs, trusts, out: str, log: StageLog) -> tuple[list[str], list[dict]]:
    """The HSMR of every period and its bridge from the SHMI (:mod:`shmi_spark.indicator.bridge`), written.

    The superspells are linked once for the run and written to the run's
    ``_work`` folder, which every period's superspell steps read.
    """
    baskets, listed = hsmr_lists(cfg)
    t0 = time.perf_counter()
    with log.running("superspells", spark):
        path = f"{out}/_work/superspells"
        superspell_table(spells, attribution=cfg.hsmr.attribution,
                         max_gap_days=cfg.hsmr.transfer_gap_days).write.parquet(path)
        superspells = spark.read.parquet(path)
        n_superspells = superspells.count()
    log.record("superspells", None, n_superspells, time.perf_counter() - t0)
    hsmr_results = []
    for r in results:
        with log.running(f"hsmr {r.period.label}"[:12], spark):
            h = compute_hsmr_period(spark, cfg, spells, superspells, r, lookup=inputs.lookup, trusts=trusts,
                                    out=out, baskets=baskets, listed_groups=listed)
        log.record(f"hsmr {r.period.label}"[:12], None, len(h.trust_rows), h.seconds)
        hsmr_results.append(h)
    files = write_hsmr_tables(spark, cfg, hsmr_results, out)
    summaries = [{**h.summary, "superspells": n_superspells, "seconds": round(h.seconds, 1)} for h in hsmr_results]
    return files, summaries


def prepare_spells(spark: SparkSession, cfg: Config, inputs: RunInputs, trusts, out: str, log: StageLog,
                   summary: dict) -> SpellTable:
    """Read and validate the inputs (the gate applied), build spells, link deaths; write rejects and spells."""
    work = f"{out}/_work"
    t0 = time.perf_counter()
    episode_files, death_files = inspected(spark, inputs, cfg, HES), inspected(spark, inputs, cfg, DEATHS)
    for files in (episode_files, death_files):
        for path, why in files.skipped:
            log.warn(f"skipped {files.what} file {path}: {why}")
    summary["inputs"] |= {"hes": episode_files.to_dict(), "deaths": death_files.to_dict()}
    episodes = read_input(spark, episode_files, EPISODE_CONTRACT)
    deaths = read_input(spark, death_files, DEATH_CONTRACT)
    with log.running("ingest", spark):
        episodes_read, deaths_read = episodes.count(), deaths.count()
    log.record("ingest", None, episodes_read + deaths_read, time.perf_counter() - t0)
    partitions = size_shuffles(spark, cfg.spark, episodes_read)
    if partitions is not None:
        summary["shuffle_partitions"] = partitions

    t0 = time.perf_counter()
    with log.running("validate", spark):
        validated = validate_inputs(spark, episodes, deaths, trust_codes=sorted(trusts["PROCODE3"]), work=work,
                                    quality=cfg.quality, latest=inputs.latest_date, episodes_read=episodes_read,
                                    deaths_read=deaths_read)
    summary["validate"] = validated.summary()
    for report in (validated.episode_report, validated.death_report):
        for line in format_report(report):
            log.say(line)
    for name, info in validated.invalid_codes.items():
        log.say(f"invalid {name} (counted as unknown, METHOD.md §2): {info['total']:,}, e.g. "
                + ", ".join(f"{v!r}: {n:,}" for v, n in list(info["values"].items())[:3]))
    for failure in validated.gate_failures[1:]:
        log.warn(failure)
    check_quality(validated.gate_failures)
    # one file, in a fixed order; repartition, not coalesce, so that the flagged rows are read in parallel
    validated.rejects.repartition(1).sortWithinPartitions(*validated.rejects.columns).write.parquet(f"{out}/rejects")
    log.record("validate", episodes_read + deaths_read,
               validated.episode_report.accepted + validated.death_report.accepted, time.perf_counter() - t0)

    t0 = time.perf_counter()
    acute = sorted(trusts.loc[trusts["TYPE"] == "acute", "PROCODE3"])
    with log.running("spells", spark):
        spells = build_provider_spells(spark, validated, acute_trusts=acute, work=work)
    log.record("spells", validated.episode_report.accepted, spells.included, time.perf_counter() - t0)

    t0 = time.perf_counter()
    with log.running("linkage", spark):
        table = link_spell_table(spark, spells, validated.deaths, lookup=inputs.lookup, charlson=inputs.charlson,
                                 method=cfg.method, work=work, out=out)
    log.record("linkage", spells.included, table.linkage["deaths_linked"] if table.linkage else None,
               time.perf_counter() - t0)
    return table


def period_plan_summary(plan: PeriodPlan) -> dict:
    return {"data_cover": plan.data_cover, "spells_after_last_period": plan.spells_after,
            "periods": [p.label for p in plan.periods], "warnings": list(plan.warnings)}


def run_fingerprint(cfg: Config, inputs: RunInputs, summary: dict) -> dict:
    """What identifies a run's result: code, config, and each input's files (paths, sizes, times)."""
    return {
        "shmi_spark_version": __version__,
        "code_revision": summary.get("code_revision") or code_revision(),
        "config_sha256": config_sha256(cfg),
        **input_fingerprint(inputs),
        "periods": [p["period"] for p in summary.get("periods", [])],
    }
