"""Spark Column expressions for cleaning HES values (METHOD.md §1).

The HES code sets live here, once.  Real extracts carry dots, dashes, spaces
and lower case in ICD-10 codes.
These helpers turn them into clean values with Spark SQL functions only (no
Python UDF).  Physical types, dates and blanks are the input contract's
business (:mod:`shmi_spark.io.contract`).
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

__all__ = [
    "EPISTAT_CODES", "CLASSPAT_CODES", "DISMETH_CODES", "SEX_CODES", "ADMIMETH_ELECTIVE", "ADMIMETH_NON_ELECTIVE",
    "ADMIMETH_UNKNOWN", "DAY_CASE_OR_REGULAR", "STILLBIRTH", "DIED_IN_HOSPITAL", "FINISHED", "PALLIATIVE_DIAGNOSIS",
    "PALLIATIVE_SPECIALTY", "ICD10_PATTERN", "icd10_code", "is_valid_icd10", "financial_year",
]

#: The HES data dictionary's codes for the fields METHOD.md §1 uses (the one home of these sets).
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
#: ``CLASSPAT`` of day cases and regular day/night attenders (excluded, METHOD.md §2).
DAY_CASE_OR_REGULAR = ("2", "3", "4")
#: ``DISMETH`` codes: stillbirth (excluded), died in hospital (METHOD.md §2–§3).
STILLBIRTH = "5"
DIED_IN_HOSPITAL = "4"
#: ``EPISTAT`` of a finished episode.
FINISHED = "3"
#: Palliative care coding (METHOD.md §7): the diagnosis and the treatment specialty.
PALLIATIVE_DIAGNOSIS = "Z515"
PALLIATIVE_SPECIALTY = "315"

#: A normalised 4-character ICD-10 code: letter, two digits, digit or X filler.
ICD10_PATTERN = r"^[A-Z][0-9]{2}[0-9X]$"


def icd10_code(col: Column) -> Column:
    """The normalised 4-character ICD-10 code of a column (METHOD.md §1).

    The same rule as :func:`shmi_spark.io.reference.normalise_code` applies to
    one Python string (the reference tables).

    Upper case; strip ``.``, ``-`` and white space; pad a 3-character code
    with ``X``; keep the first 4 characters of a longer code (HES's 5th/6th
    characters, such as dagger/asterisk markers, are not part of the 4-char
    field); blank → null.

    >>> df.select(icd10_code(F.col("DIAG_4_01")))  # doctest: +SKIP
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


def financial_year(date_col: Column) -> Column:
    """Financial year (April–March) by its first calendar year: 2005 for 2005/06."""
    return F.year(date_col) - F.when(F.month(date_col) < 4, 1).otherwise(0)
