"""A numeric term: the HSMR's Charlson score as one slope per group (model.design, batches, scoring)."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from pyspark.sql import functions as F

from shmi_spark.config import ModelConfig
from shmi_spark.model.cells import covariate_cells
from shmi_spark.model.design import INTERCEPT, PER_UNIT, group_designs
from shmi_spark.model.fit import GroupModels, fit_group_models
from shmi_spark.model.scoring import expected_by_trust, score_cells, score_spells

WS, WE = date(2009, 4, 1), date(2010, 3, 31)
AGES = ["60-64", "70-74", "80-84"]
# group -> (intercept, age effects, female effect, slope per Charlson point); 203 has one score only
TRUTH = {201: (-3.4, [0.0, 0.5, 1.0], -0.2, 0.18), 202: (-2.8, [0.0, 0.3, 0.9], 0.1, 0.30),
         203: (-2.5, [0.0, 0.4, 0.8], 0.0, 0.0)}


def _spells(n: int, seed: int) -> pd.DataFrame:
    """Record-level spells: age, sex and an integer Charlson score with a known slope per group."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"DIAG_GROUP": rng.choice([201, 202, 203], size=n, p=[0.5, 0.35, 0.15]).astype("int32")})
    df["SPELL_ID"] = [f"S{i}" for i in range(n)]
    df["PROCODE3"] = [f"T{t:02d}" for t in rng.integers(0, 12, n)]
    df["DISDATE"] = [WS + timedelta(days=int(d)) for d in rng.integers(0, (WE - WS).days + 1, n)]
    age = rng.integers(0, 3, n)
    female = rng.random(n) < 0.5
    score = np.minimum(rng.poisson(1.5, n) * rng.integers(0, 3, n), 14)
    score[df["DIAG_GROUP"].to_numpy() == 203] = 0
    df["AGE_BAND"] = np.array(AGES)[age]
    df["SEX_CAT"] = np.where(female, "female", "male")
    df["CHARLSON_INDEX"] = score.astype(str)
    lp = np.zeros(n)
    for g, (b0, ages, fem, slope) in TRUTH.items():
        m = df["DIAG_GROUP"].to_numpy() == g
        lp[m] = b0 + np.array(ages)[age[m]] + fem * female[m] + slope * score[m]
    df["DIED"] = (rng.random(n) < 1 / (1 + np.exp(-lp))).astype("int32")
    return df


def _to_spark(spark, df: pd.DataFrame):
    """The HSMR's way: the Charlson score a number, the SHMI's band ``n/a``; the other terms fixed."""
    full = df.assign(ADMIMETH_CAT="non-elective", ADM_MONTH=np.int32(1), CHARLSON_BAND="n/a", BIRWEIT_BAND="n/a")
    schema = ("SPELL_ID string, PROCODE3 string, DISDATE date, DIAG_GROUP int, AGE_BAND string, SEX_CAT string, "
              "ADMIMETH_CAT string, ADM_MONTH int, CHARLSON_BAND string, BIRWEIT_BAND string, "
              "CHARLSON_INDEX string, DIED int")
    return spark.createDataFrame(full[[f.split()[0] for f in schema.split(", ")]], schema)


@pytest.fixture(scope="module")
def world(spark):
    df = _spells(24_000, seed=20261130)
    spells = _to_spark(spark, df).cache()
    cells = covariate_cells(spells, window_start=WS, window_end=WE).cache()
    models = fit_group_models(spark, cells, config=ModelConfig(parallelism=3))
    yield df, spells, cells, models
    cells.unpersist()
    spells.unpersist()


