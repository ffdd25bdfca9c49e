"""Validate: every input row is accepted (typed) or rejected with a reason.

Row-level problems never crash the run and are never dropped silently
(METHOD.md §1).  Each episode gets the first failing check, in this order:

==============================  =============================================
reason                          when
==============================  =============================================
``MALFORMED_LINE``              a delimited line that does not parse
``MISSING_VALUE``               ``HESID``, ``EPIKEY``, ``PROCODE3`` or ``ADMIDATE`` blank
``INVALID_DATE``                a date present but unparseable or impossible
``INVALID_CODE``                a coded field outside the HES data dictionary
                                (``EPISTAT, CLASSPAT, DISMETH, ADMIMETH, SEX,
                                STARTAGE, EPIORDER``)
``UNKNOWN_PROVIDER``            ``PROCODE3`` not in the trust reference
``EPISODE_ENDS_BEFORE_START``   ``EPIEND`` < ``EPISTART``
``EPISODE_STARTS_BEFORE_ADMISSION``  ``EPISTART`` < ``ADMIDATE``
``DISCHARGE_BEFORE_ADMISSION``  ``DISDATE`` < ``ADMIDATE``
``DUPLICATE_EPIKEY``            a second row with an ``EPIKEY`` already seen
                                (the first valid row, by content, is kept)
==============================  =============================================

Deaths: ``MALFORMED_LINE``, ``MISSING_VALUE`` (``HESID``, ``DOD``),
``INVALID_DATE`` (``DOD``).  Blank values and HES null codes are not errors:
they become the covariates' ``unknown`` levels (METHOD.md §2, §4).

Rejects carry ``SOURCE_FILE, EPIKEY, PROCODE3, REASON, FIELD, VALUE`` and never
the patient identifier.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from .codes import blank_to_null, date_is_invalid, normalise_code, parse_date
from .ingest import SECONDARY_DIAGS

EPISTAT_CODES = ("1", "3", "9")
CLASSPAT_CODES = ("1", "2", "3", "4", "5", "8", "9")
DISMETH_CODES = ("1", "2", "3", "4", "5", "8", "9")
SEX_CODES = ("0", "1", "2", "9")
ADMIMETH_ELECTIVE = ("11", "12", "13")
ADMIMETH_NON_ELECTIVE = (
    "21", "22", "23", "24", "25", "2A", "2B", "2C", "2D", "28", "31", "32",
    "81", "82", "83", "84", "89", "98",
)
ADMIMETH_UNKNOWN = ("99",)
DATE_FIELDS = ("ADMIDATE", "EPISTART", "EPIEND", "DISDATE")
REJECT_COLUMNS = ("SOURCE_FILE", "EPIKEY", "PROCODE3", "REASON", "FIELD", "VALUE")


def _check(cond: Column, reason: str, field: str, value: Column) -> Column:
    return F.when(cond, F.struct(F.lit(reason).alias("REASON"), F.lit(field).alias("FIELD"),
                                 value.cast("string").alias("VALUE")))


def _code_outside(field: str, allowed: tuple[str, ...]) -> Column:
    v = F.upper(blank_to_null(F.col(field)))
    return v.isNotNull() & ~v.isin(*allowed)


def _first_problem(checks: list[Column]) -> Column:
    """The first failing check (``coalesce`` stops at the first non-null: later checks are not evaluated)."""
    return F.coalesce(*checks)


def episode_checks(trust_codes: list[str]) -> list[Column]:
    """The row checks, in order; each a struct(REASON, FIELD, VALUE) or null."""
    age = blank_to_null(F.col("STARTAGE")).try_cast("int")
    age_text = blank_to_null(F.col("STARTAGE"))
    epiorder = blank_to_null(F.col("EPIORDER")).try_cast("int")
    checks = [_check(F.col("_CORRUPT").isNotNull(), "MALFORMED_LINE", "", F.lit(""))]
    for field in ("HESID", "EPIKEY", "PROCODE3"):
        checks.append(_check(blank_to_null(F.col(field)).isNull(), "MISSING_VALUE", field, F.lit("")))
    for field in DATE_FIELDS:
        checks.append(_check(date_is_invalid(F.col(field)), "INVALID_DATE", field, F.col(field)))
    checks.append(_check(parse_date(F.col("ADMIDATE")).isNull(), "MISSING_VALUE", "ADMIDATE", F.lit("")))
    checks += [
        _check(_code_outside("EPISTAT", EPISTAT_CODES), "INVALID_CODE", "EPISTAT", F.col("EPISTAT")),
        _check(_code_outside("CLASSPAT", CLASSPAT_CODES), "INVALID_CODE", "CLASSPAT", F.col("CLASSPAT")),
        _check(_code_outside("DISMETH", DISMETH_CODES), "INVALID_CODE", "DISMETH", F.col("DISMETH")),
        _check(_code_outside("ADMIMETH", ADMIMETH_ELECTIVE + ADMIMETH_NON_ELECTIVE + ADMIMETH_UNKNOWN),
               "INVALID_CODE", "ADMIMETH", F.col("ADMIMETH")),
        _check(_code_outside("SEX", SEX_CODES), "INVALID_CODE", "SEX", F.col("SEX")),
        _check(age_text.isNotNull() & (age.isNull() | ~(age.between(0, 120) | age.between(7001, 7007)
                                                        | (age == 999))),
               "INVALID_CODE", "STARTAGE", F.col("STARTAGE")),
        _check(blank_to_null(F.col("EPIORDER")).isNotNull() & (epiorder.isNull() | (epiorder < 1)),
               "INVALID_CODE", "EPIORDER", F.col("EPIORDER")),
        _check(~F.upper(F.trim(F.col("PROCODE3"))).isin(*trust_codes) if trust_codes else F.lit(False),
               "UNKNOWN_PROVIDER", "PROCODE3", F.col("PROCODE3")),
        _check(parse_date(F.col("EPIEND")) < parse_date(F.col("EPISTART")),
               "EPISODE_ENDS_BEFORE_START", "EPIEND", F.col("EPIEND")),
        _check(parse_date(F.col("EPISTART")) < parse_date(F.col("ADMIDATE")),
               "EPISODE_STARTS_BEFORE_ADMISSION", "EPISTART", F.col("EPISTART")),
        _check(parse_date(F.col("DISDATE")) < parse_date(F.col("ADMIDATE")),
               "DISCHARGE_BEFORE_ADMISSION", "DISDATE", F.col("DISDATE")),
    ]
    return checks


def typed_episode_columns() -> list[Column]:
    """The accepted episode's typed columns (the contract read by ``spells``)."""
    imd_decile = blank_to_null(F.col("IMD04_DECILE")).try_cast("int")
    imd_quintile = blank_to_null(F.col("IMD04_QUINTILE")).try_cast("int")
    secondary = F.filter(F.array(*[normalise_code(F.col(c)) for c in SECONDARY_DIAGS]),
                         lambda c: c.isNotNull())
    return [
        F.trim(F.col("HESID")).alias("HESID"),
        F.trim(F.col("EPIKEY")).alias("EPIKEY"),
        F.upper(F.trim(F.col("PROCODE3"))).alias("PROCODE3"),
        blank_to_null(F.col("PROVSPNOPS")).alias("PROVSPNOPS"),
        blank_to_null(F.col("EPIORDER")).try_cast("int").alias("EPIORDER"),
        blank_to_null(F.col("EPISTAT")).alias("EPISTAT"),
        parse_date(F.col("ADMIDATE")).alias("ADMIDATE"),
        parse_date(F.col("EPISTART")).alias("EPISTART"),
        parse_date(F.col("EPIEND")).alias("EPIEND"),
        parse_date(F.col("DISDATE")).alias("DISDATE"),
        F.upper(blank_to_null(F.col("ADMIMETH"))).alias("ADMIMETH"),
        blank_to_null(F.col("ADMISORC")).alias("ADMISORC"),
        blank_to_null(F.col("DISDEST")).alias("DISDEST"),
        blank_to_null(F.col("DISMETH")).alias("DISMETH"),
        blank_to_null(F.col("CLASSPAT")).alias("CLASSPAT"),
        blank_to_null(F.col("STARTAGE")).try_cast("int").alias("STARTAGE"),
        blank_to_null(F.col("SEX")).alias("SEX"),
        normalise_code(F.col("DIAG_4_01")).alias("DIAG_PRIMARY_RAW"),
        secondary.alias("DIAG_SECONDARY"),
        blank_to_null(F.col("BIRWEIT_1")).try_cast("int").alias("BIRWEIT_1"),
        F.coalesce(F.ceil(imd_decile / 2).cast("int"), imd_quintile).alias("IMD_QUINTILE_RAW"),
        blank_to_null(F.col("TRETSPEF")).alias("TRETSPEF"),
    ]


