"""Validate: every input row is accepted or rejected with a reason; invalid codes counted.

METHOD.md §1–§2.  Works on episodes and deaths already cast to the contract's
canonical types (:func:`shmi_spark.io.ingest.read_input`).  Row-level problems
never crash the run and are never dropped silently.

**Rejections.**  Only what makes an episode unusable rejects it.  Each
episode gets the first failing check, in this order:

==================================  ==========================================
reason                              when
==================================  ==========================================
``MALFORMED_LINE``                  a delimited line that does not parse
``MISSING_VALUE``                   ``HESID``, ``EPIKEY`` or ``PROCODE3`` blank
``INVALID_DATE``                    a date present but unparseable or impossible
``MISSING_VALUE``                   ``ADMIDATE`` blank (or a HES null date)
``IMPLAUSIBLE_DATE``                a date before ``earliest`` (1900-01-01) or
                                    after ``latest`` (the run date)
``UNKNOWN_PROVIDER``                ``PROCODE3`` not in the trust reference
``EPISODE_ENDS_BEFORE_START``       ``EPIEND`` < ``EPISTART``
``EPISODE_STARTS_BEFORE_ADMISSION`` ``EPISTART`` < ``ADMIDATE``
``DISCHARGE_BEFORE_ADMISSION``      ``DISDATE`` < ``ADMIDATE``
``DUPLICATE_EPIKEY``                a second row with an ``EPIKEY`` already seen
                                    (the first valid row, by content, is kept)
==================================  ==========================================

Deaths: ``MALFORMED_LINE``, ``MISSING_VALUE`` (``HESID``, ``DOD``),
``INVALID_DATE`` and ``IMPLAUSIBLE_DATE`` (``DOD``).

**Invalid codes are not rejections** (METHOD.md §2).  A value outside the HES
data dictionary, or one the contract could not cast (``45.5`` for an age), in
a coded field becomes that field's "not known": ``SEX``, ``ADMIMETH`` and
``STARTAGE`` (neither 0–120, 7001–7007 nor 999) fall in their covariate's
``unknown`` level; ``CLASSPAT`` and ``DISMETH`` are not known (the spell is
then neither a day case nor a stillbirth, nor discharged dead); ``EPISTAT`` is
not known (so not finished); ``EPIORDER`` (not a whole number ≥ 1) is an
unknown order, sorted after the known ones.  Each such value is listed in the
episode's ``INVALID`` column (field and value), counted per field and value
by :func:`invalid_code_counts`.  Blank values and HES null codes are neither:
they are the covariates' ``unknown`` levels.

Rejects carry ``SOURCE_FILE, EPIKEY, PROCODE3, REASON, FIELD, VALUE`` and never
the patient identifier.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from shmi_spark.hes.codes import (
    ADMIMETH_ELECTIVE,
    ADMIMETH_NON_ELECTIVE,
    ADMIMETH_UNKNOWN,
    CLASSPAT_CODES,
    DISMETH_CODES,
    EPISTAT_CODES,
    SEX_CODES,
    financial_year,
    icd10_code,
)
from shmi_spark.io.contract import EPISODE_CONTRACT, SECONDARY_DIAG_FIELDS

__all__ = [
    "DATE_FIELDS", "REJECT_COLUMNS", "EARLIEST_DATE", "CODE_SETS",
    "duplicate_keys", "flag_rows", "duplicate_losers", "mark_duplicates", "flag_episodes", "split_flagged",
    "validate_episodes", "validate_deaths", "invalid_code_counts",
]

DATE_FIELDS = ("ADMIDATE", "EPISTART", "EPIEND", "DISDATE")
REJECT_COLUMNS = ("SOURCE_FILE", "EPIKEY", "PROCODE3", "REASON", "FIELD", "VALUE")
EARLIEST_DATE = dt.date(1900, 1, 1)

#: Coded fields with a closed set of values (METHOD.md §1); others are only checked by the contract.
CODE_SETS = {
    "EPISTAT": EPISTAT_CODES, "CLASSPAT": CLASSPAT_CODES, "DISMETH": DISMETH_CODES, "SEX": SEX_CODES,
    "ADMIMETH": ADMIMETH_ELECTIVE + ADMIMETH_NON_ELECTIVE + ADMIMETH_UNKNOWN,
}
#: Fields whose invalid values are counted (and nulled) rather than rejected.
CODED_FIELDS = tuple(f.name for f in EPISODE_CONTRACT if f.kind in ("code", "int"))


def _check(cond: Column, reason: str, field: str, value: Column) -> Column:
    return F.when(cond, F.struct(F.lit(reason).alias("REASON"), F.lit(field).alias("FIELD"),
                                 value.cast("string").alias("VALUE")))


def _valid_value(field: str) -> Column:
    """True when a present value of a coded field is valid (HES data dictionary)."""
    value = F.col(field)
    if field in CODE_SETS:
        return value.isin(*CODE_SETS[field])
    if field == "STARTAGE":
        return value.between(0, 120) | value.between(7001, 7007) | (value == 999)
    if field == "EPIORDER":
        return value >= 1
    return F.lit(True)


def _invalid(field: str) -> Column:
    """The field's invalid value as text (a value the contract could not cast, or outside its codes)."""
    return F.coalesce(F.col(f"_BAD_{field}"),
                      F.when(F.col(field).isNotNull() & ~_valid_value(field), F.col(field).cast("string")))


