"""The HES stage: input rows → validated episodes and deaths → spells → the linked spell table.

METHOD.md §1–§4.  Three steps, each a function returning a small result the
pipeline times and reports, with the counts that must reconcile checked here:

* :func:`validate_inputs` — every episode and death record accepted or
  rejected with a reason (:mod:`shmi_spark.hes.validate`), invalid codes
  counted, the data-quality gate's findings (:mod:`shmi_spark.hes.quality_gate`);
* :func:`build_provider_spells` — spells and their exclusions (§2), episodes
  reconciled;
* :func:`link_spell_table` — diagnosis group, Charlson, covariates and the
  death linkage (§3–§4), written as the spell table ``spells/`` with its
  manifest.

:func:`read_spell_table` starts a run from an earlier run's spell table
instead, checking its ``_SUCCESS`` marker, schema and rows per year.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from shmi_spark.config import MethodConfig, QualityConfig
from shmi_spark.errors import InputError
from shmi_spark.hes.codes import FINISHED
from shmi_spark.hes.diagnosis import lookup_tables
from shmi_spark.hes.linkage import death_flags, death_outcome, linkage_counts
from shmi_spark.hes.quality_gate import InputReport, gate_failures, input_report, invalid_report
from shmi_spark.hes.spell_table import HSMR_COLUMNS, SPELL_COLUMNS, flagged_spell_table
from shmi_spark.hes.spells import EXCLUSION_REASONS, build_spells, spell_keys_span_patients
from shmi_spark.hes.validate import (
    REJECT_COLUMNS,
    duplicate_keys,
    duplicate_losers,
    flag_deaths,
    flag_rows,
    invalid_code_counts,
    mark_duplicates,
    split_deaths,
    split_flagged,
)
from shmi_spark.io.ingest import materialise
from shmi_spark.io.paths import is_local, local_path
from shmi_spark.io.publish import write_json
from shmi_spark.io.reference import DiagLookup

__all__ = ["ReconciliationError", "Validated", "ProviderSpells", "SpellTable", "validate_inputs",
           "build_provider_spells", "link_spell_table", "write_spell_table", "check_spell_table", "read_spell_table",
           "SPELLS_MANIFEST", "BROADCAST_DUP_KEYS"]

#: Up to this many duplicated EPIKEYs are joined back by broadcast (a few MB); more, by shuffle.
BROADCAST_DUP_KEYS = 200_000
#: The spell table's own manifest, beside Spark's _SUCCESS marker.
SPELLS_MANIFEST = "_SHMI_SPELLS.json"


class ReconciliationError(RuntimeError):
    """Counts that must add up did not: an internal failure, never silent."""


@dataclass(frozen=True)
class Validated:
    """Accepted episodes and deaths, the rejects, and what validation found (METHOD.md §1–§2)."""

    episodes: DataFrame
    deaths: DataFrame
    rejects: DataFrame
    episode_report: InputReport
    death_report: InputReport
    invalid_codes: dict
    gate_failures: list[str]

    def summary(self) -> dict:
        """summary.json's ``validate``: every input row accepted or rejected, by reason and file."""
        ep, de = self.episode_report, self.death_report
        ep_dict, de_dict = ep.to_dict(), de.to_dict()
        return {
            "episodes_read": ep.read, "episodes_accepted": ep.accepted, "episodes_rejected": ep.rejected,
            "episode_rejects_by_reason": ep_dict["rejects_by_reason"],
            "deaths_read": de.read, "deaths_accepted": de.accepted, "deaths_rejected": de.rejected,
            "death_rejects_by_reason": de_dict["rejects_by_reason"],
            "reconciled": True,
            "invalid_codes": self.invalid_codes,
            "quality_gate": {"passed": not self.gate_failures, "failures": self.gate_failures},
            "episodes": ep_dict, "deaths": de_dict,
        }


@dataclass(frozen=True)
class ProviderSpells:
    """Every spell with its exclusion (null if kept), and the counts that reconcile them (METHOD.md §2)."""

    spells: DataFrame
    episodes_unfinished: int
    episodes_in_spells: int
    by_exclusion: dict

    @property
    def included(self) -> int:
        return self.by_exclusion.get("ACCEPTED", 0)


@dataclass(frozen=True)
class SpellTable:
    """The spell table (docs/tables.md) and what the stage that made it (or read it) reports."""

    table: DataFrame
    spells: dict        # summary.json's ``spells``
    linkage: dict | None = None