def _content_hash(columns: list[str]) -> Column:
    """A hash of a row's raw content: the deterministic tie-break between rows sharing a key."""
    return F.xxhash64(*[F.coalesce(F.col(c), F.lit("\u0000")) for c in columns])


def duplicate_keys(episodes: DataFrame) -> DataFrame:
    """The ``EPIKEY`` values (trimmed, non-blank) held by more than one raw episode: ``_DUP_KEY``.

    A key-only aggregation: the shuffle carries keys, not the wide rows.
    """
    key = blank_to_null(F.col("EPIKEY"))
    return (episodes.select(key.alias("_KEY")).where(F.col("_KEY").isNotNull())
            .groupBy("_KEY").agg(F.count(F.lit(1)).alias("N"))
            .where(F.col("N") > 1).select(F.col("_KEY").alias("_DUP_KEY")))


def flag_episodes(episodes: DataFrame, trust_codes: list[str], *, dup_keys: DataFrame | None = None,
                  broadcast_dup_keys: bool = False) -> DataFrame:
    """Every raw episode with its typed columns and its reject columns (null when accepted).

    ``episodes`` is the output of :func:`shmi_spark.ingest.read_episodes`.
    The result has the typed columns of :func:`typed_episode_columns` plus
    ``SOURCE_FILE, RAW_EPIKEY, RAW_PROCODE3, REASON, FIELD, VALUE``; materialise
    it once and split it with :func:`split_flagged`.  ``dup_keys`` is
    :func:`duplicate_keys` of the same episodes (computed here when not given);
    ``broadcast_dup_keys`` (for a caller who counted them and found few) joins
    it by broadcast, so the wide rows are not shuffled at all.
    """
    raw_cols = [c for c in episodes.columns if c not in ("_CORRUPT", "SOURCE_FILE")]
    checked = episodes.withColumn("_KEY", blank_to_null(F.col("EPIKEY"))).withColumn(
        "_PROBLEM", _first_problem(episode_checks(trust_codes)))
    # Duplicate keys are rare: find them with a key-only aggregation (a narrow shuffle),
    # then order only the rows that share a key; the wide rows are never sorted.
    if dup_keys is None:
        dup_keys = duplicate_keys(episodes)
    if broadcast_dup_keys:
        dup_keys = F.broadcast(dup_keys)
    marked = checked.join(dup_keys, on=F.col("_KEY") == F.col("_DUP_KEY"), how="left")
    order = Window.partitionBy("_KEY").orderBy(
        F.col("_PROBLEM").isNotNull().asc(), _content_hash(raw_cols).asc(),
        F.col("SOURCE_FILE").asc_nulls_last())
    shared = marked.where(F.col("_DUP_KEY").isNotNull())
    shared = shared.withColumn("_PROBLEM", F.coalesce(F.col("_PROBLEM"), _check(
        F.row_number().over(order) > 1, "DUPLICATE_EPIKEY", "EPIKEY", F.col("EPIKEY"))))
    flagged = marked.where(F.col("_DUP_KEY").isNull()).unionByName(shared)
    return flagged.select(
        *typed_episode_columns(), F.col("SOURCE_FILE"),
        F.col("EPIKEY").alias("RAW_EPIKEY"), F.col("PROCODE3").alias("RAW_PROCODE3"),
        F.col("_PROBLEM.REASON").alias("REASON"), F.col("_PROBLEM.FIELD").alias("FIELD"),
        F.col("_PROBLEM.VALUE").alias("VALUE"))


