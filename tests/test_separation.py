"""The exact maximum-likelihood limit where a group's data separate (METHOD.md §5, model/separation.py).

Each hand-built group is fitted by the pipeline's model code and compared, cell
by cell, with a long-run record-level IRLS (:mod:`shmi_spark.model.limit_check`:
Newton steps on one row per spell, least squares by SVD, until the deviance
stops falling; a separated cell's probability is then within about 1e-10 of
its limit): the fitted probabilities agree to 1e-6, separated cells included.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_models import _cells, _probabilities

from shmi_spark.config import ModelConfig
from shmi_spark.model.firth import firth_fit
from shmi_spark.model.fit import fit_group_models
from shmi_spark.model.limit_check import long_run_probabilities
from shmi_spark.model.separation import aliased_columns, find_separation, limit_scale


def _fit(spark, rows, **settings):
    frame = _cells(rows).astype({"SPELLS": "int64", "DEATHS": "int64", "ADM_MONTH": "int32",
                                 "YEAR_INDEX": "int32", "DIAG_GROUP": "int32"})
    sdf = spark.createDataFrame(frame)
    models = fit_group_models(spark, sdf, config=ModelConfig(**settings))
    scored = _probabilities(spark, sdf, models)
    return frame, models, scored


def _assert_limit(spark, rows, *, rule="mle_limit"):
    frame, models, scored = _fit(spark, rows)
    d = models.diagnostics.iloc[0]
    assert d["RULE"] == rule, d["DETAIL"]
    keys = ["AGE_BAND", "SEX_CAT", "ADMIMETH_CAT"]
    got = frame.merge(scored[keys + ["P_EXPECTED"]], on=keys, how="left")["P_EXPECTED"].to_numpy()
    want = long_run_probabilities(frame)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    return d, got, models


def test_separation_by_one_level(spark):
    """Nobody aged 90+ died: that cell's probability is 0, the others the MLE of the rest."""
    rows = [(4, "60-64", "male", "elective", 500, 40), (4, "60-64", "female", "elective", 500, 60),
            (4, "90+", "male", "elective", 40, 0), (4, "80-84", "female", "non-elective", 300, 50),
            (4, "80-84", "male", "non-elective", 300, 45), (4, "80-84", "male", "elective", 100, 12)]
    d, p, _ = _assert_limit(spark, rows)
    assert "1 of 6 cells (40 spells, 0 deaths)" in d["DETAIL"] and p[2] < 1e-15


def test_separation_by_a_combination_of_levels(spark):
    """No level is pure, but all died in (70-74, female) and none in (60-64, male): both cells separate."""
    rows = [(7, "60-64", "male", "elective", 200, 0), (7, "60-64", "female", "elective", 200, 30),
            (7, "70-74", "male", "elective", 200, 40), (7, "70-74", "female", "elective", 60, 60)]
    d, p, models = _assert_limit(spark, rows)
    assert "2 of 4 cells (260 spells, 60 deaths) at their limit, probability 0 in 1 and 1 in 1" in d["DETAIL"]
    # the cells set at their limit, listed
    sep = models.separated
    assert sep[["AGE_BAND", "SEX_CAT", "LIMIT"]].values.tolist() == [["60-64", "male", 0.0], ["70-74", "female", 1.0]]
    assert p[0] < 1e-15 and p[3] == 1.0
    assert p[1] == pytest.approx(30 / 200, abs=1e-9) and p[2] == pytest.approx(40 / 200, abs=1e-9)


def test_complete_separation(spark):
    """Every cell is pure and separable: every probability is its limit, no fit."""
    rows = [(3, "60-64", "male", "elective", 100, 0), (3, "70-74", "female", "elective", 50, 50),
            (3, "60-64", "female", "elective", 30, 0), (3, "70-74", "male", "elective", 20, 20)]
    d, p, _ = _assert_limit(spark, rows)
    assert d["ITERATIONS"] == 0 and "4 of 4 cells" in d["DETAIL"]
    assert p.tolist() == [0.0, 1.0, 0.0, 1.0] or np.allclose(p, [0, 1, 0, 1], atol=1e-15)


