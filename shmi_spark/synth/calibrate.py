"""Calibration of the world to the paper's Tables 2-3, and the planted outliers of Table 4.

:func:`build_world` drafts the world (:func:`.world.draft_world`) and calibrates
it deterministically on pilot samples drawn by the generator itself
(:func:`.patients.pilot_spells`): the patient mix, the elective share and the
Charlson-band model are raked to the published shares, small groups are made
larger (at least ~700 deaths at full scale), the shared effects of the death
model are raked in logit space to the published death rates by age band, sex,
admission type and Charlson band (the cells of missing age and admission
method on every pilot spell weighted by its probability of the value missing,
which depends on the true value: :class:`_MissingCells`), the deprivation-fifth
model to Table 3's shares and rates, and the Table 4 outliers get an excess
log-odds large enough to be flagged above the 99.8% limit at the world's size
and the trust's case mix (METHOD.md §6); the post-discharge trust of
:mod:`.hsmr` gets its excess the same way, and the distribution of prior
emergency admissions by age band (which :mod:`.hsmr` averages over) is taken
from the pilot.  Last, the death rates are raked once more (a few passes) with
the planted excess deaths in, as the paper's national rates hold its
outliers' deaths.  The pilots are drawn with the
trusts' case-mix profiles (:mod:`.casemix`), so the national tables hold
however much the trusts differ.  The published figures are in :mod:`.paper`.
"""

from __future__ import annotations

from datetime import date

import numpy as np

from shmi_spark.synth.hsmr import POST_DISCHARGE_MAX_RATIO, PRIOR_EMERGENCY_CAP, pick_post_discharge_trust
from shmi_spark.synth.numeric import logit, seed_sequence, sigmoid
from shmi_spark.synth.paper import (
    FULL_SCALE,
    OUTLIER_PATTERN,
    TABLE2_BAND_NAMES,
    TABLE2_BAND_OF_AGE_BAND,
    TABLE2_BANDS,
    calibration_targets,
)
from shmi_spark.synth.patients import admimeth_missing_p, age_missing_p, pilot_spells, plant_outcomes, refresh_log_odds
from shmi_spark.synth.world import (
    AGE_UNKNOWN,
    World,
    charlson_age_z,
    deprivation_p,
    draft_world,
    linear_predictor,
)

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
    _plant_outliers(world, spells, p_death)
    _plant_post_discharge(world, spells, p_death)
    # the paper's national rates hold its outliers' deaths: rake once more with the planted excess in
    year = np.clip(spells["fy"] - 2005, 0, 5)
    _rake_death_rates(world, spells, iterations=10, extra=world.post_discharge[spells["acute_position"], year])
    _prior_emergency_mix(world, spells)
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
    # Charlson band shares: P(band>0 | age, trust) = sigmoid(a + 1.1 z + c_t), P(>5 | >0) = sigmoid(b + 0.5 z
    # + c_t / 2), c_t the trust's coding depth
    z = charlson_age_z(spells["age_years"])
    coding = world.profiles.charlson[spells["acute_position"]]
    for _ in range(30):
        p_positive = sigmoid(world.charlson_a + 1.1 * z + coding)
        p_high = sigmoid(world.charlson_b + 0.5 * z + 0.5 * coding)
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
        world.set_group_cdf(boost)
        spells = pilot_spells(world, rng_seed=seed_sequence(world.seed, 4), n=pilot)
    world.params["group_size_boost"] = {int(world.group_ids[i]): round(float(boost[i]), 4)
                                        for i in np.nonzero(low)[0]}
    return spells


