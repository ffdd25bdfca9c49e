"""Spark Column expressions for cleaning HES values (METHOD.md §1).

Real extracts carry dots, dashes, spaces and lower case in ICD-10 codes, blank
strings for nulls, HES's placeholder null dates (1800-01-01, 1801-01-01) and
occasional impossible dates.  These helpers turn them into clean values with
Spark SQL functions only (ANSI-safe ``try_`` functions, no Python UDF).
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

#: HES codes a missing date as one of these.
HES_NULL_DATES = ("1800-01-01", "1801-01-01")

#: A normalised 4-character ICD-10 code: letter, two digits, digit or X filler.
ICD10_PATTERN = r"^[A-Z][0-9]{2}[0-9X]$"


def blank_to_null(col: Column) -> Column:
    """Trimmed string, or null when blank."""
    trimmed = F.trim(col.cast("string"))
    return F.when(trimmed == "", F.lit(None).cast("string")).otherwise(trimmed)


def normalise_code(col: Column) -> Column:
    """Normalise an ICD-10 code (METHOD.md §1).

    Upper case; strip ``.``, ``-`` and white space; pad a 3-character code
    with ``X``; keep the first 4 characters of a longer code (HES's 5th/6th
    characters, such as dagger/asterisk markers, are not part of the 4-char
    field); blank → null.

    >>> df.select(normalise_code(F.col("DIAG_4_01")))  # doctest: +SKIP
    """
    # translate deletes the characters without a counterpart: no regex per value
    cleaned = F.upper(F.translate(col.cast("string"), ".- \t\n\r\f\u000b", ""))
    return (
        F.when(cleaned.isNull() | (F.length(cleaned) == 0), F.lit(None).cast("string"))
        .when(F.length(cleaned) == 3, F.concat(cleaned, F.lit("X")))
        .otherwise(F.substring(cleaned, 1, 4))
    )


def is_valid_icd10(col: Column) -> Column:
    """True when a normalised code has the shape of a 4-char ICD-10 code."""
    return F.coalesce(col.rlike(ICD10_PATTERN), F.lit(False))


def parse_date(col: Column) -> Column:
    """Parse a HES date string to a date; null when blank, a HES null date, or invalid.

    Accepts ``YYYY-MM-DD`` only (and a date-typed column, via its string form):
    a 10-character value with dashes in places 5 and 8, cast by ``try_cast``
    (Spark's own date parser, much faster than a pattern), which is null for
    impossible dates such as 2007-02-30 instead of failing under ANSI mode.
    """
    text = blank_to_null(col)
    shaped = ((F.length(text) == 10) & (F.substring(text, 5, 1) == F.lit("-"))
              & (F.substring(text, 8, 1) == F.lit("-")))
    return F.when(text.isin(*HES_NULL_DATES) | ~shaped, F.lit(None).cast("date")).otherwise(
        text.try_cast("date"))


def date_is_invalid(col: Column) -> Column:
    """True when a value is present (not blank, not a HES null date) but not a valid date."""
    text = blank_to_null(col)
    return text.isNotNull() & ~text.isin(*HES_NULL_DATES) & parse_date(col).isNull()


def parse_int(col: Column) -> Column:
    """Integer value of a string, null when blank or not an integer (ANSI-safe)."""
    return blank_to_null(col).try_cast("int")


def financial_year(date_col: Column) -> Column:
    """Financial year (April–March) by its first calendar year: 2005 for 2005/06."""
    return F.year(date_col) - F.when(F.month(date_col) < 4, 1).otherwise(0)