def test_no_deaths_is_the_limit_too(spark):
    frame, models, scored = _fit(spark, [(2, "60-64", "male", "elective", 300, 0),
                                         (2, "70-74", "female", "elective", 200, 0)])
    assert models.diagnostics.iloc[0]["RULE"] == "crude_rate"
    assert scored["P_EXPECTED"].max() == 0.0


def test_sparse_small_group_equals_long_run_irls(spark):
    """A small group spread over many one-spell cells (as in the synthetic world): separation runs
    through combinations of levels; every cell's probability equals the long-run IRLS."""
    rng = np.random.default_rng(11)
    ages, sexes, adms = ["60-64", "70-74", "80-84", "90+"], ["male", "female"], ["elective", "non-elective"]
    counts: dict[tuple, list[int]] = {}
    for _ in range(230):
        key = (str(rng.choice(ages)), str(rng.choice(sexes)), str(rng.choice(adms)))
        risk = 0.02 + 0.08 * (key[0] == "90+") + 0.05 * (key[2] == "non-elective")
        cell = counts.setdefault(key, [0, 0])
        cell[0] += 1
        cell[1] += int(rng.random() < risk)
    rows = [(0, a, s, m, n, dth) for (a, s, m), (n, dth) in sorted(counts.items())]
    frame, models, scored = _fit(spark, rows)
    d = models.diagnostics.iloc[0]
    assert d["RULE"] in {"mle", "mle_limit"} and "Error" not in d["DETAIL"]
    keys = ["AGE_BAND", "SEX_CAT", "ADMIMETH_CAT"]
    got = frame.merge(scored[keys + ["P_EXPECTED"]], on=keys, how="left")["P_EXPECTED"].to_numpy()
    np.testing.assert_allclose(got, long_run_probabilities(frame), rtol=0, atol=1e-6)
    # expected deaths = observed: the limit keeps the likelihood equations
    assert (got * frame["SPELLS"]).sum() == pytest.approx(frame["DEATHS"].sum(), rel=1e-9)


def test_find_separation_directly():
    # intercept and one feature: the feature's cells have no deaths
    x = np.array([[0.0], [0.0], [1.0]])
    sep = find_separation(x, np.array([10.0, 5.0, 4.0]), np.array([3.0, 1.0, 0.0]))
    assert sep.cells.tolist() == [False, False, True] and sep.limits[2] == 0.0
    assert (np.sign(np.column_stack([np.ones(3), x]) @ sep.direction) == [0, 0, -1]).all()
    # no pure cell, or mixed cells that fix every parameter: nothing to separate, no programme
    assert not find_separation(x, np.array([10.0, 5.0, 4.0]), np.array([3.0, 1.0, 2.0])).any
    # an unseparable pure cell: (1,0) pure but pinned by the mixed cells (0,0) and (1,1), (0,1)
    x2 = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    sep2 = find_separation(x2, np.array([10.0, 10.0, 10.0, 10.0]), np.array([5.0, 0.0, 5.0, 5.0]))
    assert not sep2.any


def test_aliased_columns_and_limit_scale():
    # the second feature repeats the first; the third is the intercept minus the first
    x = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    assert aliased_columns(x) == [1, 2]
    rows = np.array([[1.0, 1.0], [1.0, 0.0]])
    m = limit_scale(rows, np.array([-1.0, 1.0]), np.array([0.5, 2.0]), np.array([1.0, -2.0]), 40.0)
    assert (np.array([-1.0, 1.0]) * (rows @ (np.array([0.5, 2.0]) + m * np.array([1.0, -2.0])))).min() \
        == pytest.approx(40.0)



