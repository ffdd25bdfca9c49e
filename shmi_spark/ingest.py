"""Ingest: find and read the inputs, check their columns before any work.

``--input DIR`` means ``DIR/hes_apc/``, ``DIR/ons_deaths/`` and
``DIR/reference/trusts.csv`` (docs/tables.md); each may also be given on its
own.  Episodes and deaths are parquet or delimited text (header line; the
delimiter is sniffed from it), local or any Hadoop-compatible URI.  Every
column is read as a string (typed later, with ``try_`` functions).  A missing
input or a missing required column is an :class:`InputError` naming the file
and the column, raised before anything is written (METHOD.md §1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from .config import InputConfig
from .errors import InputError

EPISODE_REQUIRED = (
    "HESID", "EPIKEY", "PROCODE3", "EPIORDER", "EPISTAT", "ADMIDATE", "EPISTART",
    "EPIEND", "DISDATE", "ADMIMETH", "DISMETH", "CLASSPAT", "STARTAGE", "SEX", "DIAG_4_01",
)
SECONDARY_DIAGS = tuple(f"DIAG_4_{i:02d}" for i in range(2, 21))
EPISODE_OPTIONAL = (
    "PROVSPNOPS", "ADMISORC", "DISDEST", *SECONDARY_DIAGS, "BIRWEIT_1",
    "IMD04_DECILE", "IMD04_QUINTILE", "TRETSPEF",
)
EPISODE_COLUMNS = EPISODE_REQUIRED + EPISODE_OPTIONAL
DEATH_REQUIRED = ("HESID", "DOD")
TRUST_REQUIRED = ("PROCODE3", "NAME", "TYPE", "REGION")

_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]+:")
_TEXT_SUFFIXES = (".csv", ".txt", ".psv", ".tsv", ".dat", ".csv.gz", ".txt.gz", ".psv.gz")


@dataclass(frozen=True)
class InputPaths:
    """Resolved locations of the three inputs."""

    hes: str
    deaths: str
    trusts: str


def resolve_inputs(conf: InputConfig) -> InputPaths:
    """Combine ``input.dir`` with the per-input overrides; error if one is unset."""
    base = conf.dir.rstrip("/")

    def pick(own: str, default_rel: str, what: str) -> str:
        if own:
            return own
        if base:
            return f"{base}/{default_rel}"
        raise InputError(f"no {what} input given: set --input DIR or --{what.split()[0]}")

    return InputPaths(
        hes=pick(conf.hes, "hes_apc", "hes episodes"),
        deaths=pick(conf.deaths, "ons_deaths", "deaths"),
        trusts=resolve_trusts(conf),
    )


def resolve_trusts(conf: InputConfig) -> str:
    """The trust reference path: ``input.trusts``, or ``reference/trusts.csv`` under ``input.dir``."""
    if conf.trusts:
        return conf.trusts
    if conf.dir:
        return f"{conf.dir.rstrip('/')}/reference/trusts.csv"
    raise InputError("no trusts reference input given: set --input DIR or --trusts")


def is_local(path: str) -> bool:
    return not _URI.match(path) or path.startswith("file:")


def _local(path: str) -> Path:
    return Path(path[5:] if path.startswith("file:") else path)


def check_exists(path: str, what: str) -> None:
    """Local paths must exist; URIs are checked by Spark when read."""
    if is_local(path) and not _local(path).exists():
        raise InputError(f"{what} input not found: {path}")


def detect_format(path: str, fmt: str) -> str:
    """``parquet`` or ``csv`` for a path, from the setting or the files present."""
    if fmt != "auto":
        return fmt
    lower = path.lower().rstrip("/")
    if lower.endswith(".parquet"):
        return "parquet"
    if lower.endswith(_TEXT_SUFFIXES):
        return "csv"
    if is_local(path) and _local(path).is_dir():
        files = [p for p in _local(path).rglob("*") if p.is_file() and not p.name.startswith((".", "_"))]
        if any(p.name.endswith(".parquet") for p in files):
            return "parquet"
        if any(p.name.lower().endswith(_TEXT_SUFFIXES) for p in files):
            return "csv"
        raise InputError(f"no parquet or delimited text files found in {path}")
    return "parquet"


def sniff_delimiter(path: str, delimiter: str) -> str:
    """The configured delimiter, or the most frequent of | , tab ; in the header line."""
    if delimiter != "auto":
        return delimiter
    if not is_local(path):
        return ","
    p = _local(path)
    first = p if p.is_file() else next(
        (f for f in sorted(p.rglob("*")) if f.is_file() and f.name.lower().endswith(_TEXT_SUFFIXES)), None)
    if first is None or first.name.endswith(".gz"):
        return ","
    with open(first, "r", encoding="utf-8", errors="replace") as fh:
        header = fh.readline()
    counts = {d: header.count(d) for d in ("|", ",", "\t", ";")}
    return max(counts, key=lambda d: counts[d]) if max(counts.values()) > 0 else ","


def _read_raw(spark: SparkSession, path: str, fmt: str, delimiter: str, what: str) -> DataFrame:
    check_exists(path, what)
    fmt = detect_format(path, fmt)
    try:
        if fmt == "parquet":
            return spark.read.option("mergeSchema", "false").parquet(path)
        sep = sniff_delimiter(path, delimiter)
        header = (spark.read.option("header", "true").option("sep", sep)
                  .option("inferSchema", "false").csv(path).columns)
        schema = StructType([StructField(c, StringType()) for c in header]
                            + [StructField("_corrupt_record", StringType())])
        return (spark.read.option("header", "true").option("sep", sep)
                .option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", "_corrupt_record")
                .schema(schema).csv(path))
    except InputError:
        raise
    except Exception as exc:  # Spark's AnalysisException for unreadable paths
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read {what} input {path} as {fmt}: {first}") from None


def _standardise(df: DataFrame, path: str, what: str, required: tuple[str, ...],
                 optional: tuple[str, ...]) -> DataFrame:
    """Upper-case column names, check required ones, add absent optional ones as null strings."""
    by_upper = {}
    for c in df.columns:
        by_upper.setdefault(c.strip().upper(), c)
    missing = [c for c in required if c not in by_upper]
    if missing:
        raise InputError(f"{what} input {path} is missing required column(s): {', '.join(missing)}")
    cols = []
    for name in required + optional:
        if name in by_upper:
            cols.append(F.col(f"`{by_upper[name]}`").cast("string").alias(name))
        else:
            cols.append(F.lit(None).cast("string").alias(name))
    corrupt = F.col("_corrupt_record") if "_corrupt_record" in df.columns else F.lit(None).cast("string")
    cols.append(corrupt.alias("_CORRUPT"))
    cols.append(F.col("_metadata.file_path").alias("SOURCE_FILE"))
    return df.select(*cols)


def read_episodes(spark: SparkSession, path: str, conf: InputConfig) -> DataFrame:
    """HES episodes with every METHOD.md §1 column as a string, plus ``SOURCE_FILE``."""
    raw = _read_raw(spark, path, conf.format, conf.delimiter, "hes episodes")
    return _standardise(raw, path, "hes episodes", EPISODE_REQUIRED, EPISODE_OPTIONAL)


def read_deaths(spark: SparkSession, path: str, conf: InputConfig) -> DataFrame:
    """ONS deaths: ``HESID``, ``DOD`` as strings, plus ``SOURCE_FILE``."""
    raw = _read_raw(spark, path, conf.format, conf.delimiter, "deaths")
    return _standardise(raw, path, "deaths", DEATH_REQUIRED, ())


def read_trusts(spark: SparkSession, path: str):
    """The trust reference as a pandas DataFrame (``PROCODE3, NAME, TYPE, REGION``)."""
    from .reference import load_trusts

    check_exists(path, "trusts reference")
    if is_local(path):
        return load_trusts(str(_local(path)))
    try:
        pdf = spark.read.option("header", "true").csv(path).toPandas()
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"cannot read trusts reference {path}: {str(exc).splitlines()[0]}") from None
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as fh:
        pdf.to_csv(fh, index=False)
    return load_trusts(fh.name)