def _validation_counts(flagged: DataFrame) -> pd.DataFrame:
    """``SOURCE_FILE, FYEAR, REASON, FIELD, N, EXAMPLE`` (the commonest value) of a flagged input."""
    return (flagged.groupBy("SOURCE_FILE", "FYEAR", "REASON", "FIELD")
            .agg(F.count(F.lit(1)).alias("N"), F.mode("VALUE", deterministic=True).alias("EXAMPLE")).toPandas())


def validate_inputs(spark: SparkSession, episodes: DataFrame, deaths: DataFrame, *, trust_codes: list[str],
                    work: str, quality: QualityConfig, latest: dt.date, episodes_read: int,
                    deaths_read: int) -> Validated:
    """Flag every row (materialised once under ``work``), count by reason, file and year; apply nothing.

    The episodes are first written in their canonical types
    (:func:`shmi_spark.io.ingest.materialise`: each value parsed once), and
    flagged from those plain columns in one pass
    (:func:`shmi_spark.hes.validate.flag_rows`); the rows sharing an
    ``EPIKEY`` are then ranked from their narrow columns
    (:func:`~shmi_spark.hes.validate.duplicate_losers`) and the losers marked
    where the flags are read (:func:`~shmi_spark.hes.validate.mark_duplicates`).  The caller applies the
    gate (:func:`shmi_spark.hes.quality_gate.check_quality` on
    :attr:`Validated.gate_failures`).
    """
    bounds = {"earliest": dt.date.fromisoformat(quality.earliest_date), "latest": latest}
    episodes = materialise(spark, episodes, f"{work}/episodes_typed")
    dup_keys = duplicate_keys(episodes).persist(StorageLevel.MEMORY_AND_DISK)
    n_dup_keys = dup_keys.count()
    flag_rows(episodes, trust_codes, dup_keys=dup_keys, broadcast_dup_keys=n_dup_keys <= BROADCAST_DUP_KEYS,
              **bounds).write.parquet(f"{work}/episodes_flagged")
    dup_keys.unpersist()
    flag_deaths(deaths, **bounds).write.parquet(f"{work}/deaths_flagged")
    rows = spark.read.parquet(f"{work}/episodes_flagged")
    losers = duplicate_losers(rows).persist(StorageLevel.MEMORY_AND_DISK)
    flagged = mark_duplicates(rows, losers, broadcast_losers=losers.count() <= BROADCAST_DUP_KEYS)
    d_flagged = spark.read.parquet(f"{work}/deaths_flagged")
    ep_report = input_report("hes episodes", _validation_counts(flagged))
    de_report = input_report("deaths", _validation_counts(d_flagged))
    if ep_report.read != episodes_read or de_report.read != deaths_read:
        raise ReconciliationError(f"input rows do not reconcile: episodes read {episodes_read} vs "
                                  f"{ep_report.read} validated; deaths read {deaths_read} vs {de_report.read}")
    invalid = invalid_report(invalid_code_counts(flagged).toPandas())
    accepted, ep_rejects = split_flagged(flagged)
    d_accepted, de_rejects = split_deaths(d_flagged)
    return Validated(episodes=accepted, deaths=d_accepted,
                     rejects=ep_rejects.unionByName(de_rejects).select(*REJECT_COLUMNS),
                     episode_report=ep_report, death_report=de_report, invalid_codes=invalid,
                     gate_failures=gate_failures(ep_report, de_report, invalid, quality))


def _spells_with_death_flags(validated: Validated, *, acute_trusts: list[str], by_patient: bool) -> DataFrame:
    spells = build_spells(validated.episodes, acute_trusts=acute_trusts, by_patient=by_patient)
    return death_flags(spells, validated.deaths, included=F.col("EXCLUSION").isNull())


