"""Per-group risk models (METHOD.md §5): cell-level Spark fits = record-level MLE."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from pyspark.sql import functions as F

from shmi_spark.config import ModelConfig
from shmi_spark.io.publish import write_table
from shmi_spark.model.batches import pack_batches
from shmi_spark.model.cells import covariate_cells
from shmi_spark.model.cells import SHMI_COVARIATES
from shmi_spark.model.design import INTERCEPT, GroupDesign, group_designs
from shmi_spark.model.fit import COEF_COLUMNS, DIAG_COLUMNS, GroupModels, fit_group_models
from shmi_spark.model.scoring import expected_by_trust, score_spells

# the terms of these spells: the SHMI's (the HSMR's are n/a in every cell, and have no parameter)
TERMS = SHMI_COVARIATES

WS, WE = date(2017, 4, 1), date(2020, 3, 31)
AGES = ["<1", "1-4", "20-24", "45-49", "60-64", "70-74", "80-84", "90+"]
LEVELS = {
    "AGE_BAND": AGES,
    "SEX_CAT": ["male", "female", "unknown"],
    "ADMIMETH_CAT": ["elective", "non-elective", "unknown"],
    "ADM_MONTH": [str(m) for m in range(1, 13)],
    "CHARLSON_BAND": ["0", "1-5", ">5"],
    "BIRWEIT_BAND": ["<1000", "1000-2499", "2500-4499", "4500+", "unknown"],
}
PROBS = {
    "AGE_BAND": [0.05, 0.05, 0.1, 0.15, 0.2, 0.2, 0.15, 0.1],
    "SEX_CAT": [0.48, 0.49, 0.03],
    "ADMIMETH_CAT": [0.3, 0.67, 0.03],
    "ADM_MONTH": [1 / 12] * 12,
    "CHARLSON_BAND": [0.5, 0.3, 0.2],
    "BIRWEIT_BAND": [0.05, 0.15, 0.7, 0.05, 0.05],
}


def synthetic_spells(n: int, groups: dict[int, float], *, seed: int, perinatal: set[int] = frozenset(),
                     n_trusts: int = 15, effect_sd: float = 0.4, trust_sd: float = 0.0):
    """Record-level spells with known per-group coefficients.

    ``groups``: group → share of spells.  Every level of every covariate has
    a true effect (the generator's own parameterisation, ``truth[g][term][level]``,
    plus an intercept); trusts get an unmodelled effect too.
    """
    rng = np.random.default_rng(seed)
    gid = rng.choice(list(groups), size=n, p=np.array(list(groups.values())) / sum(groups.values()))
    df = pd.DataFrame({"DIAG_GROUP": gid.astype("int32")})
    df["PROCODE3"] = [f"T{t:02d}" for t in rng.integers(0, n_trusts, n)]
    df["SPELL_ID"] = [f"S{i}" for i in range(n)]
    days = rng.integers(0, (WE - WS).days + 1, n)
    df["DISDATE"] = [WS + timedelta(days=int(d)) for d in days]
    df["YEAR_INDEX"] = np.minimum(days // 365 + 1, 3)  # only used to draw the outcome
    for term in ["AGE_BAND", "SEX_CAT", "ADMIMETH_CAT", "ADM_MONTH", "CHARLSON_BAND"]:
        df[term] = rng.choice(LEVELS[term], size=n, p=PROBS[term])
    df["BIRWEIT_BAND"] = "n/a"
    peri = df["DIAG_GROUP"].isin(perinatal).to_numpy()
    df.loc[peri, "BIRWEIT_BAND"] = rng.choice(LEVELS["BIRWEIT_BAND"], size=int(peri.sum()),
                                              p=PROBS["BIRWEIT_BAND"])
    df.loc[peri, "AGE_BAND"] = "<1"
    trust_eff = {f"T{t:02d}": e for t, e in enumerate(rng.normal(0, trust_sd, n_trusts))}
    truth = {}
    lp = np.zeros(n)
    for g in groups:
        m = (df["DIAG_GROUP"] == g).to_numpy()
        tg = {INTERCEPT: float(rng.uniform(-3.2, -2.2))}
        lp[m] += tg[INTERCEPT]
        for term in TERMS:
            levels = LEVELS.get(term, ["1", "2", "3"])
            if term == "BIRWEIT_BAND" and g not in perinatal:
                continue
            eff = dict(zip(levels, rng.normal(0, effect_sd, len(levels)), strict=True))
            if term == "AGE_BAND":  # a realistic age gradient
                eff = {lv: e + 0.35 * i for i, (lv, e) in enumerate(zip(levels, eff.values(), strict=True))}
            tg[term] = eff
            lp[m] += df.loc[m, term].astype(str).map(eff).to_numpy()
        truth[g] = tg
    lp += df["PROCODE3"].map(trust_eff).to_numpy()  # not in the model (0 unless trust_sd > 0)
    df["DIED"] = (rng.random(n) < 1 / (1 + np.exp(-lp))).astype("int32")
    df["ADM_MONTH"] = df["ADM_MONTH"].astype("int32")
    return df, truth


def to_spark(spark, df: pd.DataFrame):
    cols = ["SPELL_ID", "PROCODE3", "DISDATE", "DIAG_GROUP", "AGE_BAND", "SEX_CAT", "ADMIMETH_CAT",
            "ADM_MONTH", "CHARLSON_BAND", "BIRWEIT_BAND", "DIED"]
    schema = ("SPELL_ID string, PROCODE3 string, DISDATE date, DIAG_GROUP int, AGE_BAND string, "
              "SEX_CAT string, ADMIMETH_CAT string, ADM_MONTH int, CHARLSON_BAND string, "
              "BIRWEIT_BAND string, DIED int")
    return spark.createDataFrame(df[cols], schema)


def design(df: pd.DataFrame, coefs: pd.DataFrame):
    """Record-level design matrix with the references and levels the Spark fit used."""
    names, cols = [], []
    for term in TERMS:
        rows = coefs[(coefs["TERM"] == term)]
        if len(rows) <= 1:
            continue
        for r in rows.itertuples():
            if not r.REFERENCE:
                names.append((term, r.LEVEL))
                cols.append((df[term].astype(str) == r.LEVEL).to_numpy(float))
    X = np.column_stack([np.ones(len(df)), *cols])
    return names, X


@pytest.fixture(scope="module")
def equivalence_world(spark):
    df, truth = synthetic_spells(30_000, {101: 0.45, 102: 0.35, 103: 0.20}, seed=20240501,
                                 perinatal={103}, trust_sd=0.2)
    spells = to_spark(spark, df).cache()
    cells = covariate_cells(spells, window_start=WS, window_end=WE)
    models = fit_group_models(spark, cells, config=ModelConfig(parallelism=3))
    yield df, spells, models
    spells.unpersist()


def test_cell_fit_equals_record_level_statsmodels(spark, equivalence_world):
    df, spells, models = equivalence_world
    diag = models.diagnostics.set_index("DIAG_GROUP")
    assert list(diag.index) == [101, 102, 103]
    assert (diag["RULE"] == "mle").all(), diag[["RULE", "DETAIL"]]
    assert diag["CONVERGED"].all()
    assert diag.loc[103, "N_PARAMS"] > diag.loc[102, "N_PARAMS"] - 8  # birth weight in, age out
    df = df.assign(YEAR_INDEX=[(d.year - WS.year) * 12 + d.month - WS.month for d in df["DISDATE"]])
    df["YEAR_INDEX"] = (df["YEAR_INDEX"] // 12 + 1).astype(str)
    predicted = np.zeros(len(df))
    for g in [101, 102, 103]:
        coefs = models.coefficients[models.coefficients["DIAG_GROUP"] == g]
        m = (df["DIAG_GROUP"] == g).to_numpy()
        names, X = design(df[m], coefs)
        fit = sm.GLM(df.loc[m, "DIED"].to_numpy(float), X, family=sm.families.Binomial()).fit(tol=1e-13)
        spark_b = [coefs.loc[coefs["TERM"] == INTERCEPT, "ESTIMATE"].item()]
        spark_se = [coefs.loc[coefs["TERM"] == INTERCEPT, "STD_ERROR"].item()]
        for term, lv in names:
            row = coefs[(coefs["TERM"] == term) & (coefs["LEVEL"] == lv)]
            spark_b.append(row["ESTIMATE"].item())
            spark_se.append(row["STD_ERROR"].item())
        assert len(names) + 1 == diag.loc[g, "N_PARAMS"]
        np.testing.assert_allclose(spark_b, fit.params, rtol=0, atol=1e-5)
        np.testing.assert_allclose(spark_se, fit.bse, rtol=1e-4)
        predicted[m] = fit.fittedvalues
        # reference rows: estimate 0, no standard error, most populous level
        for term in TERMS:
            rows = coefs[coefs["TERM"] == term]
            if len(rows):
                ref = rows[rows["REFERENCE"]]
                assert len(ref) == 1 and ref["ESTIMATE"].item() == 0.0
                counts = df.loc[m, term].astype(str).value_counts()
                assert counts[ref["LEVEL"].item()] == counts.max()
    # expected deaths per trust: Spark scoring of the cell fit vs statsmodels' record fit
    scored = score_spells(spells, models.coefficients, window_start=WS, window_end=WE)
    by_trust = expected_by_trust(scored).toPandas().set_index("PROCODE3")
    want = df.assign(P=predicted).groupby("PROCODE3").agg(E=("P", "sum"), O=("DIED", "sum"), S=("P", "size"))
    np.testing.assert_allclose(by_trust.loc[want.index, "EXPECTED"], want["E"], rtol=1e-6)
    assert (by_trust.loc[want.index, "OBSERVED"] == want["O"]).all()
    assert (by_trust.loc[want.index, "SPELLS"] == want["S"]).all()
    # and the MLE's defining property: sum of expected = sum of observed, per group
    assert abs(by_trust["EXPECTED"].sum() - df["DIED"].sum()) < 1e-6 * df["DIED"].sum()


def test_coefficient_table_shape(equivalence_world):
    _, _, models = equivalence_world
    c = models.coefficients
    assert list(c.columns) == COEF_COLUMNS
    assert list(models.diagnostics.columns) == DIAG_COLUMNS
    assert c[["DIAG_GROUP", "TERM", "LEVEL"]].duplicated().sum() == 0
    assert (c.loc[c["TERM"] == INTERCEPT, "LEVEL"] == "").all()
    # birth weight only for the perinatal group; every present level listed
    assert set(c.loc[c["TERM"] == "BIRWEIT_BAND", "DIAG_GROUP"]) == {103}
    assert set(c.loc[(c["DIAG_GROUP"] == 101) & (c["TERM"] == "ADM_MONTH"), "LEVEL"]) == \
        {str(m) for m in range(1, 13)}
    # group 103 is all '<1': a single-level term, reported as its reference
    age103 = c[(c["DIAG_GROUP"] == 103) & (c["TERM"] == "AGE_BAND")]
    assert list(age103["LEVEL"]) == ["<1"] and bool(age103["REFERENCE"].item())
    assert "single-level" in models.diagnostics.set_index("DIAG_GROUP").loc[103, "DETAIL"]
    assert np.isfinite(c["ESTIMATE"]).all()


def test_write_models(spark, tmp_path, equivalence_world):
    """The two tables as the pipeline writes them (``model/<period>/``, csv and parquet)."""
    _, _, models = equivalence_world
    for name, table in (("coefficients", models.coefficients), ("diagnostics", models.diagnostics)):
        write_table(spark, table, str(tmp_path / "models"), name)
    for name, table in (("coefficients", models.coefficients), ("diagnostics", models.diagnostics)):
        back = pd.read_parquet(tmp_path / "models" / f"{name}.parquet")
        assert len(back) == len(table)
        assert (tmp_path / "models" / f"{name}.csv").stat().st_size > 0
    back = pd.read_parquet(tmp_path / "models" / "coefficients.parquet")
    np.testing.assert_array_equal(back["ESTIMATE"], models.coefficients["ESTIMATE"])


def test_recovers_known_coefficients(spark):
    df, truth = synthetic_spells(400_000, {201: 0.6, 202: 0.4}, seed=11, effect_sd=0.5)
    df["YEAR_INDEX"] = [str(min((d - WS).days // 365 + 1, 3)) for d in df["DISDATE"]]
    # hand the cells straight to the fitter (pandas aggregation; the spells path is tested above)
    cells = (df.assign(YEAR_INDEX=df["YEAR_INDEX"].astype("int32"))
             .groupby(["DIAG_GROUP", *TERMS], as_index=False)
             .agg(SPELLS=("DIED", "size"), DEATHS=("DIED", "sum")))
    cells_sdf = spark.createDataFrame(cells.astype({"SPELLS": "int64", "DEATHS": "int64"}))
    models = fit_group_models(spark, cells_sdf, config=ModelConfig(parallelism=2))
    assert (models.diagnostics["RULE"] == "mle").all()
    z = _z_scores(models, truth, shift=0.0)
    assert len(z) == 54  # 2 groups x (1 + 7 + 2 + 2 + 11 + 2 + 2)
    assert (z <= 3).mean() >= 0.95, np.sort(z)[-10:]
    # the check has teeth: against a truth shifted by 0.3 most estimates are rejected
    assert (_z_scores(models, truth, shift=0.3) <= 3).mean() < 0.5


def _z_scores(models, truth, shift):
    z = []
    for g, tg in truth.items():
        c = models.coefficients[models.coefficients["DIAG_GROUP"] == g]
        refs = {r.TERM: r.LEVEL for r in c[c["REFERENCE"]].itertuples()}
        true_b0 = tg[INTERCEPT] + sum(tg[t][refs[t]] for t in refs)
        est = c[c["TERM"] == INTERCEPT].iloc[0]
        z.append((est.ESTIMATE - true_b0) / est.STD_ERROR)
        for r in c[(c["TERM"] != INTERCEPT) & ~c["REFERENCE"]].itertuples():
            true = tg[r.TERM][r.LEVEL] - tg[r.TERM][refs[r.TERM]] + shift
            z.append((r.ESTIMATE - true) / r.STD_ERROR)
    return np.abs(np.array(z))


def _cells(rows):
    """Cells from (group, age, sex, spells, deaths) with the other covariates fixed."""
    out = []
    for g, age, sex, adm, n, d in rows:
        out.append(dict(DIAG_GROUP=g, AGE_BAND=age, SEX_CAT=sex, ADMIMETH_CAT=adm, ADM_MONTH=1,
                        YEAR_INDEX=1, CHARLSON_BAND="0", BIRWEIT_BAND="n/a", SPELLS=n, DEATHS=d))
    return pd.DataFrame(out)


def _degenerate_cells(spark):
    rng = np.random.default_rng(3)
    rows = []
    # 1: ordinary, but sex 'unknown' absent (present in group 5)
    for age, base in (("60-64", 0.05), ("70-74", 0.1), ("80-84", 0.2)):
        for sex in ("male", "female"):
            for adm in ("elective", "non-elective"):
                n = 400
                rows.append((1, age, sex, adm, n, int(rng.binomial(n, base))))
    rows += [(2, "60-64", "male", "elective", 300, 0), (2, "70-74", "female", "elective", 200, 0)]   # no deaths
    rows += [(3, "60-64", "male", "elective", 30, 30), (3, "70-74", "female", "non-elective", 20, 20)]  # all died
    # 4: quasi-separated: nobody aged 90+ died
    rows += [(4, "60-64", "male", "elective", 500, 40), (4, "60-64", "female", "elective", 500, 60),
             (4, "90+", "male", "elective", 40, 0), (4, "80-84", "female", "non-elective", 300, 50),
             (4, "80-84", "male", "non-elective", 300, 45), (4, "80-84", "male", "elective", 100, 12)]
    # 5: few deaths (3), with an 'unknown' sex
    rows += [(5, "60-64", "unknown", "elective", 100, 1), (5, "70-74", "female", "elective", 100, 2)]
    # 6: collinear terms (elective <=> male), no separation
    rows += [(6, "60-64", "male", "elective", 300, 30), (6, "60-64", "female", "non-elective", 300, 50),
             (6, "70-74", "male", "elective", 300, 40), (6, "70-74", "female", "non-elective", 300, 70)]
    return spark.createDataFrame(_cells(rows).astype({"SPELLS": "int64", "DEATHS": "int64",
                                                      "ADM_MONTH": "int32", "YEAR_INDEX": "int32",
                                                      "DIAG_GROUP": "int32"}))


def _probabilities(spark, cells_sdf, models):
    spells = cells_sdf.withColumn("DISDATE", F.lit(WS))
    scored = score_spells(spells, models.coefficients, window_start=WS, window_end=WE).toPandas()
    return scored


@pytest.mark.parametrize("engine", ["grouped", "spark_ml"])
@pytest.mark.parametrize("rule", ["ml_limit", "ridge", "crude"])
def test_degenerate_groups(spark, rule, engine):
    cells = _degenerate_cells(spark)
    models = fit_group_models(spark, cells, config=ModelConfig(degenerate_rule=rule, min_deaths=5,
                                                               parallelism=3, engine=engine))
    d = models.diagnostics.set_index("DIAG_GROUP")
    assert list(d.index) == [1, 2, 3, 4, 5, 6]
    assert d.loc[1, "RULE"] == "mle" and "SEX_CAT{unknown}" in d.loc[1, "DETAIL"]
    assert d.loc[2, "RULE"] == "crude_rate" and "no deaths" in d.loc[2, "DETAIL"]
    assert d.loc[3, "RULE"] == "crude_rate" and "no survivors" in d.loc[3, "DETAIL"]
    assert d.loc[5, "RULE"] == "crude_rate" and "min_deaths" in d.loc[5, "DETAIL"]
    if rule == "ml_limit":
        # the exact limit: the 90+ cell at probability 0, the rest the MLE of the other cells
        assert d.loc[4, "RULE"] == "mle_limit", d.loc[4, "DETAIL"]
        assert "separation: 1 of 6 cells (40 spells, 0 deaths) at their limit" in d.loc[4, "DETAIL"]
        assert "it runs through AGE_BAND=90+;" in d.loc[4, "DETAIL"]
        # collinear: R's glm aliases the later column; the fitted probabilities are the MLE's
        assert d.loc[6, "RULE"] == "mle" and "aliased among the cells fitted, no parameter (estimate 0): " \
            "ADMIMETH_CAT=non-elective" in d.loc[6, "DETAIL"]
    else:
        want = {"ridge": "ridge", "crude": "crude_rate"}[rule]
        assert d.loc[4, "RULE"] == d.loc[6, "RULE"] == want
        assert "separation: 1 of 6 cells" in d.loc[4, "DETAIL"] and "aliased" in d.loc[6, "DETAIL"]
    assert not d["DETAIL"].str.contains("Error").any()
    c = models.coefficients
    assert np.isfinite(c["ESTIMATE"]).all()
    if rule == "ml_limit":
        sep = c[(c["DIAG_GROUP"] == 4) & (c["TERM"] == "AGE_BAND") & (c["LEVEL"] == "90+")]
        assert sep["ESTIMATE"].item() < -40 + 3 and sep["STD_ERROR"].isna().all()
        fitted = c[(c["DIAG_GROUP"] == 4) & (c["TERM"] == "AGE_BAND") & ~c["REFERENCE"] & (c["LEVEL"] != "90+")]
        assert fitted["STD_ERROR"].notna().all()
    if rule == "ridge":
        sep = c[(c["DIAG_GROUP"] == 4) & (c["TERM"] == "AGE_BAND") & (c["LEVEL"] == "90+")]
        assert sep["ESTIMATE"].item() < -1 and sep["STD_ERROR"].isna().all()
    scored = _probabilities(spark, cells, models)
    p = scored["P_EXPECTED"].to_numpy(float)
    assert np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
    by_g = scored.groupby("DIAG_GROUP")["P_EXPECTED"]
    assert by_g.max()[2] == 0.0 and by_g.min()[3] == 1.0
    assert np.allclose(by_g.max()[5], 3 / 200)
    # expected deaths by group stay close to observed (exactly equal for MLE/crude)
    e = (scored["P_EXPECTED"] * scored["SPELLS"]).groupby(scored["DIAG_GROUP"]).sum()
    o = scored.groupby("DIAG_GROUP")["DEATHS"].sum()
    for g in (1, 2, 3, 5):
        assert e[g] == pytest.approx(o[g], rel=1e-6, abs=1e-9)
    for g in (4, 6):  # the MLE (and its limit) gives each level its observed deaths
        assert e[g] == pytest.approx(o[g], rel=1e-6 if rule == "ml_limit" else 0.02)
    if rule == "ml_limit":
        assert by_g.max()[4] > 0 and scored.loc[scored["AGE_BAND"] == "90+", "P_EXPECTED"].max() < 1e-15


def test_huge_coefficient_triggers_rule(spark):
    cells = _degenerate_cells(spark).where("DIAG_GROUP = 1")
    models = fit_group_models(spark, cells, config=ModelConfig(max_abs_coef=0.05))
    d = models.diagnostics.iloc[0]
    assert d["RULE"] == "ridge" and "|coefficient| > 0.05" in d["DETAIL"]


def test_empty_cells(spark):
    empty = _degenerate_cells(spark).where("DIAG_GROUP = -1")
    models = fit_group_models(spark, empty, config=ModelConfig())
    assert isinstance(models, GroupModels) and models.coefficients.empty and models.diagnostics.empty


def test_groups_meta_joined(spark):
    cells = _degenerate_cells(spark).where("DIAG_GROUP IN (1, 2)")
    meta = pd.DataFrame({"DIAG_GROUP": [1, 2, 3], "GROUP_LABEL": ["one", "two", "three"]})
    models = fit_group_models(spark, cells, config=ModelConfig(), groups_meta=meta)
    assert list(models.diagnostics["GROUP_LABEL"]) == ["one", "two"]
    assert math.isfinite(models.diagnostics["SECONDS"].sum())


def test_result_independent_of_parallelism(spark):
    cells = _degenerate_cells(spark)
    one = fit_group_models(spark, cells, config=_spark_ml(parallelism=1, min_deaths=5))
    many = fit_group_models(spark, cells, config=_spark_ml(parallelism=6, min_deaths=5))
    pd.testing.assert_frame_equal(one.coefficients, many.coefficients, check_exact=True)
    pd.testing.assert_frame_equal(one.diagnostics.drop(columns="SECONDS"),
                                  many.diagnostics.drop(columns="SECONDS"), check_exact=True)


def test_grouped_result_independent_of_partitioning(spark):
    """The same numbers to the last bit however Spark splits and orders the cells (determinism)."""
    cells = _degenerate_cells(spark)
    before = spark.conf.get("spark.sql.shuffle.partitions")
    try:
        spark.conf.set("spark.sql.shuffle.partitions", "1")
        one = fit_group_models(spark, cells.coalesce(1), config=ModelConfig(min_deaths=5))
        spark.conf.set("spark.sql.shuffle.partitions", "7")
        many = fit_group_models(spark, cells.repartition(5, F.rand(seed=3)).orderBy(F.rand(seed=4)),
                                config=ModelConfig(min_deaths=5))
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", before)
    pd.testing.assert_frame_equal(one.coefficients, many.coefficients, check_exact=True)
    pd.testing.assert_frame_equal(one.diagnostics.drop(columns="SECONDS"),
                                  many.diagnostics.drop(columns="SECONDS"), check_exact=True)


def _assert_same_models(a: GroupModels, b: GroupModels, *, iterations: bool = True) -> None:
    """Equal tables, estimates to 1e-9 and standard errors to 1e-8 relative."""
    pd.testing.assert_frame_equal(a.coefficients.drop(columns=["ESTIMATE", "STD_ERROR"]),
                                  b.coefficients.drop(columns=["ESTIMATE", "STD_ERROR"]))
    np.testing.assert_allclose(b.coefficients["ESTIMATE"], a.coefficients["ESTIMATE"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(b.coefficients["STD_ERROR"], a.coefficients["STD_ERROR"], rtol=1e-8)
    cols = ["DIAG_GROUP", "SPELLS", "DEATHS", "N_CELLS", "N_PARAMS", "CONVERGED", "RULE", "DETAIL"]
    pd.testing.assert_frame_equal(a.diagnostics[cols + ["ITERATIONS"] * iterations],
                                  b.diagnostics[cols + ["ITERATIONS"] * iterations])


def _spark_ml(**settings) -> ModelConfig:
    return ModelConfig(**{"engine": "spark_ml", "parallelism": 3, **settings})


def test_grouped_engine_equals_spark_ml_alone(spark, equivalence_world):
    """The default engine (numpy IRLS per group, one Spark job) gives Spark ML's lone fits."""
    _, spells, grouped = equivalence_world
    cells = covariate_cells(spells, window_start=WS, window_end=WE)
    alone = fit_group_models(spark, cells, config=_spark_ml(batch_parameters=0))
    assert grouped.diagnostics["BATCH"].isna().all()
    _assert_same_models(alone, grouped)


