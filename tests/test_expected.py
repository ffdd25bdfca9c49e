"""Scoring spells with the group models (METHOD.md §5, §6)."""

from __future__ import annotations

import math
from datetime import date

import pandas as pd
import pytest
from chispa import assert_approx_df_equality
from pyspark.sql import functions as F

from shmi_spark.model.scoring import (expected_by_trust, expected_by_trust_group, rescale_factor,
                                 score_spells)

WS, WE = date(2017, 4, 1), date(2020, 3, 31)


def _coefs():
    rows = [
        # group 10: a model
        (10, "INTERCEPT", "", -2.0, 0.1, False),
        (10, "AGE_BAND", "45-49", 0.0, None, True),
        (10, "AGE_BAND", "50-54", 0.5, 0.05, False),
        (10, "SEX_CAT", "male", 0.0, None, True),
        (10, "SEX_CAT", "female", -0.3, 0.04, False),
        (10, "ADMIMETH_CAT", "elective", 0.0, None, True),
        (10, "ADMIMETH_CAT", "non-elective", 1.0, 0.03, False),
        (10, "ADM_MONTH", "1", 0.0, None, True),
        (10, "ADM_MONTH", "3", 0.1, 0.02, False),
        (10, "YEAR_INDEX", "1", 0.0, None, True),
        (10, "YEAR_INDEX", "2", 0.2, 0.02, False),
        (10, "YEAR_INDEX", "3", 0.3, 0.02, False),
        (10, "CHARLSON_BAND", "0", 0.0, None, True),
        (10, "CHARLSON_BAND", ">5", 1.2, 0.1, False),
        # group 11: perinatal model with birth weight, very negative intercept
        (11, "INTERCEPT", "", -40.0, None, False),
        (11, "BIRWEIT_BAND", "<1000", 3.0, None, False),
        # group 12: crude rate
        (12, "CRUDE_RATE", "", 0.25, 0.01, False),
        # group 13: crude rate 0 (no deaths)
        (13, "CRUDE_RATE", "", 0.0, 0.0, False),
    ]
    return pd.DataFrame(rows, columns=["DIAG_GROUP", "TERM", "LEVEL", "ESTIMATE", "STD_ERROR", "REFERENCE"])


def _logistic(x):
    return 1 / (1 + math.exp(-x))


SPELL_COLS = ["SPELL_ID", "PROCODE3", "DIAG_GROUP", "DISDATE", "AGE_BAND", "SEX_CAT", "ADMIMETH_CAT",
              "ADM_MONTH", "CHARLSON_BAND", "BIRWEIT_BAND", "DIED"]
SPELLS = [
    # id    trust  grp  DISDATE              age      sex       admimeth        mon  charl  birweit  died
    ("a", "RA1", 10, date(2017, 5, 1), "45-49", "male", "elective", 1, "0", "n/a", 0),        # all references
    ("b", "RA1", 10, date(2018, 5, 1), "50-54", "female", "non-elective", 3, ">5", "n/a", 1),  # every term, year 2
    ("c", "RA1", 10, date(2020, 6, 1), "90+", "male", "elective", 7, "1-5", "n/a", 0),         # unseen levels; after window -> year 3
    ("d", "RB2", 10, date(2016, 6, 1), "50-54", None, "elective", 1, "0", "n/a", 1),           # before window -> year 1; null sex
    ("e", "RB2", 11, date(2019, 5, 1), "<1", "female", "elective", 2, "0", "<1000", 0),
    ("f", "RB2", 12, date(2019, 5, 1), "60-64", "male", "elective", 2, "0", "n/a", 1),
    ("g", "RC3", 13, date(2019, 5, 1), "60-64", "male", "elective", 2, "0", "n/a", 0),
    ("h", "RC3", 99, date(2019, 5, 1), "60-64", "male", "elective", 2, "0", "n/a", 0),         # no model
]
WANT_P = {
    "a": _logistic(-2.0),
    "b": _logistic(-2.0 + 0.5 - 0.3 + 1.0 + 0.1 + 0.2 + 1.2),
    "c": _logistic(-2.0 + 0.3),
    "d": _logistic(-2.0 + 0.5),
    "e": math.exp(-37.0) / (1 + math.exp(-37.0)),
    "f": 0.25,
    "g": 0.0,
    "h": None,
}


@pytest.fixture(scope="module")
def spells(spark):
    schema = ("SPELL_ID string, PROCODE3 string, DIAG_GROUP int, DISDATE date, AGE_BAND string, "
              "SEX_CAT string, ADMIMETH_CAT string, ADM_MONTH int, CHARLSON_BAND string, "
              "BIRWEIT_BAND string, DIED int")
    return spark.createDataFrame(SPELLS, schema)