def episode_checks(trust_codes: list[str], *, earliest: dt.date, latest: dt.date) -> list[Column]:
    """The row checks, in order; each a struct(REASON, FIELD, VALUE) or null."""
    checks = [_check(F.col("_CORRUPT").isNotNull(), "MALFORMED_LINE", "", F.lit(""))]
    for field in ("HESID", "EPIKEY", "PROCODE3"):
        checks.append(_check(F.col(field).isNull(), "MISSING_VALUE", field, F.lit("")))
    for field in DATE_FIELDS:
        checks.append(_check(F.col(f"_BAD_{field}").isNotNull(), "INVALID_DATE", field, F.col(f"_BAD_{field}")))
    checks.append(_check(F.col("ADMIDATE").isNull(), "MISSING_VALUE", "ADMIDATE", F.lit("")))
    for field in DATE_FIELDS:
        outside = ~F.col(field).between(F.lit(earliest), F.lit(latest))
        checks.append(_check(outside, "IMPLAUSIBLE_DATE", field, F.col(field)))
    checks += [
        _check(~F.col("PROCODE3").isin(*trust_codes) if trust_codes else F.lit(True),
               "UNKNOWN_PROVIDER", "PROCODE3", F.col("PROCODE3")),
        _check(F.col("EPIEND") < F.col("EPISTART"), "EPISODE_ENDS_BEFORE_START", "EPIEND", F.col("EPIEND")),
        _check(F.col("EPISTART") < F.col("ADMIDATE"), "EPISODE_STARTS_BEFORE_ADMISSION", "EPISTART",
               F.col("EPISTART")),
        _check(F.col("DISDATE") < F.col("ADMIDATE"), "DISCHARGE_BEFORE_ADMISSION", "DISDATE", F.col("DISDATE")),
    ]
    return checks


def typed_episode_columns() -> list[Column]:
    """The accepted episode's columns (the contract read by ``spells``); invalid codes as null."""
    def coded(field: str) -> Column:
        return F.when(_invalid(field).isNull(), F.col(field)).alias(field)

    secondary = F.array_compact(F.array(*[icd10_code(F.col(c)) for c in SECONDARY_DIAG_FIELDS]))
    return [
        F.col("HESID"), F.col("EPIKEY"), F.col("PROCODE3"), F.col("PROVSPNOPS"), coded("EPIORDER"),
        coded("EPISTAT"), *[F.col(c) for c in DATE_FIELDS], coded("ADMIMETH"), coded("ADMISORC"),
        coded("DISDEST"), coded("DISMETH"), coded("CLASSPAT"), coded("STARTAGE"), coded("SEX"),
        icd10_code(F.col("DIAG_4_01")).alias("DIAG_PRIMARY_RAW"),
        secondary.alias("DIAG_SECONDARY"),
        F.col("BIRWEIT_1"),
        F.coalesce(F.ceil(F.col("IMD04_DECILE") / 2).cast("int"), F.col("IMD04_QUINTILE")).alias("IMD_QUINTILE_RAW"),
        coded("TRETSPEF"),
    ]


def _invalid_list() -> Column:
    """``array<struct<FIELD, VALUE>>`` of the episode's invalid coded values (usually empty)."""
    return F.array_compact(F.array(*[
        F.when(_invalid(f).isNotNull(), F.struct(F.lit(f).alias("FIELD"), _invalid(f).alias("VALUE")))
        for f in CODED_FIELDS]))


def _content_hash(columns: list[str]) -> Column:
    """A hash of a row's content: the deterministic tie-break between rows sharing a key."""
    return F.xxhash64(*[F.coalesce(F.col(c).cast("string"), F.lit("\u0000")) for c in columns])


def duplicate_keys(episodes: DataFrame) -> DataFrame:
    """The ``EPIKEY`` values held by more than one episode: ``_DUP_KEY``.

    A key-only aggregation: the shuffle carries keys, not the wide rows.
    """
    return (episodes.select(F.col("EPIKEY").alias("_KEY")).where(F.col("_KEY").isNotNull())
            .groupBy("_KEY").agg(F.count(F.lit(1)).alias("N"))
            .where(F.col("N") > 1).select(F.col("_KEY").alias("_DUP_KEY")))