@pytest.mark.parametrize("rule", ["ml_limit", "ridge"])
def test_grouped_engine_equals_spark_ml_on_degenerate_groups(spark, rule):
    """Separation, the ML limit, an aliased group, the ridge refits: both engines agree."""
    cells = _degenerate_cells(spark)
    settings = dict(degenerate_rule=rule, min_deaths=5)
    alone = fit_group_models(spark, cells, config=_spark_ml(batch_parameters=0, **settings))
    grouped = fit_group_models(spark, cells, config=ModelConfig(**settings))
    _assert_same_models(alone, grouped)


def test_batched_fit_equals_fits_alone(spark, equivalence_world):
    """Block-diagonal batches give each group exactly its own MLE (model.batches)."""
    _, spells, _ = equivalence_world
    cells = covariate_cells(spells, window_start=WS, window_end=WE)
    alone = fit_group_models(spark, cells, config=_spark_ml(batch_parameters=0))
    batched = fit_group_models(spark, cells, config=_spark_ml())
    assert batched.diagnostics["BATCH"].tolist() == ["1", "1", "1"]
    assert alone.diagnostics["BATCH"].isna().all()
    _assert_same_models(alone, batched, iterations=False)


def test_batch_small_enough_is_split(spark, equivalence_world):
    """A batch limit below two groups' parameters leaves every group alone; the numbers do not change."""
    _, spells, batched = equivalence_world
    cells = covariate_cells(spells, window_start=WS, window_end=WE)
    n = int(batched.diagnostics["N_PARAMS"].min())
    models = fit_group_models(spark, cells, config=_spark_ml(batch_parameters=n + 1))
    assert models.diagnostics["BATCH"].isna().all()
    np.testing.assert_allclose(models.coefficients["ESTIMATE"], batched.coefficients["ESTIMATE"],
                               rtol=0, atol=1e-9)


