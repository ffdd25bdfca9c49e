"""Calibration of the world to the paper's Tables 2-3, and the planted outliers of Table 4.

:func:`build_world` drafts the world (:func:`.world.draft_world`) and calibrates
it deterministically on pilot samples drawn by the generator itself
(:func:`.patients.pilot_spells`): the patient mix, the elective share and the
Charlson-band model are raked to the published shares, small groups are made
larger (at least ~700 deaths at full scale), the shared effects of the death
model are raked in logit space to the published death rates by age band, sex,
admission type and Charlson band, the deprivation-fifth model to Table 3's
shares and rates, and the Table 4 outliers get an excess log-odds large
enough to be flagged above the 99.8% limit at the world's size
(METHOD.md §7).  The published figures are in :mod:`.paper`.
"""

from __future__ import annotations

from datetime import date

import numpy as np

from shmi_spark.synth.numeric import logit, seed_sequence, sigmoid
from shmi_spark.synth.paper import (
    FULL_SCALE,
    OUTLIER_PATTERN,
    TABLE2_BAND_NAMES,
    TABLE2_BAND_OF_AGE_BAND,
    TABLE2_BANDS,
    calibration_targets,
)
from shmi_spark.synth.patients import pilot_spells
from shmi_spark.synth.world import World, charlson_age_z, draft_world, linear_predictor

__all__ = ["build_world", "calibrate"]

# Table 3 figures used as rates and shares (elective, emergency, missing; Charlson 0, 1-5, >5)
_ADMIMETH_RATE = np.array([76748 / 9057433, 1501055 / 27395986, 847 / 35274])
_CHARLSON_RATE = np.array([507279 / 25935482, 192125 / 4702488, 879246 / 5850723])
_CHARLSON_SHARE = np.array([25935482, 4702488, 5850723]) / 36488693
_ELECTIVE_SHARE = 9057433 / (9057433 + 27395986)
# Table 2 totals: deaths / admissions of men, women
_SEX_RATE = np.array([765740 / 18354171, 812641 / 18128433])
#: excess log-odds need: the 99.8% limit's z and the between-trust SD of the funnel (METHOD.md §7)
_Z_998 = 3.090232
_TAU = 0.065


def build_world(seed: int, n: int, start: date = date(2005, 4, 1), end: date = date(2010, 9, 30),
                pilot: int = 300_000) -> World:
    """The calibrated world of ``n`` analysis admissions from ``seed``; ``pilot``: pilot sample size."""
    world = draft_world(seed, n, start, end)
    calibrate(world, pilot)
    return world


def calibrate(world: World, pilot: int) -> None:
    """Rake the world's mixes and shared effects on pilot samples so that it reproduces Tables 2-3."""
    for iteration in range(3):
        spells = pilot_spells(world, rng_seed=seed_sequence(world.seed, 2, iteration), n=pilot)
        _rake_mixes(world, spells)
    spells = pilot_spells(world, rng_seed=seed_sequence(world.seed, 3), n=pilot)
    spells = _boost_small_groups(world, spells, pilot)
    _rake_death_rates(world, spells)
    p_death = sigmoid(linear_predictor(world, spells))
    _fit_deprivation(world, spells, p_death)
    _plant_outliers(world, p_death)
    world.params["calibration"] = {
        "pilot_spells": int(len(p_death)), "pilot_pct_died": float(100 * p_death.mean()),
        "charlson_a": world.charlson_a, "charlson_b": world.charlson_b}


def _rake_mixes(world: World, spells: dict) -> None:
    """One pass on the case mix: patients by Table 2 cell, the elective share, the Charlson-band shares."""
    targets = calibration_targets()
    table2 = targets[(targets.table == "T2") & ~targets.level.isin(["total", "missing"])]
    # admissions by Table 2 cell → adjust patient weights
    count = np.zeros((12, 3))
    np.add.at(count, (TABLE2_BAND_OF_AGE_BAND[spells["age_band_true"]], spells["sex_true"]), 1)
    target = np.stack([table2[table2.sex == "M"].admissions.to_numpy(),
                       table2[table2.sex == "F"].admissions.to_numpy()], 1)
    have = count[:11, :2] / count[:11, :2].sum()
    want = target / target.sum()
    world.patient_cell_w = world.patient_cell_w * (want / np.maximum(have, 1e-9)) ** 0.9
    # elective share: shift group elective logits
    admimeth = spells["admimeth"]
    elective = (admimeth == 0).mean() / max((admimeth < 2).mean(), 1e-9)
    world.elective_p = sigmoid(logit(world.elective_p) + (logit(_ELECTIVE_SHARE) - logit(elective)))
    # Charlson band shares: P(band>0 | age) = sigmoid(a + 1.1 z), P(>5 | >0) = sigmoid(b + 0.5 z)
    z = charlson_age_z(spells["age_years"])
    for _ in range(30):
        p_positive = sigmoid(world.charlson_a + 1.1 * z)
        p_high = sigmoid(world.charlson_b + 0.5 * z)
        share_positive, share_high = p_positive.mean(), (p_positive * p_high).mean()
        world.charlson_a += logit(1 - _CHARLSON_SHARE[0]) - logit(share_positive)
        world.charlson_b += (logit(_CHARLSON_SHARE[2] / (1 - _CHARLSON_SHARE[0]))
                             - logit(share_high / share_positive))


