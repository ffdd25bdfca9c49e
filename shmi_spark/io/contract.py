"""The input contract: what each HES and ONS field may look like, and its canonical type.

METHOD.md §1.  Real extracts vary in physical form: parquet written by Spark,
by pandas (an integer column with a missing value becomes ``float64``, a date
``timestamp[ns]``) or by a database (decimals), and delimited text with dates
as ``yyyy-mm-dd``, ``dd/mm/yyyy`` or ``yyyymmdd``.  The contract says, per
field, which physical types are accepted and casts each once to its canonical
type; everything downstream sees only canonical types.

=========  ============================================  =====================================
kind       accepted physical types                        canonical value
=========  ============================================  =====================================
``id``     text; integer; float or decimal when integral  trimmed text (``HESID`` and
                                                          ``PROCODE3`` upper-cased)
``code``   text; integer; float or decimal when integral  trimmed, upper-cased text; ``"1.0"``
                                                          → ``"1"`` (pandas' float text)
``int``    integer; float or decimal when integral; text  32-bit integer
``date``   date; timestamp of any unit (with its zone,    date
           when the file records one); text
           ``yyyy-mm-dd`` (optionally followed by a
           time), ``dd/mm/yyyy``, ``yyyymmdd``;
           integer ``yyyymmdd``
``diag``   text                                           trimmed text (normalised by
                                                          :mod:`shmi_spark.hes.validate`)
=========  ============================================  =====================================

A value that is present but cannot be cast (``45.5`` for an age, ``31/13/2007``
for a date) becomes null and is kept, as text, in the column ``_BAD_<FIELD>``,
so that validation can reject the row (dates) or count the value (codes) with
the value itself.  Blank text, ``NaN`` and HES's null dates (1800-01-01,
1801-01-01) are missing, not bad.  A physical type outside the accepted set
(a boolean date, a float diagnosis) is an error for the whole file, raised by
:func:`check_file_columns` before any work.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import Column
from pyspark.sql import functions as F

from shmi_spark.errors import InputError

__all__ = [
    "Field", "EPISODE_CONTRACT", "DEATH_CONTRACT", "EPISODE_FIELDS", "SECONDARY_DIAG_FIELDS", "ACCEPTED",
    "HES_NULL_DATES",
    "arrow_category", "spark_category", "check_file_columns", "conform",
]

#: HES codes a missing date as one of these.
HES_NULL_DATES = (dt.date(1800, 1, 1), dt.date(1801, 1, 1))

#: Physical type categories → the contract kinds that accept them.
ACCEPTED = {
    "id": {"string", "integer", "float", "decimal", "null"},
    "code": {"string", "integer", "float", "decimal", "null"},
    "int": {"string", "integer", "float", "decimal", "null"},
    "date": {"string", "integer", "date", "timestamp", "timestamp_ns", "null"},
    "diag": {"string", "null"},
}

_DESCRIBE = {
    "id": "text, or an integer",
    "code": "text, or an integer",
    "int": "an integer, a float with whole values, or text",
    "date": "a date, a timestamp, text (yyyy-mm-dd, dd/mm/yyyy, yyyymmdd) or an integer yyyymmdd",
    "diag": "text",
}


@dataclass(frozen=True)
class Field:
    """One input field: its HES name, its kind (a key of :data:`ACCEPTED`), required or not."""

    name: str
    kind: str
    required: bool


_SECONDARY = tuple(Field(f"DIAG_4_{i:02d}", "diag", False) for i in range(2, 21))

#: HES Admitted Patient Care episodes (METHOD.md §1).
EPISODE_CONTRACT: tuple[Field, ...] = (
    Field("HESID", "id", True), Field("EPIKEY", "id", True), Field("PROCODE3", "id", True),
    Field("EPIORDER", "int", True), Field("EPISTAT", "code", True),
    Field("ADMIDATE", "date", True), Field("EPISTART", "date", True), Field("EPIEND", "date", True),
    Field("DISDATE", "date", True), Field("ADMIMETH", "code", True), Field("DISMETH", "code", True),
    Field("CLASSPAT", "code", True), Field("STARTAGE", "int", True), Field("SEX", "code", True),
    Field("DIAG_4_01", "diag", True),
    Field("PROVSPNOPS", "id", False), Field("ADMISORC", "code", False), Field("DISDEST", "code", False),
    *_SECONDARY,
    Field("BIRWEIT_1", "int", False), Field("IMD04_DECILE", "int", False),
    Field("IMD04_QUINTILE", "int", False), Field("TRETSPEF", "code", False),
)

#: ONS death registrations linked to HES (METHOD.md §1).
DEATH_CONTRACT: tuple[Field, ...] = (Field("HESID", "id", True), Field("DOD", "date", True))

#: Canonical episode field names, in contract order; the secondary diagnoses.
EPISODE_FIELDS = tuple(f.name for f in EPISODE_CONTRACT)
SECONDARY_DIAG_FIELDS = tuple(f.name for f in _SECONDARY)

_UPPER_IDS = ("HESID", "PROCODE3")
_INT_MIN, _INT_MAX = -(2 ** 31), 2 ** 31 - 1


def arrow_category(arrow_type) -> str:
    """The contract category of a pyarrow type (``string``, ``integer``, ``timestamp_ns``, ...)."""
    import pyarrow as pa
    import pyarrow.types as pt

    if pt.is_dictionary(arrow_type):
        return arrow_category(arrow_type.value_type)
    if pt.is_string(arrow_type) or pt.is_large_string(arrow_type):
        return "string"
    if pt.is_integer(arrow_type):
        return "integer"
    if pt.is_floating(arrow_type):
        return "float"
    if pt.is_decimal(arrow_type):
        return "decimal"
    if pt.is_date(arrow_type):
        return "date"
    if pt.is_timestamp(arrow_type):
        return "timestamp_ns" if arrow_type.unit == "ns" else "timestamp"
    if pt.is_boolean(arrow_type):
        return "boolean"
    if arrow_type == pa.null():
        return "null"
    return str(arrow_type)


def spark_category(data_type) -> str:
    """The contract category of a Spark SQL type (files read without pyarrow)."""
    from pyspark.sql import types as T

    for types, name in (((T.StringType, T.VarcharType, T.CharType), "string"),
                        ((T.ByteType, T.ShortType, T.IntegerType, T.LongType), "integer"),
                        ((T.FloatType, T.DoubleType), "float"), ((T.DecimalType,), "decimal"),
                        ((T.DateType,), "date"), ((T.TimestampType, T.TimestampNTZType), "timestamp"),
                        ((T.BooleanType,), "boolean"), ((T.NullType,), "null")):
        if isinstance(data_type, types):
            return name
    return data_type.simpleString()


def check_file_columns(what: str, path: str, categories: dict[str, str],
                       contract: tuple[Field, ...]) -> None:
    """Raise :class:`InputError` naming the file and the column when a type is not accepted.

    ``categories`` maps each contract field present in the file to its
    physical category.  Missing required columns are checked by the caller,
    which also compares the files with each other.
    """
    for field in contract:
        cat = categories.get(field.name)
        if cat is not None and cat not in ACCEPTED[field.kind]:
            raise InputError(f"{what} file {path}: column {field.name} has type {cat}; "
                             f"expected {_DESCRIBE[field.kind]}")


def _blank_to_null(text: Column) -> Column:
    trimmed = F.trim(text)
    return F.when(trimmed == "", F.lit(None).cast("string")).otherwise(trimmed)


def _whole(number: Column) -> Column:
    """A float/decimal as a 64-bit integer when it is whole (and finite), else null."""
    finite = ~F.isnan(number.cast("double")) & (F.abs(number.cast("double")) < 9.0e15)
    return F.when(finite & (number == F.floor(number)), number.cast("long"))


def _not_nan(number: Column) -> Column:
    return number.isNotNull() & ~F.isnan(number.cast("double"))


def _text_date(text: Column) -> Column:
    """A date from ``yyyy-mm-dd[ time]``, ``d/m/yyyy`` or ``yyyymmdd`` text; null otherwise."""
    iso = ((F.length(text) >= 10) & (F.substring(text, 5, 1) == "-") & (F.substring(text, 8, 1) == "-")
           & ((F.length(text) == 10) | F.substring(text, 11, 1).isin(" ", "T")))
    return (F.when(iso, F.substring(text, 1, 10).try_cast("date"))
            .when(F.instr(text, "/") > 0, F.try_to_date(text, "d/M/yyyy"))
            .when((F.length(text) == 8) & text.rlike("^[0-9]{8}$"), F.try_to_date(text, "yyyyMMdd")))


def _zoned_date(ts: Column, zone: str | None) -> Column:
    """The calendar date of a timestamp in ``zone`` (UTC when None).

    Before 1950 some zones kept local mean time, whose offset Java and
    pandas' tz database give to different seconds (London: -0:01:15 and
    -0:01), so a local midnight written by pandas can read a few seconds
    before midnight here: such early values are taken two minutes later.
    Only HES's null dates (1800-01-01, 1801-01-01) live there; any real date
    that early is implausible and rejected anyway.
    """
    if not zone:
        return F.to_date(ts)
    local = F.from_utc_timestamp(ts, zone)
    early = local < F.lit("1950-01-01 00:00:00").cast("timestamp")
    return F.when(early, F.to_date(local + F.expr("INTERVAL 2 MINUTES"))).otherwise(F.to_date(local))


def _nanos_date(nanos: Column, zone: str | None) -> Column:
    return _zoned_date(F.timestamp_micros(F.floor(nanos / 1000).cast("long")), zone)


def _date(col: Column, category: str, zone: str | None) -> Column:
    """The parsed date (HES null dates not yet removed)."""
    if category == "date":
        return col
    if category == "timestamp":
        return _zoned_date(col, zone)
    if category == "timestamp_ns":
        return _nanos_date(col, zone)
    if category == "integer":
        return (F.when(col.between(10000101, 99991231), F.try_to_date(col.cast("string"), "yyyyMMdd"))
                .when(F.abs(col) >= 100_000_000_000, _nanos_date(col, zone)))
    return _text_date(_blank_to_null(col))


def _int(col: Column, category: str) -> Column:
    if category == "integer":
        whole = col.cast("long")
    elif category in ("float", "decimal"):
        whole = _whole(col)
    else:  # string
        text = _blank_to_null(col)
        whole = F.coalesce(text.try_cast("long"), _whole(text.try_cast("double")))
    return F.when(whole.between(_INT_MIN, _INT_MAX), whole.cast("int"))


def _text(col: Column, category: str) -> Column:
    if category == "integer":
        return col.cast("long").cast("string")
    if category in ("float", "decimal"):
        return _whole(col).cast("string")
    text = _blank_to_null(col)
    return F.when(text.rlike(r"^[0-9]+\.0+$"), F.regexp_extract(text, r"^([0-9]+)\.", 1)).otherwise(text)


def _parse(field: Field, col: Column, category: str, zone: str | None) -> Column:
    if field.kind == "date":
        return _date(col, category, zone)
    if field.kind == "int":
        return _int(col, category)
    if field.kind == "diag":
        return _blank_to_null(col)
    typed = _text(col, category)
    return F.upper(typed) if field.kind == "code" or field.name in _UPPER_IDS else typed


def _present(col: Column, category: str) -> Column:
    if category in ("float", "decimal"):
        return _not_nan(col)
    if category == "string":
        return _blank_to_null(col).isNotNull()
    return col.isNotNull()


def conform(field: Field, col: Column, category: str, zone: str | None = None) -> tuple[Column, Column]:
    """(canonical value, bad value) of ``col``, of physical ``category``, for ``field``.

    The canonical value is null when the value is missing or cannot be cast;
    the bad value is the raw value as text when it is present but cannot be
    cast, else null.  ``zone`` is the time zone a file records for a
    timestamp column (dates are taken in that zone); ``None``: UTC.
    """
    canonical = {"date": "date", "int": "int"}.get(field.kind, "string")
    if category == "null":
        return F.lit(None).cast(canonical), F.lit(None).cast("string")
    parsed = _parse(field, col, category, zone).cast(canonical)
    typed = (F.when(parsed.isin(*HES_NULL_DATES), F.lit(None).cast("date")).otherwise(parsed)
             if field.kind == "date" else parsed)
    if field.kind == "diag":
        return typed, F.lit(None).cast("string")
    bad = F.when(_present(col, category) & parsed.isNull(), F.trim(col.cast("string")))
    return typed, bad