def test_non_converging_group_leaves_its_batch(spark):
    """A group whose batch estimate is not accepted (here a coefficient above max_abs_coef, near
    separation: 59 of 60 died in (70-74, female)) is fitted alone (ridge); the rest refitted as batch 1.1."""
    base = _degenerate_cells(spark).where("DIAG_GROUP = 1").toPandas()
    rows = []
    for g in (1, 8):
        rows.append(base.assign(DIAG_GROUP=g, DEATHS=base["DEATHS"] + (g == 8) * 3))
    rows.append(_cells([(7, "60-64", "male", "elective", 200, 2), (7, "60-64", "female", "elective", 200, 30),
                        (7, "70-74", "male", "elective", 200, 40), (7, "70-74", "female", "elective", 60, 59)]))
    cells = spark.createDataFrame(pd.concat(rows).astype({"SPELLS": "int64", "DEATHS": "int64",
                                                          "ADM_MONTH": "int32", "YEAR_INDEX": "int32",
                                                          "DIAG_GROUP": "int32"}))
    models = fit_group_models(spark, cells, config=_spark_ml(max_abs_coef=4.0, max_iter=5))
    d = models.diagnostics.set_index("DIAG_GROUP")
    assert d.loc[7, "RULE"] == "ridge" and pd.isna(d.loc[7, "BATCH"]), d.loc[7, "DETAIL"]
    assert "|coefficient| > 4" in d.loc[7, "DETAIL"]
    assert list(d.loc[[1, 8], "RULE"]) == ["mle", "mle"] and list(d.loc[[1, 8], "BATCH"]) == ["1.1", "1.1"]
    alone = fit_group_models(spark, cells, config=_spark_ml(batch_parameters=0, max_abs_coef=4.0, max_iter=5))
    np.testing.assert_allclose(models.coefficients["ESTIMATE"], alone.coefficients["ESTIMATE"],
                               rtol=0, atol=1e-9)
    _assert_same_models(alone, fit_group_models(spark, cells, config=ModelConfig(max_abs_coef=4.0, max_iter=5)))


