"""Writing a run's files, and disclosure control for publication (METHOD.md §9).

All outputs of a run live under one folder (``output.dir``).  Small tables are
pandas DataFrames written as CSV and parquet; to a local folder directly, to a
Hadoop-compatible URI through Spark.  Publication mode writes a
``publication/`` copy of the CSVs with counts of 1–7 suppressed (``*``) and
other counts rounded to the nearest 5; the unrounded files stay for internal
use.  No patient identifier is ever written by this module.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from shmi_spark.io.paths import is_local, local_path

__all__ = [
    "COUNT_COLUMNS", "FORBIDDEN_COLUMNS", "OutputCheckError", "write_table", "write_json", "disclosure_control",
]

#: Columns that are counts of spells or deaths (subject to disclosure control).
COUNT_COLUMNS = ("SPELLS", "OBSERVED", "DEATHS")
FORBIDDEN_COLUMNS = ("HESID", "EPIKEY", "SPELL_ID", "PROVSPNOPS")


class OutputCheckError(RuntimeError):
    """A table about to be published breaks a rule of every output: an internal failure."""


def _check_no_identifiers(df: pd.DataFrame, name: str) -> None:
    leaked = [c for c in df.columns if c.upper() in FORBIDDEN_COLUMNS]
    if leaked:
        raise OutputCheckError(f"refusing to write {name}: patient-level column(s) {leaked}")


def _check_finite(df: pd.DataFrame, name: str) -> None:
    """No ±inf in any output (a missing value is written empty, never as a number)."""
    for col in df.columns:
        values = pd.to_numeric(df[col], errors="coerce") if df[col].dtype == object else df[col]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            arr = np.asarray(values, dtype="float64")
            if np.isinf(arr).any():
                raise OutputCheckError(f"refusing to write {name}: column {col} has a non-finite value")


def write_table(spark, df: pd.DataFrame, out_dir: str, name: str, *, formats=("csv", "parquet")) -> None:
    """Write ``df`` as ``out_dir/name.csv`` and ``.parquet`` (refused: a patient identifier, a ±inf)."""
    _check_no_identifiers(df, name)
    _check_finite(df, name)
    if is_local(out_dir):
        folder = local_path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        if "csv" in formats:
            df.to_csv(folder / f"{name}.csv", index=False)
        if "parquet" in formats:
            df.to_parquet(folder / f"{name}.parquet", index=False)
        return
    sdf = spark.createDataFrame(df)
    if "csv" in formats:
        sdf.coalesce(1).write.option("header", "true").csv(f"{out_dir}/{name}.csv")
    if "parquet" in formats:
        sdf.coalesce(1).write.parquet(f"{out_dir}/{name}.parquet")


def write_json(spark, obj: dict, out_dir: str, name: str) -> None:
    text = json.dumps(obj, indent=2, sort_keys=False, default=str)
    if is_local(out_dir):
        folder = local_path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text + "\n")
    else:
        spark.sparkContext.parallelize([text], 1).saveAsTextFile(f"{out_dir}/{name}")


def disclosure_control(df: pd.DataFrame, *, suppress_min: int, suppress_max: int, round_to: int,
                       count_columns: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Counts in [suppress_min, suppress_max] become ``*``; others round to ``round_to``.

    Count columns are ``SPELLS``, ``OBSERVED``, ``DEATHS`` and any
    ``SPELLS_*``/``DEATHS_*`` column, unless given.
    """
    out = df.copy()
    cols = count_columns or tuple(c for c in df.columns
                                  if c in COUNT_COLUMNS or c.startswith(("SPELLS_", "DEATHS_")))
    for c in cols:
        values = pd.to_numeric(out[c], errors="coerce")
        small = values.between(suppress_min, suppress_max)
        rounded = (np.round(values / round_to) * round_to).astype("Int64")
        out[c] = rounded.astype("string").where(~small, "*")
    return out
