"""The column functions of METHOD.md §1–4, each tested directly: input beside expected, one Spark job.

Each test builds a small DataFrame with the input column(s) and an ``EXPECTED``
column, adds the function's result as ``GOT`` and compares the two with
:func:`chispa.assert_column_equality`.  What needs the whole chain (spells from
episodes, the diagnosis lookup, the death linkage, the raw text reaching a
level) is tested on the batched cases of ``test_spells.py``.
"""

from __future__ import annotations

import datetime as dt

from chispa import assert_column_equality
from pyspark.sql import Column
from pyspark.sql import functions as F
from spell_cases import CHARLSON

from shmi_spark.hes.charlson import charlson_band, charlson_score
from shmi_spark.hes.codes import financial_year, icd10_code, is_valid_icd10
from shmi_spark.hes.covariates import admission_method_category, age_band, birth_weight_band, imd_fifth, sex_category
from shmi_spark.hes.diagnosis import primary_diagnosis
from shmi_spark.hes.spells import episode_is_palliative, spell_key

D = dt.date.fromisoformat


def assert_column(spark, rows: list[tuple], schema: str, got: Column) -> None:
    """``got`` computed on ``rows`` (whose last column is ``EXPECTED``) equals ``EXPECTED``, row by row."""
    df = spark.createDataFrame(rows, schema=schema).withColumn("GOT", got)
    assert_column_equality(df, "GOT", "EXPECTED")


# ---- covariates (METHOD.md §4) ------------------------------------------------------------------------------------

def test_age_band(spark):
    """Five-year bands except <1 and 1-4, 90+; 7001-7007 are under one; 999 and missing are unknown."""
    ages = [(0, "<1"), (1, "1-4"), (4, "1-4"), (5, "5-9"), (14, "10-14"), (89, "85-89"), (90, "90+"),
            (104, "90+"), (120, "90+"), (7001, "<1"), (7003, "<1"), (7007, "<1"), (999, "unknown"),
            (None, "unknown")]
    assert_column(spark, ages, "STARTAGE int, EXPECTED string", age_band(F.col("STARTAGE")))


def test_sex_category(spark):
    rows = [("1", "male"), ("2", "female"), ("0", "unknown"), ("9", "unknown"), (None, "unknown")]
    assert_column(spark, rows, "SEX string, EXPECTED string", sex_category(F.col("SEX")))


def test_admission_method_category(spark):
    rows = [("11", "elective"), ("12", "elective"), ("13", "elective"), ("21", "non-elective"),
            ("2A", "non-elective"), ("31", "non-elective"), ("81", "non-elective"), ("98", "non-elective"),
            ("99", "unknown"), (None, "unknown")]
    assert_column(spark, rows, "ADMIMETH string, EXPECTED string", admission_method_category(F.col("ADMIMETH")))


def test_birth_weight_band(spark):
    """Bands in grams in a perinatal group; 9999 or missing unknown; ``n/a`` outside the perinatal groups."""
    rows = [(850, True, "<1000"), (999, True, "<1000"), (1000, True, "1000-2499"), (2499, True, "1000-2499"),
            (3200, True, "2500-4499"), (4500, True, "4500+"), (9999, True, "unknown"), (None, True, "unknown"),
            (3200, False, "n/a"), (None, False, "n/a")]
    assert_column(spark, rows, "BIRWEIT_1 int, PERINATAL boolean, EXPECTED string",
                  birth_weight_band(F.col("BIRWEIT_1"), F.col("PERINATAL")))


def test_imd_fifth(spark):
    """HES quintile 1 (most deprived) is fifth ``5``; quintile 5 is ``1``; missing is ``unknown``."""
    rows = [(1, "5"), (2, "4"), (3, "3"), (5, "1"), (None, "unknown")]
    assert_column(spark, rows, "IMD_QUINTILE_RAW int, EXPECTED string", imd_fifth(F.col("IMD_QUINTILE_RAW")))


# ---- Charlson (METHOD.md §4) --------------------------------------------------------------------------------------

CODES = "CODES array<string>"


def test_charlson_each_condition_once_and_floor_at_zero(spark):
    rows = [
        (["I210", "I252", "I219"], 5),          # AMI twice (two prefixes) counts once: 5
        (["E102"], 0),                          # diabetes complications alone: -1 floored at 0
        (["E119", "E112"], 2),                  # diabetes + complications: 3 - 1 = 2
        (["C349", "C787", "I500"], 35),         # cancer + metastatic + CHF: 8 + 14 + 13 (no hierarchy)
        ([], 0),
    ]
    assert_column(spark, rows, f"{CODES}, EXPECTED int",
                  charlson_score(F.col("CODES"), CHARLSON, hierarchy=False))