def test_pack_batches():
    def design(g, p):
        return GroupDesign(group=g, spells=10, deaths=1, n_cells=1, features=[("AGE_BAND", str(i)) for i in range(p)])

    designs = [design(5, 3), design(1, 3), design(2, 3), design(3, 20), design(4, 5), design(6, 1)]
    batches, alone = pack_batches(designs, max_params=10)
    # by group: 1+2 (4+4) | 3 (21 > 10) alone | 4+5 (6+4) | 6 left on its own
    assert [b.groups for b in batches] == [(1, 2), (4, 5)]
    assert sorted(d.group for d in alone) == [3, 6]
    assert [b.label for b in batches] == ["1", "2"]
    assert batches[0].n_params == 8 and batches[0].term_sizes == {"AGE_BAND": 6}
    # group 2's levels follow group 1's in the AGE_BAND block, after the two intercepts
    assert batches[0].coefficient_index(2, "AGE_BAND", "0") == 2 + 3


def test_group_designs_from_counts():
    """A group's encoding from its level counts alone: levels, reference, features, notes."""
    one = {"SEX_CAT": "male", "ADMIMETH_CAT": "elective", "ADM_MONTH": "1", "YEAR_INDEX": "1",
           "CHARLSON_BAND": "0", "BIRWEIT_BAND": "n/a"}
    rows = [(1, "AGE_BAND", "70-74", 100, 20), (1, "AGE_BAND", "90+", 40, 0), (1, "AGE_BAND", "60-64", 100, 10)]
    rows += [(1, t, lv, 240, 30) for t, lv in one.items()]
    rows += [(2, "AGE_BAND", "60-64", 30, 0), (2, "AGE_BAND", "70-74", 20, 20)]
    rows += [(2, t, "female" if t == "SEX_CAT" else lv, 50, 20) for t, lv in one.items()]
    counts = pd.DataFrame(rows, columns=["DIAG_GROUP", "TERM", "LEVEL", "SPELLS", "DEATHS"]).assign(N_CELLS=1)
    d1, d2 = group_designs(counts)
    assert (d1.group, d1.spells, d1.deaths, d1.n_cells) == (1, 240, 30, 3)
    assert [lv for lv, _, _ in d1.levels["AGE_BAND"]] == ["60-64", "70-74", "90+"]
    assert d1.reference["AGE_BAND"] == "60-64"  # 100 spells each: the first in natural order
    assert d1.features == [("AGE_BAND", "70-74"), ("AGE_BAND", "90+")]
    assert d1.separated == ["AGE_BAND=90+ (0/40 died)"] and d1.limit is None
    assert "BIRWEIT_BAND" not in d1.levels and d1.n_params == 3
    assert d1.notes == ["levels absent, dropped: SEX_CAT{female}",
                        "single-level terms, no parameter: SEX_CAT=male ADMIMETH_CAT=elective ADM_MONTH=1 "
                        "YEAR_INDEX=1 CHARLSON_BAND=0"]
    assert d2.features == [("AGE_BAND", "70-74")] and d2.reference["AGE_BAND"] == "60-64"
    with pytest.raises(ValueError, match="not been examined"):
        d1.mle_form()