def build_provider_spells(spark: SparkSession, validated: Validated, *, acute_trusts: list[str],
                          work: str) -> ProviderSpells:
    """Spells of the accepted episodes with their exclusions (METHOD.md §2), episodes reconciled.

    The included spells also carry the death flags of §3
    (:func:`shmi_spark.hes.linkage.death_flags`: the patient's death date, its
    target and first spell), which do not depend on the window length: the
    spells, the duplicate-spell window, the join with the deaths and the
    linkage windows all run in one partitioning of the episodes by ``HESID``
    (one shuffle of the episodes, one of the deaths), materialised once under
    ``work``.  Should a spell key carry two patients' episodes
    (:func:`shmi_spark.hes.spells.spell_keys_span_patients`), the spells are
    built again by spell key alone (``build_spells(by_patient=False)``).
    """
    path = f"{work}/spells_all"
    _spells_with_death_flags(validated, acute_trusts=acute_trusts, by_patient=True).write.parquet(path)
    spells = spark.read.parquet(path)
    if spell_keys_span_patients(spells):
        path = f"{work}/spells_all_by_key"
        _spells_with_death_flags(validated, acute_trusts=acute_trusts, by_patient=False).write.parquet(path)
        spells = spark.read.parquet(path)
    unfinished = validated.episodes.where(F.coalesce(F.col("EPISTAT"), F.lit("")) != FINISHED).count()
    rows = spells.groupBy("EXCLUSION").agg(F.count(F.lit(1)).alias("n"), F.sum("N_EPISODES").alias("e")).collect()
    by_exclusion = {(r["EXCLUSION"] if r["EXCLUSION"] is not None else "ACCEPTED"): int(r["n"]) for r in rows}
    in_spells = sum(int(r["e"] or 0) for r in rows)
    accepted = validated.episode_report.accepted
    if in_spells + unfinished != accepted:
        raise ReconciliationError(f"episodes in spells {in_spells} + unfinished {unfinished} "
                                  f"!= accepted episodes {accepted}")
    result = ProviderSpells(spells, unfinished, in_spells, by_exclusion)
    if result.included == 0:
        raise InputError("no spells left after the exclusions (METHOD.md §2): nothing to model; "
                         f"exclusions: {', '.join(f'{k} {v:,}' for k, v in sorted(by_exclusion.items()))}")
    return result


def link_spell_table(spark: SparkSession, spells: ProviderSpells, deaths: DataFrame, *, lookup: DiagLookup,
                     charlson: pd.DataFrame, method: MethodConfig, work: str, out: str) -> SpellTable:
    """Group, Charlson, covariates and death outcome of the kept spells; ``out``/``spells`` written and read back.

    The death flags came with the spells (:func:`build_provider_spells`): what
    is left is row by row (:func:`shmi_spark.hes.spell_table.flagged_spell_table`),
    so nothing is shuffled before the spell table's own write and nothing is
    materialised under ``work``.
    """
    del work  # nothing intermediate to keep
    l4, l3 = lookup_tables(spark, lookup.codes)
    included = spells.spells.where(F.col("EXCLUSION").isNull())
    linked = flagged_spell_table(included, lookup4=l4, lookup3=l3, charlson=charlson,
                                 perinatal_groups=lookup.perinatal_groups, method=method)
    table, by_year = write_spell_table(spark, linked.select(*SPELL_COLUMNS), f"{out}/spells")
    if sum(by_year.values()) != spells.included:
        raise ReconciliationError(f"spell table has {sum(by_year.values())} rows, "
                                  f"{spells.included} spells were included")
    summary = {
        "episodes_unfinished": spells.episodes_unfinished, "episodes_in_spells": spells.episodes_in_spells,
        "spells_built": sum(spells.by_exclusion.values()), "spells_included": spells.included,
        "exclusions_by_reason": {r: spells.by_exclusion.get(r, 0) for r in EXCLUSION_REASONS},
        "invalid_primary_diagnosis": table.where(F.col("DIAG_GROUP") == method.invalid_diagnosis_group).count(),
        "symptom_second_episode": method.symptom_second_episode,
        "rows_by_financial_year": {str(k): v for k, v in sorted(by_year.items())},
    }
    outcome = death_outcome(included, window_days=method.death_window_days)
    return SpellTable(table, summary, linkage_counts(outcome, deaths))


def write_spell_table(spark: SparkSession, table: DataFrame, path: str) -> tuple[DataFrame, dict]:
    """Write the spell table by ``DIS_FYEAR`` with its manifest; return (the table read back, rows by year).

    Written in the partitioning it comes in (the spells' partitioning by
    patient), each task sorting its rows by year only: no shuffle of the
    table (on the full world a 3.2 GB shuffle and sort), one file per year
    and task.  Nothing reads the table in an order.
    """
    table.write.partitionBy("DIS_FYEAR").parquet(path)
    spells = spark.read.parquet(path)
    by_year = {int(r["DIS_FYEAR"]): int(r["n"])
               for r in spells.groupBy("DIS_FYEAR").agg(F.count(F.lit(1)).alias("n")).collect()}
    manifest = {"rows_by_financial_year": {str(k): v for k, v in sorted(by_year.items())},
                "rows": sum(by_year.values()),
                "schema": {f.name: f.dataType.simpleString() for f in spells.schema.fields}}
    write_json(spark, manifest, path, SPELLS_MANIFEST)
    return spells, by_year