def test_numeric_design_has_one_slope():
    counts = pd.DataFrame([
        (1, "AGE_BAND", "60-64", 30, 3), (1, "AGE_BAND", "70-74", 20, 4),
        (1, "CHARLSON_INDEX", "0", 25, 2), (1, "CHARLSON_INDEX", "2", 15, 2), (1, "CHARLSON_INDEX", "11", 10, 3),
        (2, "AGE_BAND", "60-64", 10, 1), (2, "CHARLSON_INDEX", "0", 10, 1),
        (3, "AGE_BAND", "60-64", 10, 1), (3, "CHARLSON_INDEX", "n/a", 10, 1),
    ], columns=["DIAG_GROUP", "TERM", "LEVEL", "SPELLS", "DEATHS"]).assign(N_CELLS=1)
    d1, d2, d3 = group_designs(counts)
    assert d1.features == [("AGE_BAND", "70-74"), ("CHARLSON_INDEX", PER_UNIT)]
    assert d1.levels["CHARLSON_INDEX"] == [(PER_UNIT, 50, 7)] and "CHARLSON_INDEX" not in d1.reference
    assert not any("CHARLSON_INDEX" in n for n in d1.notes + d1.separated)  # no level is "absent" or pure
    # one value: no parameter, as a single-level term
    assert d2.features == [] and d2.reference["CHARLSON_INDEX"] == "0"
    assert "single-level terms, no parameter: AGE_BAND=60-64 CHARLSON_INDEX=0" in d2.notes
    # n/a only: a term the indicator does not use
    assert "CHARLSON_INDEX" not in d3.levels
    bad = counts.copy()
    bad.loc[3, "LEVEL"] = "unknown"
    with pytest.raises(ValueError, match="group 1: CHARLSON_INDEX is numeric but has the level 'unknown'"):
        group_designs(bad)


def test_slope_equals_record_level_statsmodels(spark, world):
    df, spells, _, models = world
    diag = models.diagnostics.set_index("DIAG_GROUP")
    assert (diag.loc[[201, 202], "RULE"] == "mle").all(), diag[["RULE", "DETAIL"]]
    assert "CHARLSON_INDEX=0" in diag.loc[203, "DETAIL"]  # one score: no slope
    c = models.coefficients
    predicted = np.zeros(len(df))
    for g in (201, 202, 203):
        m = (df["DIAG_GROUP"] == g).to_numpy()
        cg = c[c["DIAG_GROUP"] == g]
        names = [(r.TERM, r.LEVEL) for r in cg.itertuples()
                 if r.TERM in ("AGE_BAND", "SEX_CAT") and not r.REFERENCE]
        cols = [(df.loc[m, t] == lv).to_numpy(float) for t, lv in names]
        slope = cg[cg["TERM"] == "CHARLSON_INDEX"]
        if g != 203:
            assert slope[["LEVEL", "REFERENCE"]].values.tolist() == [[PER_UNIT, False]]
            names.append(("CHARLSON_INDEX", PER_UNIT))
            cols.append(df.loc[m, "CHARLSON_INDEX"].astype(float).to_numpy())
        else:
            assert slope[["LEVEL", "ESTIMATE", "REFERENCE"]].values.tolist() == [["0", 0.0, True]]
        x = np.column_stack([np.ones(int(m.sum())), *cols])
        fit = sm.GLM(df.loc[m, "DIED"].to_numpy(float), x, family=sm.families.Binomial()).fit(tol=1e-13)
        got = [cg.loc[cg["TERM"] == INTERCEPT, "ESTIMATE"].item()]
        got_se = [cg.loc[cg["TERM"] == INTERCEPT, "STD_ERROR"].item()]
        for t, lv in names:
            row = cg[(cg["TERM"] == t) & (cg["LEVEL"] == lv)]
            got.append(row["ESTIMATE"].item())
            got_se.append(row["STD_ERROR"].item())
        np.testing.assert_allclose(got, fit.params, rtol=0, atol=1e-6)
        np.testing.assert_allclose(got_se, fit.bse, rtol=1e-5)
        if g != 203:  # and the slope is the generator's, within 4 standard errors
            assert abs(fit.params[-1] - TRUTH[g][3]) < 4 * fit.bse[-1]
        predicted[m] = fit.fittedvalues
    # scoring: slope × score, by spell and by cell, equals statsmodels' fitted probabilities summed
    want = df.assign(P=predicted).groupby("PROCODE3")["P"].sum()
    for scored in (score_spells(spells, c, window_start=WS, window_end=WE),
                   score_cells(spells, c, window_start=WS, window_end=WE)):
        got_e = expected_by_trust(scored).toPandas().set_index("PROCODE3")["EXPECTED"]
        np.testing.assert_allclose(got_e.loc[want.index], want, rtol=1e-7)