def _rake_death_rates(world: World, spells: dict, iterations: int = 40, extra: np.ndarray | float = 0.0) -> None:
    """Rake the shared effects of AGE (Table 2 bands), SEX, ADMIMETH, CHARLSON to the published rates.

    The two cells of missing values (age unknown, admission method unknown) are
    raked on every pilot spell weighted by its probability of having the value
    missing (:func:`_rake_missing`), not on the few pilot spells that do.
    ``extra``: log-odds added to each pilot spell's besides the model's (the
    post-discharge trust's excess, once planted).
    """
    targets = calibration_targets()
    table2 = targets[targets.table == "T2"]
    age_rate = np.zeros(12)
    for i, name in enumerate(TABLE2_BAND_NAMES):
        rows = table2[table2.level == name]
        age_rate[i] = rows.deaths.sum() / rows.admissions.sum()
    shared = world.shared
    table2_band = TABLE2_BAND_OF_AGE_BAND[spells["age_band"]]
    missing = _MissingCells(world, spells, extra)
    for _ in range(iterations):
        p_death = sigmoid(linear_predictor(world, spells) + extra)
        for i in range(11):
            cell = table2_band == i
            if cell.any():
                shared["AGE_BAND"][TABLE2_BANDS[TABLE2_BAND_NAMES[i]]] += 0.8 * (
                    logit(age_rate[i]) - logit(p_death[cell].mean()))
        p_death = sigmoid(linear_predictor(world, spells) + extra)
        for sex in range(2):
            cell = spells["sex"] == sex
            shared["SEX_CAT"][sex] += 0.8 * (logit(_SEX_RATE[sex]) - logit(p_death[cell].mean()))
        p_death = sigmoid(linear_predictor(world, spells) + extra)
        for method in range(2):
            cell = spells["admimeth"] == method
            shared["ADMIMETH_CAT"][method] += 0.8 * (logit(_ADMIMETH_RATE[method]) - logit(p_death[cell].mean()))
        p_death = sigmoid(linear_predictor(world, spells) + extra)
        for band in range(3):
            cell = spells["charlson"] == band
            shared["CHARLSON_BAND"][band] += 0.8 * (logit(_CHARLSON_RATE[band]) - logit(p_death[cell].mean()))
        missing.rake()
    world.params["missing_values"] = missing.report()


class _MissingCells:
    """The cells of Tables 2-3 of missing values: age unknown (by sex) and admission method unknown.

    A pilot holds only a few hundred spells with a value missing, too few to rake
    on.  Every pilot spell instead counts with its probability of having the value
    missing (:func:`.patients.age_missing_p`, :func:`.patients.admimeth_missing_p`)
    and its log-odds of death were the value missing.  The paper's figures imply
    that missingness depends on the true value:

    * age: unknown for 0.18% of men's and 0.13% of women's admissions, who die at
      2.67% and 2.98%: women of unknown age die more often than men of unknown
      age, whereas at every known age women die less often than men (Table 2), so
      the women whose age is missing are older ones.  P(unknown | man) = base_M;
      P(unknown | woman, age) = base_F x exp(k (age - 50) / 25), the slope ``k``
      raked to the women/men ratio of the rates, the bases to the shares, the
      shared effect of the unknown age band to the pooled rate;
    * admission method: unknown for 0.10% of admissions, who die at 2.40%, between
      the elective (0.85%) and the emergency (5.48%) rates: two thirds of them
      elective admissions by that mix, so elective admissions lose their method
      (0.26%) six times as often as emergencies (0.04%).
    """

    def __init__(self, world: World, spells: dict, extra: np.ndarray | float = 0.0):
        self.world, self.spells, self.extra = world, spells, extra
        self.sex = spells["sex_true"]
        self.observed_sex = spells["sex"]
        targets = calibration_targets()
        table2 = targets[targets.table == "T2"]
        missing = table2[table2.level == "missing"].set_index("sex")
        total = table2[table2.level == "total"].set_index("sex")
        self.share = np.array([missing.admissions[s] / total.admissions[s] for s in ("M", "F")])
        self.rate = np.array([missing.deaths[s] / missing.admissions[s] for s in ("M", "F")])
        self.pooled = missing.deaths.sum() / missing.admissions.sum()
        # admission method: the elective fraction of the missing implied by the rates, and the share missing
        table3 = targets[(targets.table == "T3") & (targets.variable == "admission_type")].set_index("level")
        share_missing = table3.admissions["missing"] / table3.admissions.sum()
        rate = table3.deaths / table3.admissions
        elective_fraction = (rate["emergency"] - rate["missing"]) / (rate["emergency"] - rate["elective"])
        world.admimeth_missing = np.array([share_missing * elective_fraction / _ELECTIVE_SHARE,
                                           share_missing * (1 - elective_fraction) / (1 - _ELECTIVE_SHARE)])
        self.admimeth_weight = admimeth_missing_p(world, spells["elective"])
        self.z = (np.clip(spells["age_years"], 0, 100) - 50.0) / 25.0
        self.age_unknown = dict(spells, age_band=np.full_like(spells["age_band"], AGE_UNKNOWN))
        self.admimeth_unknown = dict(spells, admimeth=np.full_like(spells["admimeth"], 2))

    def _set_slope(self, slope: float) -> None:
        """Set the women's slope, and the bases so that each sex's share of unknown ages is the paper's."""
        world = self.world
        world.age_missing[:, 1] = [0.0, slope]
        for sex in range(2):
            own = self.sex == sex
            world.age_missing[sex, 0] = self.share[sex] / np.exp(world.age_missing[sex, 1] * self.z[own]).mean()

    def rake(self) -> None:
        """One pass: the women's slope (bisection), the unknown-age effect and the unknown-method effect."""
        world, shared = self.world, self.world.shared
        p_unknown = sigmoid(linear_predictor(world, self.age_unknown) + self.extra)
        men, women = self.observed_sex == 0, self.observed_sex == 1
        rate_men = p_unknown[men].mean()  # men's ages go missing whatever their age
        want = logit(rate_men) + logit(self.rate[1]) - logit(self.rate[0])
        z_women, p_women = self.z[women], p_unknown[women]
        low, high = -1.5, 3.0
        for _ in range(25):  # bisection on the slope: the women/men difference of the rates' log-odds
            slope = 0.5 * (low + high)
            weight = np.exp(slope * z_women)
            if logit((weight * p_women).sum() / weight.sum()) < want:
                low = slope
            else:
                high = slope
        self._set_slope(0.5 * (low + high))
        weight = age_missing_p(world, self.sex, self.spells["age_years"])
        pooled = (weight * p_unknown).sum() / weight.sum()
        shared["AGE_BAND"][AGE_UNKNOWN] += 0.8 * (logit(self.pooled) - logit(pooled))
        p_method = sigmoid(linear_predictor(world, self.admimeth_unknown) + self.extra)
        rate = (self.admimeth_weight * p_method).sum() / self.admimeth_weight.sum()
        shared["ADMIMETH_CAT"][2] += 0.8 * (logit(_ADMIMETH_RATE[2]) - logit(rate))

    def report(self) -> dict:
        """The missingness parameters (for truth/params.json)."""
        return {"age_unknown_base_m_f": [float(x) for x in self.world.age_missing[:, 0]],
                "age_unknown_slope_m_f": [float(x) for x in self.world.age_missing[:, 1]],
                "admimeth_unknown_elective_nonelective": [float(x) for x in self.world.admimeth_missing]}