def _missing_spell_columns(path: str, columns: list[str]) -> None:
    """Refuse a table without every column of ``SPELL_COLUMNS``.

    A spell table written before the HSMR's columns (:data:`HSMR_COLUMNS`)
    were added lacks only those: it is refused with how to rebuild it.
    """
    missing = [c for c in SPELL_COLUMNS if c not in columns]
    if not missing:
        return
    if set(missing) <= set(HSMR_COLUMNS):
        raise InputError(f"spells input {path} was written by an earlier version, without the column(s) "
                         f"{', '.join(missing)}: rebuild it from the HES input with `shmi run --stage spells` "
                         "(or run `shmi run` without --spells)")
    raise InputError(f"spells input {path}: not a spell table, missing column(s) {', '.join(missing)}")


def check_spell_table(path: str) -> dict | None:
    """A local spell table must carry Spark's ``_SUCCESS`` marker; returns its manifest (or None).

    A table without the marker was not completely written (a killed run, a
    partial copy) and is refused; so is one whose manifest lists a schema
    without every column of ``SPELL_COLUMNS`` (an older table: see
    :func:`read_spell_table`), before any Spark work.
    """
    root = local_path(path)
    if not root.is_dir():
        raise InputError(f"spells input {path} is not a folder (a previous run's spells/)")
    if not (root / "_SUCCESS").is_file():
        raise InputError(f"spells input {path} has no _SUCCESS marker: it was not completely written "
                         "(use the spells/ folder of a run that finished)")
    manifest = root / SPELLS_MANIFEST
    if not manifest.is_file():
        return None
    try:
        written = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"spells input {path}: unreadable {SPELLS_MANIFEST}: {exc}") from None
    if isinstance(written, dict) and isinstance(written.get("schema"), dict):
        _missing_spell_columns(path, list(written["schema"]))
    return written


def _check_against_manifest(path: str, spells: DataFrame, by_year: dict, manifest: dict) -> None:
    types = {f.name: f.dataType.simpleString() for f in spells.schema.fields}
    wrong = [c for c, t in manifest.get("schema", {}).items() if types.get(c) != t]
    if wrong:
        raise InputError(f"spells input {path}: column {wrong[0]} is {types.get(wrong[0])}, "
                         f"written as {manifest['schema'][wrong[0]]}")
    expected = manifest.get("rows_by_financial_year", {})
    for year, n in sorted(expected.items()):
        if by_year.get(year, 0) != n:
            raise InputError(f"spells input {path}: financial year DIS_FYEAR={year} has "
                             f"{by_year.get(year, 0):,} rows, {n:,} were written: the table is incomplete")
    extra = sorted(set(by_year) - set(expected))
    if extra:
        raise InputError(f"spells input {path}: DIS_FYEAR={extra[0]} was not in the table as written")


def read_spell_table(spark: SparkSession, path: str) -> SpellTable:
    """An existing spell table (``input.spells``) instead of building one.

    The table must have the columns of docs/tables.md (``SPELL_COLUMNS``; a
    table written before the HSMR's columns is refused with how to rebuild
    it), and when it carries its manifest, the same types and the same rows in
    every financial year as when it was written: a year's folder missing or
    cut short is an error.
    """
    manifest = check_spell_table(path) if is_local(path) else None
    spells = spark.read.parquet(path)
    _missing_spell_columns(path, spells.columns)
    by_year = {str(r["DIS_FYEAR"]): int(r["n"])
               for r in spells.groupBy("DIS_FYEAR").agg(F.count(F.lit(1)).alias("n")).collect()}
    if manifest is not None:
        _check_against_manifest(path, spells, by_year, manifest)
    summary = {"spells_included": sum(by_year.values()), "read_from": path, "rows_by_financial_year": by_year,
               "manifest_checked": manifest is not None}
    return SpellTable(spells, summary)