def flag_rows(episodes: DataFrame, trust_codes: list[str], *, earliest: dt.date = EARLIEST_DATE,
              latest: dt.date | None = None, dup_keys: DataFrame | None = None,
              broadcast_dup_keys: bool = False) -> DataFrame:
    """Every episode flagged by the row checks; duplicates not yet decided (see :func:`flag_episodes`).

    One pass over ``episodes``: the columns of :func:`flag_episodes` plus
    ``_ROW`` (a row number, unique within this result) and ``_DUP_HASH``
    (the row's content hash when its ``EPIKEY`` is shared, else null).  The
    rows sharing a key are ranked afterwards, from those narrow columns
    (:func:`duplicate_losers`), so the wide rows are read once.  Materialise
    this once (``_ROW`` is not recomputed identically) and mark it with
    :func:`mark_duplicates`.
    """
    latest = latest or dt.date.today()
    content = [c for c in episodes.columns if c not in ("_CORRUPT", "SOURCE_FILE")]
    problem = F.coalesce(*episode_checks(trust_codes, earliest=earliest, latest=latest))
    if dup_keys is None:
        dup_keys = duplicate_keys(episodes)
    if broadcast_dup_keys:
        dup_keys = F.broadcast(dup_keys)
    # numbered where read, before any join can move rows between partitions
    numbered = episodes.withColumn("_ROW", F.monotonically_increasing_id())
    marked = numbered.join(dup_keys, on=F.col("EPIKEY") == F.col("_DUP_KEY"), how="left")
    last_date = F.coalesce(F.col("DISDATE"), F.col("EPIEND"), F.col("EPISTART"), F.col("ADMIDATE"))
    return marked.withColumn("_PROBLEM", problem).select(
        *typed_episode_columns(), F.col("SOURCE_FILE"),
        F.col("_PROBLEM.REASON").alias("REASON"), F.col("_PROBLEM.FIELD").alias("FIELD"),
        F.col("_PROBLEM.VALUE").alias("VALUE"), _invalid_list().alias("INVALID"),
        financial_year(last_date).alias("FYEAR"),
        F.col("_ROW"),
        F.when(F.col("_DUP_KEY").isNotNull(), _content_hash(content)).alias("_DUP_HASH"))


def duplicate_losers(rows: DataFrame) -> DataFrame:
    """``_ROW`` of every valid row that loses to another row with its ``EPIKEY`` (``DUPLICATE_EPIKEY``).

    ``rows`` is :func:`flag_rows`' result.  Among the rows sharing a key, the
    first valid one is kept: ordered by valid first, then content hash, then
    source file, then ``_ROW`` (which only orders rows equal in content and
    file, so the choice does not show).  Only the rows sharing a key are
    read, and only their narrow columns.
    """
    order = Window.partitionBy("EPIKEY").orderBy(
        F.col("REASON").isNotNull().asc(), F.col("_DUP_HASH").asc(), F.col("SOURCE_FILE").asc_nulls_last(),
        F.col("_ROW").asc())
    shared = rows.where(F.col("_DUP_HASH").isNotNull()).select("EPIKEY", "REASON", "_DUP_HASH", "SOURCE_FILE",
                                                               "_ROW")
    return (shared.withColumn("_RANK", F.row_number().over(order))
            .where(F.col("REASON").isNull() & (F.col("_RANK") > 1)).select(F.col("_ROW").alias("_LOSER")))


def mark_duplicates(rows: DataFrame, losers: DataFrame, *, broadcast_losers: bool = False) -> DataFrame:
    """:func:`flag_rows`' result with ``DUPLICATE_EPIKEY`` on the ``losers``: :func:`flag_episodes`' columns."""
    if broadcast_losers:
        losers = F.broadcast(losers)
    joined = rows.join(losers, on=F.col("_ROW") == F.col("_LOSER"), how="left")
    loser = F.col("_LOSER").isNotNull()
    keep = [c for c in rows.columns if c not in ("REASON", "FIELD", "VALUE", "INVALID", "FYEAR", "_ROW", "_DUP_HASH")]
    return joined.select(
        *keep,
        F.when(loser, F.lit("DUPLICATE_EPIKEY")).otherwise(F.col("REASON")).alias("REASON"),
        F.when(loser, F.lit("EPIKEY")).otherwise(F.col("FIELD")).alias("FIELD"),
        F.when(loser, F.col("EPIKEY")).otherwise(F.col("VALUE")).alias("VALUE"),
        F.col("INVALID"), F.col("FYEAR"))


