"""Ingest: find the input files, check each against the contract, read them in canonical types.

``--input DIR`` means ``DIR/hes_apc/``, ``DIR/ons_deaths/`` and
``DIR/reference/trusts.csv`` (docs/tables.md); each may also be given on its
own.  Episodes and deaths are parquet or delimited text with a header line
(the delimiter is sniffed from each file's header), local or any
Hadoop-compatible URI.

Every file is inspected before any work (METHOD.md §1, :mod:`shmi_spark.io.contract`):

* a zero-byte, truncated or corrupt file, a missing required column, a column
  whose physical type the contract does not accept, or a column name given
  twice is an :class:`InputError` naming the file and the column;
* the files must agree: an optional column (``DIAG_4_05``, ``BIRWEIT_1``, ...)
  present in some files must be present in all, or a year of data would
  silently lose it;
* delimited text is matched to the contract **by header name**, file by file,
  so files whose columns come in different orders are read correctly;
* parquet files whose columns differ in physical type (``int32`` in one year,
  ``string`` in another) are read group by group and cast to the same
  canonical types.

With ``skip_bad_files`` a file failing these checks is skipped instead, and
listed in :attr:`InputSet.skipped` (reported on the console and in
summary.json).  For local inputs the inspection reads only the parquet footers
and text headers, with pyarrow and Python, before Spark starts.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from shmi_spark.config import InputConfig
from shmi_spark.errors import InputError
from shmi_spark.io.contract import (
    Field,
    arrow_category,
    check_file_columns,
    conform,
    spark_category,
)
from shmi_spark.io.paths import is_local, local_path

__all__ = [
    "InputPaths", "InputFile", "InputSet", "resolve_inputs", "resolve_trusts", "is_local", "local_path",
    "check_exists", "inspect_input", "read_input", "conform_frame", "read_trusts",
    "materialise",
]


_TEXT_SUFFIXES = (".csv", ".txt", ".psv", ".tsv", ".dat", ".csv.gz", ".txt.gz", ".psv.gz", ".tsv.gz")
_DELIMITERS = ("|", ",", "\t", ";")


@dataclass(frozen=True)
class InputPaths:
    """Resolved locations of the three inputs."""

    hes: str
    deaths: str
    trusts: str


@dataclass(frozen=True)
class InputFile:
    """One inspected input file: where its contract fields are, and their physical types."""

    path: str
    fmt: str
    names: dict = field(default_factory=dict)       # field → column name in the file
    categories: dict = field(default_factory=dict)  # field → physical category
    zones: dict = field(default_factory=dict)       # field → time zone of a timestamp column
    sep: str = ""
    header: tuple = ()                              # delimited text: the header, in order

    @property
    def group(self) -> tuple:
        """Files with equal groups are read by one Spark reader."""
        return (self.fmt, self.sep, self.header, tuple(sorted(self.names.items())),
                tuple(sorted(self.categories.items())), tuple(sorted(self.zones.items())))


@dataclass(frozen=True)
class InputSet:
    """The files of one input (episodes or deaths), checked against the contract."""

    what: str
    path: str
    files: tuple[InputFile, ...]
    skipped: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict:
        return {"path": self.path, "files": len(self.files),
                "format": sorted({f.fmt for f in self.files}),
                "skipped": [{"file": f, "why": why} for f, why in self.skipped]}


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


def check_exists(path: str, what: str) -> None:
    """Local paths must exist; URIs are checked when inspected."""
    if is_local(path) and not local_path(path).exists():
        raise InputError(f"{what} input not found: {path}")


# --------------------------------------------------------------------------- listing

def _is_data_file(p: Path) -> bool:
    return p.is_file() and not any(part.startswith((".", "_")) for part in p.name.split("/"))


def _kind_of(name: str) -> str:
    lower = name.lower()
    if lower.endswith(".parquet"):
        return "parquet"
    if lower.endswith(_TEXT_SUFFIXES):
        return "csv"
    return ""


def _local_files(path: str, what: str, fmt: str) -> tuple[str, list[str]]:
    """(format, sorted data files) of a local file or folder."""
    root = local_path(path)
    if root.is_file():
        files = [root]
    else:
        files = sorted(p for p in root.rglob("*")
                       if _is_data_file(p) and not any(part.startswith((".", "_"))
                                                       for part in p.relative_to(root).parts))
    if not files:
        raise InputError(f"{what} input {path} holds no data files")
    kinds = {_kind_of(p.name) for p in files} - {""}
    if fmt == "auto":
        if len(kinds) > 1:
            pq = next(p for p in files if _kind_of(p.name) == "parquet")
            txt = next(p for p in files if _kind_of(p.name) == "csv")
            raise InputError(f"{what} input {path} mixes parquet and delimited text files "
                             f"(e.g. {pq} and {txt}): give one kind, or set input.format")
        fmt = kinds.pop() if kinds else "parquet"
    return fmt, [str(p) for p in files]


# --------------------------------------------------------------------------- inspection

def _match_fields(what: str, path: str, columns: list[str], contract: tuple[Field, ...]) -> dict:
    """field → column name, matching names trimmed and upper-cased; a name given twice is an error."""
    by_upper: dict[str, str] = {}
    for c in columns:
        key = c.strip().upper()
        if key in by_upper:
            raise InputError(f"{what} file {path}: column {key} appears twice")
        by_upper[key] = c
    missing = [f.name for f in contract if f.required and f.name not in by_upper]
    if missing:
        raise InputError(f"{what} file {path} is missing required column(s): {', '.join(missing)}")
    return {f.name: by_upper[f.name] for f in contract if f.name in by_upper}


def _inspect_parquet_local(what: str, path: str, contract: tuple[Field, ...]) -> InputFile:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if Path(path).stat().st_size == 0:
        raise InputError(f"{what} file {path} is empty (0 bytes)")
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{what} file {path} is not a readable parquet file: {exc}") from None
    names = _match_fields(what, path, list(schema.names), contract)
    cats, zones = {}, {}
    for f, col in names.items():
        arrow_type = schema.field(col).type
        cats[f] = arrow_category(arrow_type)
        tz = getattr(arrow_type, "tz", None)
        if tz and tz.upper() not in ("UTC", "Z", "+00:00", "ETC/UTC"):
            zones[f] = tz
    check_file_columns(what, path, cats, contract)
    return InputFile(path=path, fmt="parquet", names=names, categories=cats, zones=zones)


def _header_line(path: str) -> str:
    opener = gzip.open if path.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            line = fh.readline()
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    return line.decode("utf-8-sig", errors="replace").rstrip("\r\n")


def _sniff(header: str, delimiter: str) -> str:
    if delimiter != "auto":
        return delimiter
    counts = {d: header.count(d) for d in _DELIMITERS}
    return max(counts, key=lambda d: counts[d]) if max(counts.values()) > 0 else ","


def _inspect_text(what: str, path: str, header: str, delimiter: str,
                  contract: tuple[Field, ...]) -> InputFile:
    if not header.strip():
        raise InputError(f"{what} file {path} has no header line")
    sep = _sniff(header, delimiter)
    columns = [c.strip().strip('"').strip() for c in header.split(sep)]
    names = _match_fields(what, path, columns, contract)
    return InputFile(path=path, fmt="csv", names=names, categories={f: "string" for f in names},
                     sep=sep, header=tuple(columns))


def _inspect_text_local(what: str, path: str, delimiter: str, contract: tuple[Field, ...]) -> InputFile:
    if Path(path).stat().st_size == 0:
        raise InputError(f"{what} file {path} is empty (0 bytes)")
    return _inspect_text(what, path, _header_line(path), delimiter, contract)


def _remote_files(spark: SparkSession, path: str, what: str, fmt: str) -> tuple[str, list[str]]:
    jvm, jsc = spark.sparkContext._jvm, spark.sparkContext._jsc
    if jvm is None or jsc is None:
        raise RuntimeError("the SparkContext has no JVM gateway (stopped?)")
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(jsc.hadoopConfiguration())
    if not fs.exists(hpath):
        raise InputError(f"{what} input not found: {path}")
    files, it = [], fs.listFiles(hpath, True)
    while it.hasNext():
        status = it.next()
        p = status.getPath()
        rel = p.toString()[len(fs.makeQualified(hpath).toString()):]
        if not any(part.startswith((".", "_")) for part in rel.split("/") if part):
            files.append((p.toString(), int(status.getLen())))
    if not files:
        raise InputError(f"{what} input {path} holds no data files")
    kinds = {_kind_of(p) for p, _ in files} - {""}
    if fmt == "auto":
        if len(kinds) > 1:
            raise InputError(f"{what} input {path} mixes parquet and delimited text files")
        fmt = kinds.pop() if kinds else "parquet"
    empty = [p for p, size in files if size == 0]
    if empty:
        raise InputError(f"{what} file {empty[0]} is empty (0 bytes)")
    return fmt, sorted(p for p, _ in files)


def _inspect_remote(spark: SparkSession, what: str, path: str, fmt: str, delimiter: str,
                    contract: tuple[Field, ...]) -> InputFile:
    from pyspark.errors import AnalysisException

    if fmt == "csv":
        rows = spark.read.text(path).limit(1).collect()
        return _inspect_text(what, path, rows[0][0] if rows else "", delimiter, contract)
    try:
        schema = spark.read.parquet(path).schema
    except AnalysisException as exc:
        raise InputError(f"{what} file {path} is not a readable parquet file: "
                         f"{str(exc).splitlines()[0]}") from None
    names = _match_fields(what, path, schema.fieldNames(), contract)
    cats = {f: spark_category(schema[col].dataType) for f, col in names.items()}
    check_file_columns(what, path, cats, contract)
    return InputFile(path=path, fmt="parquet", names=names, categories=cats)


def _check_agreement(what: str, files: list[InputFile], contract: tuple[Field, ...],
                     skipped: list[tuple[str, str]], skip_bad_files: bool) -> list[InputFile]:
    """Optional columns must be in every file or in none (METHOD.md §1)."""
    for f in contract:
        if f.required:
            continue
        having = [x for x in files if f.name in x.names]
        lacking = [x for x in files if f.name not in x.names]
        if not having or not lacking:
            continue
        if not skip_bad_files:
            raise InputError(f"{what} file {lacking[0].path} has no column {f.name}, which "
                             f"{len(having)} other file(s) have (e.g. {having[0].path}): the files "
                             "must have the same columns")
        minority = lacking if len(lacking) <= len(having) else having
        why = (f"no column {f.name}, unlike the other files" if minority is lacking
               else f"column {f.name}, which the other files lack")
        skipped += [(x.path, why) for x in minority]
        files = [x for x in files if x not in minority]
    return files


def inspect_input(path: str, what: str, contract: tuple[Field, ...], *, fmt: str = "auto",
                  delimiter: str = "auto", skip_bad_files: bool = False,
                  spark: SparkSession | None = None) -> InputSet:
    """List and check every file of one input against the contract and the other files.

    Local inputs need no Spark; a URI needs ``spark`` (Hadoop's file system).
    Raises :class:`InputError` naming the file and column at the first problem,
    unless ``skip_bad_files``, which skips the file and records why.
    """
    if is_local(path):
        check_exists(path, what)
        fmt, paths = _local_files(path, what, fmt)

        def inspect(p: str) -> InputFile:
            if fmt == "parquet":
                return _inspect_parquet_local(what, p, contract)
            return _inspect_text_local(what, p, delimiter, contract)
    else:
        if spark is None:
            raise InputError(f"{what} input {path} is a URI: it is inspected once Spark has started")
        fmt, paths = _remote_files(spark, path, what, fmt)

        def inspect(p: str) -> InputFile:
            return _inspect_remote(spark, what, p, fmt, delimiter, contract)

    files, skipped = [], []
    for p in paths:
        try:
            files.append(inspect(p))
        except InputError as exc:
            if not skip_bad_files:
                raise
            skipped.append((p, str(exc)))
    files = _check_agreement(what, files, contract, skipped, skip_bad_files)
    if not files:
        raise InputError(f"{what} input {path}: no usable file ({len(skipped)} skipped)")
    return InputSet(what=what, path=path, files=tuple(files), skipped=tuple(skipped))


# --------------------------------------------------------------------------- reading

def conform_frame(df: DataFrame, contract: tuple[Field, ...], *, names: dict | None = None,
                  categories: dict | None = None, zones: dict | None = None,
                  corrupt: str | None = None, source: str | None = None) -> DataFrame:
    """The contract's fields of ``df`` in canonical types, with ``_BAD_<FIELD>``, ``_CORRUPT``, ``SOURCE_FILE``.

    ``names`` maps fields to ``df``'s columns (default: the same names, when
    present); ``categories`` gives their physical categories (default: from
    ``df``'s Spark types).  Absent fields are null.  ``SOURCE_FILE`` is the
    file each row came from (``source`` or Spark's file metadata).
    """
    if names is None:
        present = {c.strip().upper(): c for c in df.columns}
        names = {f.name: present[f.name] for f in contract if f.name in present}
    cols = []
    for f in contract:
        if f.name in names:
            col = F.col(f"`{names[f.name]}`")
            cat = (categories or {}).get(f.name) or spark_category(df.schema[names[f.name]].dataType)
            typed, bad = conform(f, col, cat, (zones or {}).get(f.name))
        else:
            typed, bad = conform(f, F.lit(None), "null")
        cols += [typed.alias(f.name), bad.alias(f"_BAD_{f.name}")]
    cols.append((F.col(f"`{corrupt}`") if corrupt else F.lit(None).cast("string")).alias("_CORRUPT"))
    where = F.lit(source) if source else F.regexp_replace(F.col("_metadata.file_path"), r"^file:(//)?", "")
    cols.append(where.alias("SOURCE_FILE"))
    return df.select(*cols)


def _read_group(spark: SparkSession, files: list[InputFile]) -> DataFrame:
    first = files[0]
    paths = [f.path for f in files]
    if first.fmt == "parquet":
        return spark.read.option("mergeSchema", "false").parquet(*paths)
    schema = StructType([StructField(c, StringType()) for c in first.header]
                        + [StructField("_corrupt_record", StringType())])
    return (spark.read.option("header", "true").option("sep", first.sep).option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", "_corrupt_record").schema(schema).csv(paths))


def read_input(spark: SparkSession, inputs: InputSet, contract: tuple[Field, ...]) -> DataFrame:
    """Every row of every file, in the contract's canonical types (see :func:`conform_frame`)."""
    groups: dict[tuple, list[InputFile]] = {}
    for f in inputs.files:
        groups.setdefault(f.group, []).append(f)
    parts = []
    for files in groups.values():
        first = files[0]
        raw = _read_group(spark, files)
        parts.append(conform_frame(raw, contract, names=first.names, categories=first.categories,
                                   zones=first.zones, corrupt="_corrupt_record" if first.fmt == "csv" else None))
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out


def materialise(spark: SparkSession, frame: DataFrame, path: str) -> DataFrame:
    """``frame`` written once to parquet at ``path`` and read back (canonical types as plain columns).

    Episodes from :func:`read_input` are expressions over the raw files: every
    later use would parse each value again (each date in several places), and
    the optimiser would work on the inlined expression trees of every step.
    Written once (parsed once), the columns are plain typed columns; values
    and types are unchanged (parquet keeps them).
    """
    frame.write.parquet(path)
    return spark.read.parquet(path)


def read_trusts(path: str):
    """The trust reference as a pandas DataFrame (``PROCODE3, NAME, TYPE, REGION``); local files only here."""
    from shmi_spark.io.reference import load_trusts

    check_exists(path, "trusts reference")
    if not is_local(path):
        raise InputError(f"trusts reference {path}: read it with read_trusts_uri (needs Spark)")
    return load_trusts(str(local_path(path)))


def read_trusts_uri(spark: SparkSession, path: str):
    """The trust reference from a Hadoop-compatible URI (through a temporary local copy)."""
    import tempfile

    from pyspark.errors import AnalysisException

    from shmi_spark.io.reference import load_trusts

    try:
        pdf: pd.DataFrame = spark.read.option("header", "true").csv(path).toPandas()
    except AnalysisException as exc:
        raise InputError(f"cannot read trusts reference {path}: {str(exc).splitlines()[0]}") from None
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as fh:
        pdf.to_csv(fh, index=False)
    return load_trusts(fh.name)