def _boost_small_groups(world: World, spells: dict, pilot: int) -> dict:
    """Every group at least ~700 deaths over the window at full scale: raise small groups' sizes.

    Returns the pilot sample to rake on (a new one when a group was boosted).
    """
    p_death = sigmoid(linear_predictor(world, spells))
    n_groups = len(world.group_ids)
    deaths = np.bincount(spells["group"], weights=p_death, minlength=n_groups) * FULL_SCALE / len(p_death)
    boost = np.ones(n_groups)
    low = (deaths < 700) & (np.arange(n_groups) > 0)
    boost[low] = np.minimum(700 / np.maximum(deaths[low], 1.0), 12.0)
    if low.any():
        world.group_cdf = world.group_mix.cumulative(boost)
        spells = pilot_spells(world, rng_seed=seed_sequence(world.seed, 4), n=pilot)
    world.params["group_size_boost"] = {int(world.group_ids[i]): round(float(boost[i]), 4)
                                        for i in np.nonzero(low)[0]}
    return spells


def _rake_death_rates(world: World, spells: dict) -> None:
    """Rake the shared effects of AGE (Table 2 bands), SEX, ADMIMETH, CHARLSON to the published rates."""
    targets = calibration_targets()
    table2 = targets[targets.table == "T2"]
    age_rate = np.zeros(12)
    for i, name in enumerate(TABLE2_BAND_NAMES):
        rows = table2[table2.level == name]
        age_rate[i] = rows.deaths.sum() / rows.admissions.sum()
    shared = world.shared
    table2_band = TABLE2_BAND_OF_AGE_BAND[spells["age_band"]]
    for _ in range(40):
        p_death = sigmoid(linear_predictor(world, spells))
        for i in range(12):
            cell = table2_band == i
            if cell.any():
                shared["AGE_BAND"][TABLE2_BANDS[TABLE2_BAND_NAMES[i]]] += 0.8 * (
                    logit(age_rate[i]) - logit(p_death[cell].mean()))
        p_death = sigmoid(linear_predictor(world, spells))
        for sex in range(2):
            cell = spells["sex"] == sex
            shared["SEX_CAT"][sex] += 0.8 * (logit(_SEX_RATE[sex]) - logit(p_death[cell].mean()))
        p_death = sigmoid(linear_predictor(world, spells))
        for method in range(3):
            cell = spells["admimeth"] == method
            if cell.any():
                shared["ADMIMETH_CAT"][method] += 0.8 * (logit(_ADMIMETH_RATE[method]) - logit(p_death[cell].mean()))
        p_death = sigmoid(linear_predictor(world, spells))
        for band in range(3):
            cell = spells["charlson"] == band
            shared["CHARLSON_BAND"][band] += 0.8 * (logit(_CHARLSON_RATE[band]) - logit(p_death[cell].mean()))


def _fit_deprivation(world: World, spells: dict, p_death: np.ndarray) -> None:
    """IMD fifth: P(fifth | patient) ∝ w_f exp(theta_f * z_age); match Table 3 shares and rates."""
    targets = calibration_targets()
    table3 = targets[(targets.table == "T3") & (targets.variable == "imd_fifth")]
    share_wanted = table3.admissions.to_numpy() / table3.admissions.sum()
    rate_wanted = table3.deaths.to_numpy() / table3.admissions.to_numpy()
    z_age = (np.clip(spells["age_years"], 0, 100) - 55.0) / 25.0
    weight, theta = np.ones(6) / 6, np.zeros(6)
    for _ in range(200):
        log_weight = np.log(weight)[None, :] + theta[None, :] * z_age[:, None]
        p_fifth = np.exp(log_weight - log_weight.max(1, keepdims=True))
        p_fifth /= p_fifth.sum(1, keepdims=True)
        share = p_fifth.mean(0)
        rate = (p_fifth * p_death[:, None]).sum(0) / p_fifth.sum(0)
        weight = weight * (share_wanted / share)
        theta = theta + 0.5 * (logit(rate_wanted) - logit(rate))
    world.imd_w, world.imd_theta = weight / weight.sum(), theta


def _plant_outliers(world: World, p_death: np.ndarray) -> None:
    """Table 4's outliers: a log-OR large enough to be flagged above the 99.8% limit at this N."""
    acute = world.trusts.index[world.trusts.TYPE == "acute"].to_numpy()
    share = world.trusts.SIZE.to_numpy()[acute] / world.trusts.SIZE.to_numpy()[acute].sum()
    deaths_year = p_death.mean() * world.n / 5.5
    tau2 = _TAU ** 2
    for slot, years in OUTLIER_PATTERN:
        position = world.outlier_positions[slot]
        expected = max(share[position] * deaths_year, 1.0)
        need = _Z_998 * np.sqrt(1.0 / expected + tau2) + 2.5 * np.sqrt(1.0 / expected)
        log_or = float(np.clip(need * 1.1, 0.30, 1.2))
        for year in years:
            world.excess[position, year - 2005] = log_or
    world.trust_year = world.trust_year + world.excess