def flag_episodes(episodes: DataFrame, trust_codes: list[str], *, earliest: dt.date = EARLIEST_DATE,
                  latest: dt.date | None = None, dup_keys: DataFrame | None = None,
                  broadcast_dup_keys: bool = False) -> DataFrame:
    """Every episode with its accepted columns, its reject columns (null when accepted) and ``INVALID``.

    ``episodes`` come from :func:`shmi_spark.io.ingest.read_input` (canonical
    types).  The result has the columns of :func:`typed_episode_columns` plus
    ``SOURCE_FILE, REASON, FIELD, VALUE, INVALID, FYEAR`` (the financial year
    of the episode's last known date, for the data-quality gate); materialise
    it once and split it with :func:`split_flagged`.  ``latest`` (default
    today) bounds plausible dates.  ``dup_keys`` is :func:`duplicate_keys` of
    the same episodes (computed here when not given); ``broadcast_dup_keys``
    joins it by broadcast, so the wide rows are not shuffled at all.

    The composition of :func:`flag_rows`, :func:`duplicate_losers` and
    :func:`mark_duplicates` as one plan (it reads ``episodes`` twice);
    :func:`shmi_spark.hes.prepare.validate_inputs` materialises
    :func:`flag_rows` once instead.
    """
    rows = flag_rows(episodes, trust_codes, earliest=earliest, latest=latest, dup_keys=dup_keys,
                     broadcast_dup_keys=broadcast_dup_keys)
    return mark_duplicates(rows, duplicate_losers(rows))


def split_flagged(flagged: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(accepted episodes, rejects) from :func:`flag_episodes`."""
    typed = [c for c in flagged.columns
             if c not in ("SOURCE_FILE", "REASON", "FIELD", "VALUE", "INVALID", "FYEAR")]
    accepted = flagged.where(F.col("REASON").isNull()).select(*typed)
    rejects = flagged.where(F.col("REASON").isNotNull()).select(*REJECT_COLUMNS)
    return accepted, rejects


def validate_episodes(episodes: DataFrame, trust_codes: list[str], **bounds) -> tuple[DataFrame, DataFrame]:
    """Split episodes into (accepted, rejects with reasons); ``bounds``: ``earliest``, ``latest``."""
    return split_flagged(flag_episodes(episodes, trust_codes, **bounds))


def invalid_code_counts(flagged: DataFrame) -> DataFrame:
    """Invalid coded values of accepted episodes: ``FIELD, VALUE, N`` (METHOD.md §2)."""
    return (flagged.where(F.col("REASON").isNull() & (F.size("INVALID") > 0))
            .select(F.explode("INVALID").alias("I"))
            .groupBy(F.col("I.FIELD").alias("FIELD"), F.col("I.VALUE").alias("VALUE"))
            .agg(F.count(F.lit(1)).alias("N")))


def flag_deaths(deaths: DataFrame, *, earliest: dt.date = EARLIEST_DATE,
                latest: dt.date | None = None) -> DataFrame:
    """ONS deaths with ``HESID, DOD, SOURCE_FILE, REASON, FIELD, VALUE, FYEAR`` (financial year of DOD)."""
    latest = latest or dt.date.today()
    checks = [
        _check(F.col("_CORRUPT").isNotNull(), "MALFORMED_LINE", "", F.lit("")),
        _check(F.col("HESID").isNull(), "MISSING_VALUE", "HESID", F.lit("")),
        _check(F.col("_BAD_DOD").isNotNull(), "INVALID_DATE", "DOD", F.col("_BAD_DOD")),
        _check(F.col("DOD").isNull(), "MISSING_VALUE", "DOD", F.lit("")),
        _check(~F.col("DOD").between(F.lit(earliest), F.lit(latest)), "IMPLAUSIBLE_DATE", "DOD", F.col("DOD")),
    ]
    problem = F.coalesce(*checks)
    return deaths.select(
        "HESID", "DOD", "SOURCE_FILE", problem.REASON.alias("REASON"), problem.FIELD.alias("FIELD"),
        problem.VALUE.alias("VALUE"), financial_year(F.col("DOD")).alias("FYEAR"))


def split_deaths(flagged: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(accepted ``HESID, DOD``, rejects) from :func:`flag_deaths`."""
    accepted = flagged.where(F.col("REASON").isNull()).select("HESID", "DOD")
    rejects = flagged.where(F.col("REASON").isNotNull()).select(
        "SOURCE_FILE", F.lit(None).cast("string").alias("EPIKEY"), F.lit(None).cast("string").alias("PROCODE3"),
        "REASON", "FIELD", "VALUE")
    return accepted, rejects


def validate_deaths(deaths: DataFrame, **bounds) -> tuple[DataFrame, DataFrame]:
    """Split ONS deaths into (accepted ``HESID, DOD``, rejects with reasons)."""
    return split_deaths(flag_deaths(deaths, **bounds))