@pytest.mark.parametrize("rule", ["firth", "ridge", "crude"])
def test_other_rules_for_separated_groups(spark, rule):
    """Firth on a saturated table adds ½ to every count (its known closed form); ridge stays finite
    near the limit; crude gives the group's rate. A group without separation keeps its MLE."""
    rows = [(7, "60-64", "male", "elective", 200, 0), (7, "60-64", "female", "elective", 200, 30),
            (7, "70-74", "male", "elective", 200, 40), (7, "70-74", "female", "elective", 60, 60),
            (8, "60-64", "male", "elective", 200, 10), (8, "70-74", "female", "elective", 100, 20),
            (8, "60-64", "female", "elective", 100, 8), (8, "70-74", "male", "elective", 100, 15)]
    frame, models, scored = _fit(spark, rows, degenerate_rule=rule)
    d = models.diagnostics.set_index("DIAG_GROUP")
    assert d.loc[7, "RULE"] == {"firth": "firth", "ridge": "ridge", "crude": "crude_rate"}[rule]
    assert "separation: 2 of 4 cells" in d.loc[7, "DETAIL"] and d.loc[8, "RULE"] == "mle"
    keys = ["DIAG_GROUP", "AGE_BAND", "SEX_CAT", "ADMIMETH_CAT"]
    p = frame.merge(scored[keys + ["P_EXPECTED"]], on=keys, how="left")["P_EXPECTED"].to_numpy()
    if rule == "crude":
        np.testing.assert_allclose(p[:4], 130 / 660, atol=1e-12)
    elif rule == "ridge":
        assert 0 < p[0] < 0.01 and 0.99 < p[3] < 1
    else:  # main effects of age and sex on a 2x2 table: not saturated, so only bounds and order
        assert 0 < p[0] < 0.01 and 0.99 < p[3] < 1 and np.isfinite(models.coefficients["ESTIMATE"]).all()
    # the MLE's likelihood equations: expected = observed deaths for the group and each level
    assert (p[4:] * frame["SPELLS"][4:]).sum() == pytest.approx(53, rel=1e-9)


def test_firth_on_a_saturated_table_adds_a_half():
    x = np.array([[1.0, 0.0], [1.0, 1.0]])
    fit = firth_fit(x, np.array([10.0, 10.0]), np.array([5.0, 0.0]), max_iter=50, tol=1e-12)
    assert fit.converged
    np.testing.assert_allclose(fit.coefficients, [0.0, np.log(0.5 / 10.5)], atol=1e-9)


def test_only_numerical_failures_change_the_rule():
    """A fitter's numerical failure is a change of rule, named in DETAIL; any other error fails the run."""
    import time

    from shmi_spark.model.design import GroupDesign, Limit
    from shmi_spark.model.rules import fit_with_rules

    d = GroupDesign(group=5, spells=100, deaths=10, n_cells=4,
                    levels={"AGE_BAND": [("60-64", 50, 4), ("70-74", 50, 6)]}, reference={"AGE_BAND": "60-64"},
                    features=[("AGE_BAND", "70-74")], limit=Limit())

    def singular(design, reg_param, standard_errors):
        raise np.linalg.LinAlgError("singular matrix")

    fit = fit_with_rules(singular, d, ModelConfig(), time.perf_counter(), (np.linalg.LinAlgError,))
    assert fit.diagnostics["RULE"] == "crude_rate"
    assert "unpenalised fit failed: LinAlgError: singular matrix" in fit.diagnostics["DETAIL"]
    assert "ridge fit failed: LinAlgError" in fit.diagnostics["DETAIL"]

    def broken(design, reg_param, standard_errors):
        raise KeyError("a programming error")

    with pytest.raises(KeyError):
        fit_with_rules(broken, d, ModelConfig(), time.perf_counter(), (np.linalg.LinAlgError,))
    with pytest.raises(ValueError, match="not been examined"):
        fit_with_rules(singular, GroupDesign(group=5, spells=100, deaths=10, n_cells=4), ModelConfig(),
                       time.perf_counter(), (np.linalg.LinAlgError,))


def test_rule_settings_are_checked():
    from conftest import TEST_PROFILE

    from shmi_spark.config import ConfigError, load_config

    assert load_config(TEST_PROFILE).model.degenerate_rule == "ml_limit"
    assert load_config(TEST_PROFILE, settings={"model": {"degenerate_rule": "firth"}}).model.degenerate_rule == "firth"
    with pytest.raises(ConfigError, match="firth only with model.engine = grouped"):
        load_config(TEST_PROFILE, settings={"model": {"degenerate_rule": "firth", "engine": "spark_ml"}})
    with pytest.raises(ConfigError, match="ml_limit, ridge, firth or crude"):
        load_config(TEST_PROFILE, settings={"model": {"degenerate_rule": "extended_mle"}})
