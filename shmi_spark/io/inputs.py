"""A run's inputs, found, inspected and loaded before Spark starts (METHOD.md §1).

:func:`load_run_inputs` resolves the configured paths, inspects every local
input file against the input contract (:mod:`shmi_spark.io.ingest`), loads the
trust reference, the diagnosis-group lookup and the Charlson list, and checks
the trusts hold an acute trust.  Inputs on a Hadoop URI are inspected once
Spark runs (:func:`inspected`).  :func:`input_fingerprint` identifies the
input files (paths, sizes, modification times) for the output's marker.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field

import pandas as pd
from pyspark.sql import SparkSession

from shmi_spark.config import Config
from shmi_spark.errors import InputError
from shmi_spark.io.contract import DEATH_CONTRACT, EPISODE_CONTRACT
from shmi_spark.io.ingest import (
    InputSet,
    check_exists,
    inspect_input,
    read_trusts,
    read_trusts_uri,
    resolve_inputs,
    resolve_trusts,
)
from shmi_spark.io.paths import is_local, local_path
from shmi_spark.io.reference import DiagLookup, load_charlson, load_diag_lookup, reference_paths

__all__ = ["RunInputs", "load_run_inputs", "inspected", "trusts_of", "input_files", "input_fingerprint", "HES",
           "DEATHS"]

HES, DEATHS = "hes episodes", "deaths"


@dataclass(frozen=True)
class RunInputs:
    """Every input of a run, checked: paths, inspected files, reference tables."""

    paths: tuple[str, ...]                 # every input path (for the output-folder checks)
    trusts_path: str
    diag_lookup_path: str
    charlson_path: str
    lookup: DiagLookup
    charlson: pd.DataFrame
    latest_date: dt.date                   # the last plausible date (METHOD.md §1: the run date)
    hes: str = ""
    deaths: str = ""
    spells: str = ""                       # a spell table to start from, instead of hes and deaths
    episode_files: InputSet | None = None  # local inputs, inspected; URIs are inspected once Spark runs
    death_files: InputSet | None = None
    trusts: pd.DataFrame | None = field(default=None, compare=False)

    def summary(self) -> dict:
        """summary.json's ``inputs`` (files as inspected, once Spark has run, come from the stage)."""
        own = {"spells": self.spells} if self.spells else {"hes": self.hes, "deaths": self.deaths}
        return {**own, "trusts": self.trusts_path, "diag_lookup": self.diag_lookup_path,
                "charlson": self.charlson_path}


def _check_trusts(trusts: pd.DataFrame, path: str) -> pd.DataFrame:
    if not (trusts["TYPE"] == "acute").any():
        raise InputError(f"trusts reference {path} has no acute trust (TYPE acute): the SHMI covers "
                         "acute general trusts only")
    return trusts


def load_run_inputs(cfg: Config) -> RunInputs:
    """Resolve, inspect and load the inputs of ``cfg`` (no Spark; URIs are left for :func:`inspected`)."""
    q, ref = cfg.quality, cfg.reference
    latest = dt.date.fromisoformat(q.latest_date) if q.latest_date else dt.date.today()
    diag_path, charlson_path = reference_paths(ref.diag_lookup, ref.charlson)
    lookup = load_diag_lookup(diag_path, fmt=ref.diag_lookup_format, labels_path=ref.diag_labels)
    charlson = load_charlson(charlson_path, fmt=ref.charlson_format, source=ref.charlson_source)
    trusts_path = resolve_trusts(cfg.input)
    check_exists(trusts_path, "trusts reference")
    trusts = _check_trusts(read_trusts(trusts_path), trusts_path) if is_local(trusts_path) else None
    references = tuple(p for p in (diag_path, ref.diag_labels, charlson_path) if p)
    common = dict(trusts_path=trusts_path, diag_lookup_path=diag_path, charlson_path=charlson_path, lookup=lookup,
                  charlson=charlson, latest_date=latest, trusts=trusts)
    if cfg.input.spells:
        check_exists(cfg.input.spells, "spells")
        return RunInputs(paths=(cfg.input.spells, trusts_path, *references), spells=cfg.input.spells, **common)
    paths = resolve_inputs(cfg.input)
    sets = {}
    for what, path, contract in ((HES, paths.hes, EPISODE_CONTRACT), (DEATHS, paths.deaths, DEATH_CONTRACT)):
        check_exists(path, what)
        if is_local(path):
            sets[what] = inspect_input(path, what, contract, fmt=cfg.input.format, delimiter=cfg.input.delimiter,
                                       skip_bad_files=q.skip_bad_files)
    inputs = tuple(p for p in (cfg.input.dir, paths.hes, paths.deaths, trusts_path, *references) if p)
    return RunInputs(paths=inputs, hes=paths.hes, deaths=paths.deaths, episode_files=sets.get(HES),
                     death_files=sets.get(DEATHS), **common)


def inspected(spark: SparkSession, inputs: RunInputs, cfg: Config, what: str) -> InputSet:
    """The inspected files of ``what`` (:data:`HES` or :data:`DEATHS`), inspecting a URI input now."""
    known = inputs.episode_files if what == HES else inputs.death_files
    if known is not None:
        return known
    return inspect_input(inputs.hes if what == HES else inputs.deaths, what,
                         EPISODE_CONTRACT if what == HES else DEATH_CONTRACT, fmt=cfg.input.format,
                         delimiter=cfg.input.delimiter, skip_bad_files=cfg.quality.skip_bad_files, spark=spark)


def trusts_of(spark: SparkSession, inputs: RunInputs) -> pd.DataFrame:
    """The trust reference (read through Spark when it lives on a URI)."""
    if inputs.trusts is not None:
        return inputs.trusts
    return _check_trusts(read_trusts_uri(spark, inputs.trusts_path), inputs.trusts_path)


def input_files(inputs: RunInputs) -> list[dict]:
    """Every input file: ``path``, ``bytes``, ``modified_utc`` (a URI input: its path alone)."""
    found: list[dict] = []
    for p in dict.fromkeys(inputs.paths):
        root = local_path(p)
        if is_local(p) and root.exists():
            files = [root] if root.is_file() else sorted(f for f in root.rglob("*") if f.is_file())
            for f in files:
                stat = f.stat()
                modified = dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC).isoformat(timespec="seconds")
                found.append({"path": str(f), "bytes": stat.st_size, "modified_utc": modified,
                              "modified_ns": stat.st_mtime_ns})
        else:
            found.append({"path": p, "bytes": None, "modified_utc": None, "modified_ns": None})
    return found


def input_fingerprint(inputs: RunInputs, files: list[dict] | None = None) -> dict:
    """The input files' count, bytes and a hash of their paths, sizes and modification times."""
    files = input_files(inputs) if files is None else files
    stamps = [(f["path"], f["bytes"], f["modified_ns"]) for f in files]
    return {"inputs_sha256": hashlib.sha256(json.dumps(stamps).encode()).hexdigest(), "input_files": len(files),
            "input_bytes": sum(f["bytes"] or 0 for f in files)}