@pytest.mark.parametrize("window_end", [WE, None])
def test_hand_computed_probabilities(spark, spells, window_end):
    scored = score_spells(spells, _coefs(), window_start=WS, window_end=window_end)
    assert scored.columns == [*SPELL_COLS, "P_EXPECTED"]
    assert dict(scored.dtypes)["P_EXPECTED"] == "double"
    got = scored.select("SPELL_ID", "P_EXPECTED")
    want = spark.createDataFrame([(k, v) for k, v in WANT_P.items()], "SPELL_ID string, P_EXPECTED double")
    assert_approx_df_equality(got, want, precision=1e-15, ignore_row_order=True)
    # relative accuracy where the probability is tiny
    e = scored.where("SPELL_ID = 'e'").first().P_EXPECTED
    assert e == pytest.approx(WANT_P["e"], rel=1e-12)


def test_coefficients_as_spark_dataframe(spark, spells):
    coefs = spark.createDataFrame(_coefs().astype({"STD_ERROR": "float64"}))
    got = score_spells(spells, coefs, window_start=WS, window_end=WE).where("SPELL_ID = 'b'").first()
    assert got.P_EXPECTED == pytest.approx(WANT_P["b"], rel=1e-14)


def test_without_window_end_k_from_coefficients(spark, spells):
    # only levels 1..2 of YEAR_INDEX in the table: k = 2, 'c' (after the window) gets 2
    coefs = _coefs()
    coefs = coefs[~((coefs["TERM"] == "YEAR_INDEX") & (coefs["LEVEL"] == "3"))]
    got = score_spells(spells, coefs, window_start=WS).where("SPELL_ID = 'c'").first()
    assert got.P_EXPECTED == pytest.approx(_logistic(-2.0 + 0.2), rel=1e-14)


def test_infinite_estimate_rejected(spells):
    coefs = _coefs()
    coefs.loc[0, "ESTIMATE"] = float("-inf")
    with pytest.raises(ValueError):
        score_spells(spells, coefs, window_start=WS, window_end=WE)


def test_expected_by_trust_sums(spark, spells):
    scored = score_spells(spells, _coefs(), window_start=WS, window_end=WE)
    by_trust = expected_by_trust(scored)
    assert by_trust.columns == ["PROCODE3", "SPELLS", "OBSERVED", "EXPECTED"]
    pdf = pd.DataFrame(SPELLS, columns=SPELL_COLS).assign(P=[WANT_P[s[0]] for s in SPELLS])
    want = (pdf.groupby("PROCODE3").agg(SPELLS=("P", "size"), OBSERVED=("DIED", "sum"),
                                        EXPECTED=("P", lambda s: s.fillna(0).sum()))
            .reset_index())
    want_sdf = spark.createDataFrame(want.astype({"SPELLS": "int64", "OBSERVED": "int64"}),
                                     "PROCODE3 string, SPELLS long, OBSERVED long, EXPECTED double")
    assert_approx_df_equality(by_trust, want_sdf, precision=1e-12, ignore_nullable=True)

    by_tg = expected_by_trust_group(scored)
    assert by_tg.columns == ["PROCODE3", "DIAG_GROUP", "SPELLS", "OBSERVED", "EXPECTED"]
    rows = {(r.PROCODE3, r.DIAG_GROUP): r for r in by_tg.collect()}
    assert rows[("RA1", 10)].SPELLS == 3 and rows[("RA1", 10)].OBSERVED == 1
    assert rows[("RA1", 10)].EXPECTED == pytest.approx(WANT_P["a"] + WANT_P["b"] + WANT_P["c"], rel=1e-14)
    total = by_tg.agg(F.sum("EXPECTED")).first()[0]
    assert total == pytest.approx(by_trust.agg(F.sum("EXPECTED")).first()[0], rel=1e-14)


def test_rescale_factor():
    assert rescale_factor(120, 100.0) == pytest.approx(1.2)
    assert rescale_factor(0, 0.0) == 1.0
    with pytest.raises(ValueError):
        rescale_factor(5, 0.0)
    with pytest.raises(ValueError):
        rescale_factor(5, float("nan"))
    with pytest.raises(ValueError):
        rescale_factor(-1, 3.0)


def test_lookups_are_broadcast_joins(spells):
    scored = score_spells(spells, _coefs(), window_start=WS, window_end=WE)
    plan = scored._jdf.queryExecution().executedPlan().toString()
    assert plan.count("BroadcastHashJoin") == 9  # intercept, crude rate, 7 terms
    assert "SortMergeJoin" not in plan and "BroadcastNestedLoopJoin" not in plan