def test_charlson_hierarchy_option(spark):
    """Metastatic cancer supersedes cancer, severe supersedes mild liver disease, only with the option."""
    codes = ["C349", "C787", "K703", "K721"]
    for hierarchy, expected in ((False, 8 + 14 + 8 + 18), (True, 14 + 18)):
        assert_column(spark, [(codes, expected), (["C349", "K703"], 8 + 8)], f"{CODES}, EXPECTED int",
                      charlson_score(F.col("CODES"), CHARLSON, hierarchy=hierarchy))


def test_charlson_band(spark):
    rows = [(0, "0"), (1, "1-5"), (2, "1-5"), (5, "1-5"), (6, ">5"), (35, ">5")]
    assert_column(spark, rows, "SCORE int, EXPECTED string", charlson_band(F.col("SCORE")))


# ---- codes (METHOD.md §1) -----------------------------------------------------------------------------------------

def test_icd10_code_lower_case_dotted_and_three_character(spark):
    """Upper case, no dots, dashes or spaces, 3 characters padded with X, longer codes cut to 4; blank is null."""
    rows = [("i21.9", "I219"), ("e11.9", "E119"), ("a09", "A09X"), (" c34-1 ", "C341"), ("J18.1", "J181"),
            ("I500", "I500"), ("I2191", "I219"), ("", None), ("  ", None), (None, None)]
    assert_column(spark, rows, "RAW string, EXPECTED string", icd10_code(F.col("RAW")))


def test_is_valid_icd10(spark):
    """The shape of a normalised code: letter, two digits, digit or X; null is not valid."""
    rows = [("I219", True), ("A09X", True), ("U071", True), ("ZZZZ", False), ("I2X9", False), (None, False)]
    assert_column(spark, rows, "CODE string, EXPECTED boolean", is_valid_icd10(F.col("CODE")))


def test_financial_year(spark):
    """April to March, named by its first calendar year."""
    rows = [(D("2008-01-20"), 2007), (D("2008-03-31"), 2007), (D("2008-04-01"), 2008), (D("2005-04-01"), 2005),
            (None, None)]
    assert_column(spark, rows, "DAY date, EXPECTED int", financial_year(F.col("DAY")))


# ---- spells (METHOD.md §2, §7) ------------------------------------------------------------------------------------

def test_spell_key_without_provspnops(spark):
    """``PROCODE3:PROVSPNOPS``, or ``HESID:PROCODE3:ADMIDATE`` when PROVSPNOPS is missing."""
    rows = [("P1", "RA1", "S1", D("2008-01-10"), "RA1:S1"),
            ("P1", "RA1", None, D("2008-01-10"), "P1:RA1:2008-01-10"),
            ("P1", "RA1", None, D("2008-03-01"), "P1:RA1:2008-03-01")]
    assert_column(spark, rows, "HESID string, PROCODE3 string, PROVSPNOPS string, ADMIDATE date, EXPECTED string",
                  spell_key())


def test_episode_is_palliative(spark):
    """Z515 in the primary or any secondary position, or treatment specialty 315."""
    rows = [("I219", ["I10X", "E119"], None, 0), ("I219", [], "315", 1), ("I219", ["I10X", "Z515"], None, 1),
            ("Z515", [], None, 1), ("I219", [], "300", 0), (None, None, None, 0)]
    assert_column(spark, rows,
                  "DIAG_PRIMARY_RAW string, DIAG_SECONDARY array<string>, TRETSPEF string, EXPECTED int",
                  episode_is_palliative())


# ---- diagnosis (METHOD.md §2) -------------------------------------------------------------------------------------

PRIMARY = [("R069", "J189", "R069", "J189"),   # a symptom code with a second episode
           ("R069", None, "R069", "R069"),     # a symptom code, no second episode
           ("I219", "J189", "I219", "I219")]   # not a symptom code
PRIMARY_SCHEMA = "DIAG_FIRST string, DIAG_SECOND string, EXPECTED_DEFAULT string, EXPECTED_SYMPTOM string"


def test_primary_diagnosis_is_the_first_episode_by_default(spark):
    df = spark.createDataFrame(PRIMARY, schema=PRIMARY_SCHEMA).withColumn(
        "GOT", primary_diagnosis(symptom_second_episode=False))
    assert_column_equality(df, "GOT", "EXPECTED_DEFAULT")


def test_primary_diagnosis_symptom_second_episode_option(spark):
    df = spark.createDataFrame(PRIMARY, schema=PRIMARY_SCHEMA).withColumn(
        "GOT", primary_diagnosis(symptom_second_episode=True))
    assert_column_equality(df, "GOT", "EXPECTED_SYMPTOM")
