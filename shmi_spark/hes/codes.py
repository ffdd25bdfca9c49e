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
    "PALLIATIVE_SPECIALTY", "ADMIMETH_EMERGENCY", "ADMISORC_HOME", "ADMISORC_OTHER_HOSPITAL",
    "ADMISORC_CARE_HOME", "ADMISORC_BIRTH", "ADMISORC_OTHER", "ADMISORC_NOT_KNOWN", "ADMISORC_CODES",
    "TRANSFER_HOSPITAL", "ADMIMETH_TRANSFER",
    "ICD10_PATTERN", "icd10_code", "is_valid_icd10", "financial_year",
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

#: ``ADMIMETH`` of an emergency admission (the HSMR's ``EMERGENCY`` and prior emergency admissions):
#: 21 emergency department, 22 GP, 23 bed bureau, 24 consultant clinic, 25 mental health crisis team,
#: 2A another provider's emergency department, 2B emergency transfer from another hospital provider,
#: 2C baby born at home as intended, 2D other emergency, 28 other means (HES, before 2A–2D).
ADMIMETH_EMERGENCY = ("21", "22", "23", "24", "25", "2A", "2B", "2C", "2D", "28")

# ``ADMISORC``, source of admission (HES data dictionary; the spell's value is its first episode's),
# grouped into the HSMR's source-of-admission levels (:func:`shmi_spark.hes.covariates.admission_source_category`).
#: 19 usual place of residence (including no fixed abode), 29 temporary place of residence.
ADMISORC_HOME = ("19", "29")
#: 49–53 NHS other hospital provider (49 high security psychiatric, 50 medium secure unit, 51 general
#: ward or emergency department, 52 maternity or neonates, 53 mental illness or learning disabilities),
#: 87 non-NHS run hospital; historic codes 30 repatriation from a high security psychiatric hospital,
#: 48 high security psychiatric hospital, Scotland.
ADMISORC_OTHER_HOSPITAL = ("30", "48", "49", "50", "51", "52", "53", "87")
#: 54 NHS run care home, 65 local authority residential accommodation where care is provided,
#: 85 non-NHS (other than local authority) run care home, 88 non-NHS run hospice; historic codes
#: 69 local authority home or care, 86 non-NHS run nursing home.
ADMISORC_CARE_HOME = ("54", "65", "69", "85", "86", "88")
#: 79 babies born in or on the way to hospital.
ADMISORC_BIRTH = ("79",)
#: The other valid codes: 37 court, 38 police station, 39 penal establishment, court or police
#: station, 40 penal establishment, 42 police station or custody suite, 66 local authority foster
#: care, 89 non-NHS institution (historic).
ADMISORC_OTHER = ("37", "38", "39", "40", "42", "66", "89")
#: 98 not applicable, 99 not known (with null and any code not listed here: the ``unknown`` level).
ADMISORC_NOT_KNOWN = ("98", "99")
ADMISORC_CODES = (ADMISORC_HOME + ADMISORC_OTHER_HOSPITAL + ADMISORC_CARE_HOME + ADMISORC_BIRTH + ADMISORC_OTHER
                  + ADMISORC_NOT_KNOWN)

#: A transfer between hospital providers (continuous inpatient spells, :mod:`shmi_spark.hes.superspells`):
#: the previous spell's ``DISDEST`` or this spell's ``ADMISORC`` is an NHS hospital provider (49–53;
#: METHOD.md §1 also names 84 and 87, non-NHS hospitals, whose spells are not in the spell table), or this
#: spell's ``ADMIMETH`` is 81 (transfer of an admitted patient from another hospital provider, not in
#: an emergency).
TRANSFER_HOSPITAL = ("49", "50", "51", "52", "53")
ADMIMETH_TRANSFER = ("81",)

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
