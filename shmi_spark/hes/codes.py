"""Spark Column expressions for cleaning HES values (METHOD.md §1).

Real extracts carry dots, dashes, spaces and lower case in ICD-10 codes.
These helpers turn them into clean values with Spark SQL functions only (no
Python UDF).  Physical types, dates and blanks are the input contract's
business (:mod:`shmi_spark.io.contract`).
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

#: A normalised 4-character ICD-10 code: letter, two digits, digit or X filler.
ICD10_PATTERN = r"^[A-Z][0-9]{2}[0-9X]$"


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


def financial_year(date_col: Column) -> Column:
    """Financial year (April–March) by its first calendar year: 2005 for 2005/06."""
    return F.year(date_col) - F.when(F.month(date_col) < 4, 1).otherwise(0)
