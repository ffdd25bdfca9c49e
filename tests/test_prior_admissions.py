"""Rule tests for the HSMR's prior emergency admissions (:mod:`shmi_spark.hes.prior_admissions`).

Small hand-built spells, one patient per rule (so each rule's spells can only count each other),
every rule in one DataFrame and one Spark job; the expected count and band beside each spell.
That the chain counts kept spells only, after the exclusions, is tested in ``test_spells.py``;
that the window adds no shuffle or sort to the spells, in ``test_spells_plan.py``.
"""

from __future__ import annotations

import datetime as dt

import pytest
from chispa import assert_column_equality, assert_df_equality
from pyspark.sql import functions as F

from shmi_spark.hes.codes import ADMIMETH_EMERGENCY
from shmi_spark.hes.covariates import emergency_admission
from shmi_spark.hes.prior_admissions import prior_emergency_admissions

INDEX = dt.date(2009, 3, 1)


def _before(days: int) -> dt.date:
    return INDEX - dt.timedelta(days=days)


#: (HESID, SPELL_ID, ADMIDATE, ADMIMETH, EXCLUSION, expected PRIOR_EMERGENCY, expected band)
CASES = [
    # an emergency 365 days before counts
    ("D365", "prior", _before(365), "21", None, 0, "0"),
    ("D365", "index", INDEX, "11", None, 1, "1"),
    # 366 days before does not
    ("D366", "prior", _before(366), "21", None, 0, "0"),
    ("D366", "index", INDEX, "21", None, 0, "0"),
    # 1 day before counts
    ("D1", "prior", _before(1), "2A", None, 0, "0"),
    ("D1", "index", INDEX, "21", None, 1, "1"),
    # the same day is not prior, either way
    ("SAME", "a", INDEX, "21", None, 0, "0"),
    ("SAME", "b", INDEX, "22", None, 0, "0"),
    # elective, maternity, transfer and unknown admissions do not count
    ("ELECTIVE", "e11", _before(10), "11", None, 0, "0"),
    ("ELECTIVE", "e31", _before(9), "31", None, 0, "0"),
    ("ELECTIVE", "e81", _before(8), "81", None, 0, "0"),
    ("ELECTIVE", "e99", _before(7), "99", None, 0, "0"),
    ("ELECTIVE", "enull", _before(6), None, None, 0, "0"),
    ("ELECTIVE", "index", INDEX, "21", None, 0, "0"),
    # another patient's emergency does not count
    ("OTHER_A", "prior", _before(10), "21", None, 0, "0"),
    ("OTHER_B", "index", INDEX, "21", None, 0, "0"),
    # an excluded spell neither counts nor is counted
    ("EXCLUDED", "prior", _before(10), "21", "DAY_CASE_OR_REGULAR_ATTENDER", None, None),
    ("EXCLUDED", "index", INDEX, "21", None, 0, "0"),
    # the bands: each admission counts the ones before it; 3 and more are 3+
    ("BANDS", "b0", _before(40), "21", None, 0, "0"),
    ("BANDS", "b1", _before(30), "22", None, 1, "1"),
    ("BANDS", "b2", _before(20), "23", None, 2, "2"),
    ("BANDS", "b3", _before(10), "24", None, 3, "3+"),
    ("BANDS", "b4", INDEX, "25", None, 4, "3+"),
    # the oldest drops out of the window
    ("SLIDE", "old", _before(400), "21", None, 0, "0"),
    ("SLIDE", "mid", _before(100), "21", None, 1, "1"),
    ("SLIDE", "index", INDEX, "21", None, 1, "1"),
]
SCHEMA = "HESID string, SPELL_ID string, ADMIDATE date, ADMIMETH string, EXCLUSION string, " \
         "EXPECTED int, EXPECTED_BAND string"


def test_prior_emergency_window_rules(spark):
    spells = spark.createDataFrame(CASES, schema=SCHEMA).repartition(3, "HESID")
    got = prior_emergency_admissions(spells, included=F.col("EXCLUSION").isNull())
    assert got.columns == [*spells.columns, "PRIOR_EMERGENCY", "PRIOR_EMERGENCY_BAND"]
    keys = ["HESID", "SPELL_ID"]
    assert_df_equality(
        got.select(*keys, "PRIOR_EMERGENCY", "PRIOR_EMERGENCY_BAND"),
        spells.select(*keys, F.col("EXPECTED").alias("PRIOR_EMERGENCY"),
                      F.col("EXPECTED_BAND").alias("PRIOR_EMERGENCY_BAND")),
        ignore_row_order=True, ignore_nullable=True)


def test_without_included_every_spell_counts(spark):
    spells = spark.createDataFrame([("P", "a", _before(10), "21"), ("P", "b", INDEX, "21")],
                                   "HESID string, SPELL_ID string, ADMIDATE date, ADMIMETH string")
    got = {r["SPELL_ID"]: r["PRIOR_EMERGENCY"] for r in prior_emergency_admissions(spells).collect()}
    assert got == {"a": 0, "b": 1}


def test_the_look_back_is_an_option(spark):
    spells = spark.createDataFrame([("P", "a", _before(31), "21"), ("P", "b", _before(30), "21"),
                                    ("P", "c", INDEX, "21")],
                                   "HESID string, SPELL_ID string, ADMIDATE date, ADMIMETH string")
    got = {r["SPELL_ID"]: r["PRIOR_EMERGENCY"] for r in prior_emergency_admissions(spells, days=30).collect()}
    assert got == {"a": 0, "b": 1, "c": 1}  # c: b 30 days before counts, a 31 days before does not
    with pytest.raises(ValueError, match="days"):
        prior_emergency_admissions(spells, days=0)


def test_emergency_admission_codes(spark):
    """21–25, 2A–2D and 28 are emergencies; everything else (null included) is not."""
    rows = [(c, 1) for c in ADMIMETH_EMERGENCY] + [(c, 0) for c in ("11", "12", "13", "31", "32", "81", "82", "83",
                                                                     "84", "89", "98", "99", "2E", None)]
    df = spark.createDataFrame(rows, "ADMIMETH string, EXPECTED int").withColumn(
        "GOT", emergency_admission(F.col("ADMIMETH")))
    assert_column_equality(df, "GOT", "EXPECTED")