def _same(a: GroupModels, b: GroupModels) -> None:
    pd.testing.assert_frame_equal(a.coefficients.drop(columns=["ESTIMATE", "STD_ERROR"]),
                                  b.coefficients.drop(columns=["ESTIMATE", "STD_ERROR"]))
    np.testing.assert_allclose(b.coefficients["ESTIMATE"], a.coefficients["ESTIMATE"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(b.coefficients["STD_ERROR"], a.coefficients["STD_ERROR"], rtol=1e-8)
    cols = ["DIAG_GROUP", "N_PARAMS", "RULE", "DETAIL"]
    pd.testing.assert_frame_equal(a.diagnostics[cols], b.diagnostics[cols])


def test_spark_ml_alone_and_batched_equal_the_grouped_engine(spark, world):
    """The slope in Spark ML: one group alone (a VectorAssembler column), and in a batch (``Interaction``)."""
    _, _, cells, grouped = world
    alone = fit_group_models(spark, cells, config=ModelConfig(engine="spark_ml", parallelism=3, batch_parameters=0))
    batched = fit_group_models(spark, cells, config=ModelConfig(engine="spark_ml", parallelism=3))
    assert alone.diagnostics["BATCH"].isna().all()
    assert batched.diagnostics["BATCH"].tolist() == ["1", "1", "1"]
    _same(grouped, alone)
    _same(grouped, batched)


def _separated_cells(spark):
    """Age 60-64 cells with mixed outcomes over scores 0-4; the one 90+ cell (score 6): all died."""
    rng = np.random.default_rng(7)
    rows = [(301, "60-64", sex, str(s), 200, int(rng.binomial(200, 0.05 + 0.03 * s)))
            for sex in ("male", "female") for s in range(5)]
    rows += [(301, "90+", "male", "6", 20, 20)]
    cells = pd.DataFrame(rows, columns=["DIAG_GROUP", "AGE_BAND", "SEX_CAT", "CHARLSON_INDEX", "SPELLS", "DEATHS"])
    cells = cells.assign(ADMIMETH_CAT="elective", ADM_MONTH=np.int32(1), YEAR_INDEX=np.int32(1),
                         CHARLSON_BAND="n/a", BIRWEIT_BAND="n/a", DIAG_GROUP=cells["DIAG_GROUP"].astype("int32"))
    return spark.createDataFrame(cells)


@pytest.mark.parametrize("engine", ["grouped", "spark_ml"])
def test_separated_cell_with_a_slope_goes_to_its_limit(spark, engine):
    cells = _separated_cells(spark)
    models = fit_group_models(spark, cells, config=ModelConfig(engine=engine, parallelism=3))
    d = models.diagnostics.iloc[0]
    assert d["RULE"] == "mle_limit", d["DETAIL"]
    assert "separation: 1 of 11 cells (20 spells, 20 deaths) at their limit" in d["DETAIL"]
    c = models.coefficients
    slope = c[c["TERM"] == "CHARLSON_INDEX"]
    # the rest is the MLE of the other cells: statsmodels on them, intercept + sex + slope
    pdc = cells.toPandas()
    rest = pdc[pdc["AGE_BAND"] == "60-64"]
    female_ref = c[(c["TERM"] == "SEX_CAT") & c["REFERENCE"]]["LEVEL"].item()
    other = "male" if female_ref == "female" else "female"
    x = np.column_stack([np.ones(len(rest)), (rest["SEX_CAT"] == other).to_numpy(float),
                         rest["CHARLSON_INDEX"].astype(float).to_numpy()])
    y = np.column_stack([rest["DEATHS"], rest["SPELLS"] - rest["DEATHS"]]).astype(float)
    fit = sm.GLM(y, x, family=sm.families.Binomial()).fit(tol=1e-13)
    assert slope["LEVEL"].item() == PER_UNIT and slope["ESTIMATE"].item() == pytest.approx(fit.params[2], abs=1e-6)
    scored = score_spells(cells.withColumn("DISDATE", F.lit(WS)),
                          c, window_start=WS, window_end=WE).toPandas()
    p = scored.set_index(["AGE_BAND", "SEX_CAT", "CHARLSON_INDEX"])["P_EXPECTED"]
    assert p[("90+", "male", "6")] > 1 - 1e-15  # at its limit: everybody died
    e = (scored["P_EXPECTED"] * scored["SPELLS"]).sum()
    assert e == pytest.approx(scored["DEATHS"].sum(), rel=1e-6)