def split_flagged(flagged: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(accepted typed episodes, rejects) from :func:`flag_episodes`."""
    typed = [c for c in flagged.columns
             if c not in ("SOURCE_FILE", "RAW_EPIKEY", "RAW_PROCODE3", "REASON", "FIELD", "VALUE")]
    accepted = flagged.where(F.col("REASON").isNull()).select(*typed)
    rejects = flagged.where(F.col("REASON").isNotNull()).select(
        "SOURCE_FILE", F.col("RAW_EPIKEY").alias("EPIKEY"), F.col("RAW_PROCODE3").alias("PROCODE3"),
        "REASON", "FIELD", "VALUE")
    return accepted, rejects


def validate_episodes(episodes: DataFrame, trust_codes: list[str]) -> tuple[DataFrame, DataFrame]:
    """Split raw episodes into (accepted typed episodes, rejects with reasons)."""
    return split_flagged(flag_episodes(episodes, trust_codes))


def validate_deaths(deaths: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Split raw ONS deaths into (accepted ``HESID, DOD``, rejects with reasons)."""
    checks = [
        _check(F.col("_CORRUPT").isNotNull(), "MALFORMED_LINE", "", F.lit("")),
        _check(blank_to_null(F.col("HESID")).isNull(), "MISSING_VALUE", "HESID", F.lit("")),
        _check(date_is_invalid(F.col("DOD")), "INVALID_DATE", "DOD", F.col("DOD")),
        _check(parse_date(F.col("DOD")).isNull(), "MISSING_VALUE", "DOD", F.lit("")),
    ]
    flagged = deaths.withColumn("_PROBLEM", _first_problem(checks))
    accepted = flagged.where(F.col("_PROBLEM").isNull()).select(
        F.trim(F.col("HESID")).alias("HESID"), parse_date(F.col("DOD")).alias("DOD"))
    rejects = flagged.where(F.col("_PROBLEM").isNotNull()).select(
        F.col("SOURCE_FILE"), F.lit(None).cast("string").alias("EPIKEY"),
        F.lit(None).cast("string").alias("PROCODE3"),
        F.col("_PROBLEM.REASON").alias("REASON"), F.col("_PROBLEM.FIELD").alias("FIELD"),
        F.col("_PROBLEM.VALUE").alias("VALUE"))
    return accepted, rejects