def _fit_deprivation(world: World, spells: dict, p_death: np.ndarray) -> None:
    """IMD fifth: P(fifth | patient, trust) ∝ w_f exp(theta_f * z_age + tilt_t (f - 2)); match Table 3 shares
    and rates (:func:`.world.deprivation_p`)."""
    targets = calibration_targets()
    table3 = targets[(targets.table == "T3") & (targets.variable == "imd_fifth")]
    share_wanted = table3.admissions.to_numpy() / table3.admissions.sum()
    rate_wanted = table3.deaths.to_numpy() / table3.admissions.to_numpy()
    tilt = world.profiles.deprivation[spells["acute_position"]]
    weight, theta = np.ones(6) / 6, np.zeros(6)
    for _ in range(200):
        p_fifth = deprivation_p(world, spells["age_years"], tilt, weight, theta)
        share = p_fifth.mean(0)
        rate = (p_fifth * p_death[:, None]).sum(0) / p_fifth.sum(0)
        weight = weight * (share_wanted / share)
        theta = theta + 0.5 * (logit(rate_wanted) - logit(rate))
    world.imd_w, world.imd_theta = weight / weight.sum(), theta


def _plant_outliers(world: World, spells: dict, p_death: np.ndarray) -> None:
    """Table 4's outliers: an excess large enough to be flagged above the 99.8% limit at this N.

    The excess is needed on the ratio of observed to expected deaths (the SHMI):
    ``need`` = the 99.8% limit's half-width in log-SHMI plus 2 standard errors,
    for the trust's expected deaths a year (its share of the admissions times its
    own death rate on the pilot, i.e. its case mix), kept within 0.30-1.2.  The
    log-odds excess planted is the one that raises the trust's pilot deaths by the
    factor exp(need): more than ``need`` itself, the more so the more of the
    trust's deaths are of patients at high risk (at whom an odds ratio raises the
    risk by less).  (Before the trusts differed in case mix, ``need`` x 1.1 was
    planted as the log-odds excess itself: 11 of the 13 outliers were flagged at 1M.)
    """
    acute = world.trusts.index[world.trusts.TYPE == "acute"].to_numpy()
    share = world.trusts.SIZE.to_numpy()[acute] / world.trusts.SIZE.to_numpy()[acute].sum()
    position = spells["acute_position"]
    pilot_spells_at = np.bincount(position, minlength=len(acute))
    pilot_rate = np.bincount(position, weights=p_death, minlength=len(acute)) / np.maximum(pilot_spells_at, 1)
    pilot_rate = np.where(pilot_spells_at > 0, pilot_rate, p_death.mean())
    tau2 = _TAU ** 2
    for slot, years in OUTLIER_PATTERN:
        at = world.outlier_positions[slot]
        expected = max(share[at] * pilot_rate[at] * world.n / 5.5, 1.0)
        need = _Z_998 * np.sqrt(1.0 / expected + tau2) + 2.0 * np.sqrt(1.0 / expected)
        log_ratio = float(np.clip(need, 0.30, 1.2))
        log_or = _log_odds_for_ratio(logit(p_death[position == at]), log_ratio)
        for year in years:
            world.excess[at, year - 2005] = log_or
    world.trust_year = world.trust_year + world.excess