def test_fewer_cells_than_parameters_is_aliased(spark):
    """Three cells, four parameters: the later column is aliased (R's glm: NA), the rest the MLE, batched."""
    rows = [(9, "60-64", "male", "elective", 20, 5), (9, "70-74", "female", "elective", 20, 5),
            (9, "60-64", "female", "non-elective", 20, 5)]
    base = _degenerate_cells(spark).where("DIAG_GROUP = 1").toPandas()
    cells = spark.createDataFrame(pd.concat([base, base.assign(DIAG_GROUP=8), _cells(rows)]).astype(
        {"SPELLS": "int64", "DEATHS": "int64", "ADM_MONTH": "int32", "YEAR_INDEX": "int32",
         "DIAG_GROUP": "int32"}))
    models = fit_group_models(spark, cells, config=_spark_ml())
    d = models.diagnostics.set_index("DIAG_GROUP")
    assert d.loc[9, "RULE"] == "mle" and "aliased" in d.loc[9, "DETAIL"], d.loc[9, "DETAIL"]
    assert d.loc[9, "N_PARAMS"] == 3 and list(d.loc[[1, 8, 9], "BATCH"]) == ["1", "1", "1"]
    grouped = fit_group_models(spark, cells, config=ModelConfig())
    assert grouped.diagnostics.set_index("DIAG_GROUP").loc[9, "RULE"] == "mle"
    _assert_same_models(fit_group_models(spark, cells, config=_spark_ml(batch_parameters=0)), grouped)
    ridge = fit_group_models(spark, cells, config=ModelConfig(degenerate_rule="ridge"))
    assert ridge.diagnostics.set_index("DIAG_GROUP").loc[9, "RULE"] == "ridge"
