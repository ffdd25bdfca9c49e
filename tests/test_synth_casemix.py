"""Tests of the synthetic trusts' case mix: profiles, the R² of crude on expected rate, missing values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shmi_spark.synth.casemix import PATIENT_BAND_MID_AGE, TrustProfiles, draw_profiles, home_trust_cdf
from shmi_spark.synth.check import casemix_fit, format_casemix

# ------------------------------------------------------------------ casemix_fit


def _frame(year, spells, deaths, expected, codes=None):
    codes = codes or [f"T{i:02d}" for i in range(len(spells))]
    return pd.DataFrame({"PROCODE3": codes, "DIS_FYEAR": year, "SPELLS": spells, "DEATHS": deaths,
                         "EXPECTED": expected})


def test_casemix_fit_matches_numpy_least_squares():
    rng = np.random.default_rng(0)
    spells = rng.integers(500, 5000, 40)
    expected_rate = rng.uniform(0.02, 0.07, 40)
    crude_rate = expected_rate * np.exp(rng.normal(0, 0.15, 40))
    frame = pd.concat([
        _frame(2007, spells, crude_rate * spells, expected_rate * spells),
        _frame(2008, spells, 2 * expected_rate * spells, expected_rate * spells),  # crude = 2 x expected
    ])
    fit = casemix_fit(frame).set_index("DIS_FYEAR")
    slope, intercept = np.polyfit(expected_rate, crude_rate, 1)
    r2 = np.corrcoef(expected_rate, crude_rate)[0, 1] ** 2
    assert fit.loc[2007, "R2"] == pytest.approx(r2, rel=1e-9)
    assert fit.loc[2007, "SLOPE"] == pytest.approx(slope, rel=1e-9)
    assert fit.loc[2007, "INTERCEPT"] == pytest.approx(intercept, rel=1e-6, abs=1e-12)
    assert fit.loc[2008, "R2"] == pytest.approx(1.0) and fit.loc[2008, "SLOPE"] == pytest.approx(2.0)
    assert fit.loc[2007, "TRUSTS"] == 40
    q = np.percentile(spells, [0, 25, 50, 75, 100])
    got = fit.loc[2007, ["SPELLS_MIN", "SPELLS_Q1", "SPELLS_MEDIAN", "SPELLS_Q3", "SPELLS_MAX"]].to_numpy()
    assert list(got) == [int(round(x)) for x in q]
    assert fit.loc[2007, "EXPECTED_MEAN"] == pytest.approx(expected_rate.mean())
    text = format_casemix(casemix_fit(frame))
    assert "2007/08" in text and "R²" in text


def test_casemix_fit_degenerate_years_and_bad_input():
    frame = pd.concat([_frame(2005, [100, 200], [5, 9], [4.0, 8.0]),             # 2 trusts: no R²
                       _frame(2006, [100, 200, 300], [3, 7, 9], [3.0, 6.0, 9.0]),  # no spread of expected
                       _frame(2007, [0, 100, 200, 400], [0, 2, 6, 20], [0.0, 2.0, 5.0, 18.0])])
    fit = casemix_fit(frame).set_index("DIS_FYEAR")
    assert np.isnan(fit.loc[2005, "R2"]) and np.isnan(fit.loc[2006, "R2"])
    assert fit.loc[2007, "TRUSTS"] == 3 and fit.loc[2007, "SPELLS_MIN"] == 100  # empty trust-years ignored
    assert 0.9 < fit.loc[2007, "R2"] <= 1.0
    with pytest.raises(ValueError):
        casemix_fit(frame.drop(columns="EXPECTED"))


# ------------------------------------------------------------------ profiles


def test_home_trust_cdf_keeps_both_margins_and_tilts_by_age():
    rng = np.random.default_rng(1)
    band_weight = rng.uniform(0.5, 2.0, len(PATIENT_BAND_MID_AGE))
    share = rng.uniform(0.2, 3.0, 30)
    tilt = rng.normal(0, 0.4, 30)
    cumulative = home_trust_cdf(band_weight, share, tilt)
    conditional = np.diff(np.concatenate([np.zeros((len(band_weight), 1)), cumulative], 1), axis=1)
    assert np.allclose(conditional.sum(1), 1.0) and (conditional >= 0).all()
    band_p = band_weight / band_weight.sum()
    assert np.allclose(band_p @ conditional, share / share.sum(), atol=1e-6)   # trusts keep their sizes
    old, young = np.argmax(tilt), np.argmin(tilt)
    assert conditional[-1, old] / conditional[0, old] > conditional[-1, young] / conditional[0, young]
    flat = home_trust_cdf(band_weight, share, np.zeros(30))
    assert np.allclose(flat, np.cumsum(share / share.sum())[None, :].repeat(len(band_weight), 0))


def test_draw_profiles_teaching_trusts_are_large_and_tilts_spread():
    size = np.linspace(20_000, 150_000, 146)
    a = draw_profiles(np.random.default_rng(5), size)
    b = draw_profiles(np.random.default_rng(5), size)
    assert all(np.array_equal(getattr(a, f), getattr(b, f)) for f in TrustProfiles.__dataclass_fields__)
    assert 10 <= a.teaching.sum() <= 40
    assert size[a.teaching].min() >= np.median(size)
    for f in ("age", "elective", "charlson", "severity", "deprivation"):
        assert 0.1 < getattr(a, f).std() < 0.7, f
    assert np.corrcoef(a.age, a.elective)[0, 1] < 0  # older catchments: less elective work
    flat = TrustProfiles.flat(4)
    assert not flat.teaching.any() and not flat.age.any()


# ------------------------------------------------------------------ the world


@pytest.fixture(scope="module")
def world_and_pilot():
    from shmi_spark.synth.calibrate import build_world
    from shmi_spark.synth.patients import analysis_spells, plant_outcomes
    world = build_world(11, 1_000_000, pilot=200_000)
    rng = np.random.default_rng(99)
    spells = analysis_spells(world, rng, 400_000)
    plant_outcomes(world, rng, spells)
    return world, spells


def test_trust_sizes_spread_like_real_trusts(world_and_pilot):
    world, _ = world_and_pilot
    acute = world.trusts[world.trusts.TYPE == "acute"]
    size = acute.SIZE.to_numpy()
    assert len(size) == 146
    assert 18_000 < size.min() < 22_000 and size.max() > 150_000
    assert 30_000 < np.median(size) < 50_000
    assert abs(size.sum() - 36_488_693 / 5.5) < 1.0


def test_case_mix_explains_the_trusts_crude_rates(world_and_pilot):
    """Expected (case-mix-only) rates spread across trusts; crude follows expected; the trust
    effects are not where the spread comes from."""
    world, spells = world_and_pilot
    position = spells["acute_position"]
    n_trusts = world.n_acute
    count = np.bincount(position, minlength=n_trusts)
    expected = np.bincount(position, weights=spells["p_casemix"], minlength=n_trusts) / count
    with_trust = np.bincount(position, weights=spells["p_death"], minlength=n_trusts) / count
    assert expected.std() / expected.mean() > 0.2
    # without binomial noise, crude ≈ expected x trust effect: R² of the expected rates well above 0.9 (but for
    # the post-discharge trust of synth/hsmr.py, planted to double its deaths at this size)
    ordinary = np.arange(n_trusts) != world.post_discharge_position
    assert np.corrcoef(expected[ordinary], with_trust[ordinary])[0, 1] ** 2 > 0.9
    pd_trust = world.post_discharge_position
    assert with_trust[pd_trust] / expected[pd_trust] > 1.5
    # the trust effects are as drawn: no case-mix component in them
    persistent = world.trust_year[:, :5].mean(1) - world.excess[:, :5].mean(1)
    assert abs(np.corrcoef(persistent, expected)[0, 1]) < 0.3
    # older catchments have older patients, the patients of teaching trusts are more often elective
    profiles = world.profiles
    mean_age = np.bincount(position, weights=spells["age_years"], minlength=n_trusts) / count
    assert np.corrcoef(profiles.age, mean_age)[0, 1] > 0.6
    elective = np.bincount(position, weights=spells["elective"], minlength=n_trusts) / count
    assert np.corrcoef(profiles.elective, elective)[0, 1] > 0.5


def test_missing_values_depend_on_the_true_value(world_and_pilot):
    """Rates of death of the cells of missing age (by sex) and admission method, from every spell weighted
    by its probability of the value missing: the paper's 2.67% / 2.98% and 2.40%."""
    from shmi_spark.synth.numeric import sigmoid
    from shmi_spark.synth.patients import admimeth_missing_p, age_missing_p
    from shmi_spark.synth.world import AGE_UNKNOWN, linear_predictor
    world, spells = world_and_pilot
    p_age = sigmoid(linear_predictor(world, dict(spells, age_band=np.full_like(spells["age_band"], AGE_UNKNOWN))))
    weight = age_missing_p(world, spells["sex_true"], spells["age_years"])
    for sex, share, rate in ((0, 0.179, 2.67), (1, 0.129, 2.98)):
        cell = spells["sex"] == sex
        assert 100 * weight[cell].mean() == pytest.approx(share, abs=0.01)
        assert 100 * (weight[cell] * p_age[cell]).sum() / weight[cell].sum() == pytest.approx(rate, abs=0.3)
    p_method = sigmoid(linear_predictor(world, dict(spells, admimeth=np.full_like(spells["admimeth"], 2))))
    weight = admimeth_missing_p(world, spells["elective"])
    assert 100 * weight.mean() == pytest.approx(0.097, abs=0.01)
    assert 100 * (weight * p_method).sum() / weight.sum() == pytest.approx(2.40, abs=0.3)
    assert world.admimeth_missing[0] > 4 * world.admimeth_missing[1]  # elective admissions lose it more often
    assert world.age_missing[1, 1] > 0  # older women's ages go missing more often