def _prior_emergency_mix(world: World, spells: dict) -> None:
    """P(0, 1, 2, 3+ emergency admissions in the year before | age band) on the pilot (:mod:`.hsmr` rule 3:
    what :func:`.hsmr.marginal_shift` averages over), each band shrunk towards the whole pilot's by 5 spells.

    The pilot's deaths drawn under the calibrated world first: a death ends a person, and the admissions
    before it no longer count for the patient's later spells.
    """
    outcome = dict(spells)
    refresh_log_odds(world, outcome)
    plant_outcomes(world, np.random.default_rng(seed_sequence(world.seed, 6)), outcome)
    count = np.minimum(outcome["prior_emergency"], PRIOR_EMERGENCY_CAP)
    table = np.zeros((world.prior_p.shape[0], PRIOR_EMERGENCY_CAP + 1))
    np.add.at(table, (outcome["age_band_true"], count), 1.0)
    overall = table.sum(0) / table.sum()
    world.prior_p = (table + 5.0 * overall) / (table.sum(1, keepdims=True) + 5.0)


def _plant_post_discharge(world: World, spells: dict, p_death: np.ndarray) -> None:
    """The post-discharge trust (:mod:`.hsmr` rule 4): an excess whose deaths all come after discharge.

    The trust: :func:`.hsmr.pick_post_discharge_trust`, by the trusts' death
    rates on the pilot.  As for Table 4's outliers, ``need`` = the 99.8% limit's
    half-width in log-SHMI plus 2 standard errors at the trust's expected deaths
    a year (its share of the admissions times its death rate on the pilot, at
    the world's size), here kept within 0.30 and log
    :data:`.hsmr.POST_DISCHARGE_MAX_RATIO`; the log-odds excess is the one that
    raises the trust's pilot deaths by the factor exp(need).  Planted in every
    financial year of the window.
    """
    acute = world.trusts.index[world.trusts.TYPE == "acute"].to_numpy()
    size = world.trusts.SIZE.to_numpy()[acute]
    position = spells["acute_position"]
    count = np.bincount(position, minlength=len(acute))
    rate = np.bincount(position, weights=p_death, minlength=len(acute)) / np.maximum(count, 1)
    at = pick_post_discharge_trust(size, world.outlier_positions, np.where(count > 0, rate, 0.0))
    world.post_discharge_position = at
    world.params["post_discharge_trust"] = str(world.trusts.PROCODE3.iloc[acute[at]])
    expected = max(size[at] / size.sum() * rate[at] * world.n / 5.5, 1.0)
    need = _Z_998 * np.sqrt(1.0 / expected + _TAU ** 2) + 2.0 * np.sqrt(1.0 / expected)
    log_ratio = float(np.clip(need, 0.30, np.log(POST_DISCHARGE_MAX_RATIO)))
    log_or = _log_odds_for_ratio(logit(p_death[position == at]), log_ratio)
    first, last = world.start.year - (world.start.month < 4), world.end.year - (world.end.month < 4)
    for year in range(max(first, 2005), min(last, 2010) + 1):
        world.post_discharge[at, year - 2005] = log_or
    world.params["post_discharge"] = {"trust": world.params["post_discharge_trust"], "log_or": log_or,
                                      "target_ratio": round(float(np.exp(log_ratio)), 4),
                                      "expected_deaths_per_year": round(expected, 2)}


def _log_odds_for_ratio(eta: np.ndarray, log_ratio: float) -> float:
    """The log-odds shift that multiplies the expected deaths of spells of log-odds ``eta`` by exp(log_ratio)."""
    if len(eta) == 0:
        return log_ratio
    base = sigmoid(eta).sum()
    low, high = 0.0, 4.0
    for _ in range(50):
        middle = 0.5 * (low + high)
        if np.log(sigmoid(eta + middle).sum() / base) < log_ratio:
            low = middle
        else:
            high = middle
    return round(0.5 * (low + high), 6)
