"""Scoring spells with the group models, per spell and through cell counts (METHOD.md §5, §6)."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd
import pytest
from chispa import assert_approx_df_equality
from pyspark.sql import functions as F

from shmi_spark.indicator.compute import spells_without_valid_probability
from shmi_spark.model.cells import year_index
from shmi_spark.model.scoring import (
    expected_by_trust,
    expected_by_trust_group,
    rescale_factor,
    score_cells,
    score_spells,
)

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
    terms = set(_coefs()["TERM"]) - {"INTERCEPT", "CRUDE_RATE"}
    assert len(terms) == 7  # the SHMI's terms; the HSMR's have no coefficient, so no join
    assert plan.count("BroadcastHashJoin") == 2 + len(terms)  # intercept, crude rate, one per term
    assert "SortMergeJoin" not in plan and "BroadcastNestedLoopJoin" not in plan


# ---- scoring through counts (issue 13): the cells give the same sums as every spell ----

CELL_KEYS = ["PROCODE3", "DIAG_GROUP", "AGE_BAND", "SEX_CAT", "ADMIMETH_CAT", "ADM_MONTH", "YEAR_INDEX",
             "CHARLSON_BAND", "BIRWEIT_BAND",
             # the HSMR's terms: n/a for a spell table without them (the SHMI's)
             "ADMISSION_SOURCE", "DEPRIVATION_FIFTH", "PALLIATIVE_CARE", "PRIOR_EMERGENCY_ADMISSIONS",
             "CHARLSON_INDEX"]


@pytest.fixture(scope="module")
def many_spells(spark, spells):
    """The hand-built spells repeated with varied trusts and deaths: many spells per cell, some cells alone."""
    base = pd.DataFrame(SPELLS, columns=SPELL_COLS)
    rng = np.random.default_rng(13)
    rows = []
    for i in range(400):
        r = base.iloc[i % len(base)].to_dict()
        r["SPELL_ID"] = f"{r['SPELL_ID']}{i}"
        r["PROCODE3"] = ["RA1", "RB2", "RC3"][int(rng.integers(3))]
        r["DIED"] = int(rng.random() < 0.3)
        if i % 7 == 0:  # another discharge year: another YEAR_INDEX cell (clamped at both ends)
            r["DISDATE"] = [date(2015, 1, 1), date(2018, 4, 1), date(2019, 3, 31), date(2021, 1, 1)][i % 4]
        rows.append(r)
    return spark.createDataFrame(pd.DataFrame(rows, columns=SPELL_COLS), spells.schema)


def test_score_cells_counts_and_probabilities(spark, spells):
    cells = score_cells(spells, _coefs(), window_start=WS, window_end=WE)
    assert cells.columns == [*CELL_KEYS, "SPELLS", "DEATHS", "P_EXPECTED"]
    types = dict(cells.dtypes)
    assert (types["SPELLS"], types["DEATHS"], types["P_EXPECTED"], types["YEAR_INDEX"]) == \
        ("bigint", "bigint", "double", "int")
    got = {r.AGE_BAND + "/" + str(r.YEAR_INDEX) + "/" + str(r.DIAG_GROUP): r for r in cells.collect()}
    assert len(got) == len(SPELLS) and all(r.SPELLS == 1 for r in got.values())
    # the clamped YEAR_INDEX: 'c' after the window -> 3, 'd' before it -> 1
    assert got["90+/3/10"].P_EXPECTED == pytest.approx(WANT_P["c"], rel=1e-15)
    assert got["50-54/1/10"].DEATHS == 1 and got["50-54/1/10"].P_EXPECTED == pytest.approx(WANT_P["d"], rel=1e-15)
    assert got["60-64/3/99"].P_EXPECTED is None  # no model for group 99


def test_cells_give_each_spell_its_own_probability(spark, many_spells):
    """Joined back on the cell keys, every spell's P from the cells is exactly its P from score_spells."""
    scored = score_spells(many_spells, _coefs(), window_start=WS, window_end=WE)
    cells = score_cells(many_spells, _coefs(), window_start=WS, window_end=WE)
    assert cells.count() < many_spells.count() / 5
    keyed = scored.withColumn("YEAR_INDEX", year_index("DISDATE", WS, 3)).alias("s")
    keys = [k for k in CELL_KEYS if k in keyed.columns]  # the spell table has no HSMR term (n/a in every cell)
    cond = [F.col(f"s.{k}").eqNullSafe(F.col(f"c.{k}")) for k in keys]  # a null sex is a cell too
    joined = keyed.join(cells.alias("c"), cond, "left")
    pdf = joined.select("s.SPELL_ID", "s.P_EXPECTED", F.col("c.P_EXPECTED").alias("P_CELL")).toPandas()
    assert len(pdf) == many_spells.count()
    both_null = pdf["P_EXPECTED"].isna() & pdf["P_CELL"].isna()
    assert (both_null | (pdf["P_EXPECTED"] == pdf["P_CELL"])).all()  # bit-for-bit: the same rule
    # each spell in exactly one cell
    assert cells.agg(F.sum("SPELLS")).first()[0] == many_spells.count()


def test_expected_sums_through_counts_equal_per_spell(spark, many_spells):
    scored = score_spells(many_spells, _coefs(), window_start=WS, window_end=WE)
    cells = score_cells(many_spells, _coefs(), window_start=WS, window_end=WE)
    for f, keys in ((expected_by_trust, ["PROCODE3"]), (expected_by_trust_group, ["PROCODE3", "DIAG_GROUP"])):
        a, b = f(scored).toPandas(), f(cells).toPandas()
        assert list(b.columns) == [*keys, "SPELLS", "OBSERVED", "EXPECTED"]
        assert dict(f(cells).dtypes) == dict(f(scored).dtypes)
        pd.testing.assert_frame_equal(a[[*keys, "SPELLS", "OBSERVED"]], b[[*keys, "SPELLS", "OBSERVED"]])
        np.testing.assert_allclose(b["EXPECTED"], a["EXPECTED"], rtol=1e-12, atol=0)


def test_spells_without_valid_probability(spark, many_spells):
    cells = score_cells(many_spells, _coefs(), window_start=WS, window_end=WE)
    n_h = many_spells.where("SPELL_ID LIKE 'h%'").count()  # group 99 has no model
    assert n_h > 1 and spells_without_valid_probability(cells) == n_h
    assert spells_without_valid_probability(cells.where("DIAG_GROUP != 99")) == 0
    bad = cells.where("DIAG_GROUP = 12").withColumn("P_EXPECTED", F.lit(1.5))
    assert spells_without_valid_probability(bad) == many_spells.where("DIAG_GROUP = 12").count()


def test_cell_lookups_are_broadcast_joins(spells):
    cells = score_cells(spells, _coefs(), window_start=WS, window_end=WE)
    plan = cells._jdf.queryExecution().executedPlan().toString()
    terms = set(_coefs()["TERM"]) - {"INTERCEPT", "CRUDE_RATE"}
    assert len(terms) == 7  # the SHMI's terms; the HSMR's have no coefficient, so no join
    assert plan.count("BroadcastHashJoin") == 2 + len(terms)  # intercept, crude rate, one per term
    assert "SortMergeJoin" not in plan and "BroadcastNestedLoopJoin" not in plan
