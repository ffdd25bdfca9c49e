"""The vectorised generator of analysis admissions: patients → spells → outcomes (numpy only).

:func:`analysis_spells` draws the analysis admissions (acute-trust spells that
survive METHOD.md §2) of fresh patients with their covariates (the model's
age band, sex, admission method, month, year, Charlson band, birth-weight band
of METHOD.md §4), dates, trusts, transfers and readmissions, and what the HSMR
adjusts for (:mod:`.hsmr`: palliative care, emergency admissions in the year
before); :func:`plant_outcomes` draws their deaths from the world's model and
splits patients into people at each death (a death ends a person), with the
death dates that METHOD.md §3 links back (in hospital, within 30 days, or
later).  No per-row Python: every step is an array operation over all spells
of a chunk (a loop over the patients' n-th admissions, n ≤ 25, at most).
"""

from __future__ import annotations

import numpy as np

from shmi_spark.synth.dates import Calendar
from shmi_spark.synth.hsmr import (
    ADMIMETH_CODE,
    ADMISORC_CODE,
    DANGLING_CODE_RATE,
    DISDEST_CODE,
    EMERGENCY_SHARE,
    PRIOR_EMERGENCY_CAP,
    PRIOR_EMERGENCY_LOG_OR,
    TRANSFER_NON_ELECTIVE,
    TRANSFER_SEVERITY_PULL,
    hsmr_log_odds,
    marginal_shift,
    palliative_p,
    prior_emergency,
    transfer_codes,
    transfer_gap,
    transfer_p,
    window_start,
)
from shmi_spark.synth.numeric import inverse_cdf, logit, position_in_segment, segment_starts, sigmoid
from shmi_spark.synth.world import AGE_UNKNOWN, World, charlson_age_z, linear_predictor

__all__ = ["analysis_spells", "pilot_spells", "plant_outcomes", "refresh_log_odds", "other_trust_in_region",
           "age_missing_p", "admimeth_missing_p"]

#: Table 2 band of a patient (0-10, missing excluded) → first and last age (years) of the band
_BAND_FIRST_AGE = np.array([0, 1, 5, 15, 25, 35, 45, 55, 65, 75, 85])
_BAND_LAST_AGE = np.array([0, 4, 14, 24, 34, 44, 54, 64, 74, 84, 85])
_NEVER = 1 << 40   # a day after every day


def _categorical(rng, cum_rows: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Draw one category per element from row ``rows`` of cumulative-probability table ``cum_rows``."""
    n_categories = cum_rows.shape[1]
    flat = (cum_rows + np.arange(cum_rows.shape[0])[:, None]).ravel()
    uniforms = rng.random(len(rows)) + rows
    index = np.searchsorted(flat, uniforms, side="right") - rows * n_categories
    return np.clip(index, 0, n_categories - 1)


def other_trust_in_region(rng, positions, region, share):
    """A different acute trust in the same region (∝ size), per element of ``positions`` (acute positions)."""
    out = positions.copy()
    n_regions = region.max() + 1
    members = [np.nonzero(region == r)[0] for r in range(n_regions)]
    for r in range(n_regions):
        here = np.nonzero(region[positions] == r)[0]
        if len(here) == 0 or len(members[r]) < 2:
            continue
        trusts = members[r]
        weight = share[trusts] / share[trusts].sum()
        pick = trusts[inverse_cdf(np.cumsum(weight), rng.random(len(here)))]
        same = pick == positions[here]
        # move collisions to the next member
        at = np.searchsorted(trusts, pick[same])
        pick[same] = trusts[(at + 1) % len(trusts)]
        out[here] = pick
    return out


def _patients(world: World, rng: np.random.Generator, n: int):
    """Enough patients for ``n`` admissions: Table 2 band, sex, number of admissions (summing to ``n``)."""
    cell_weight = world.patient_cell_w.ravel() / world.patient_cell_w.sum()
    mean_spells = 1.0 + (world.mean_extra_spells[:, None] * np.ones((1, 2))).ravel() @ cell_weight
    n_patients = int(n / mean_spells * 1.15) + 100
    while True:
        cell = inverse_cdf(np.cumsum(cell_weight), rng.random(n_patients))
        band, sex = cell // 2, cell % 2
        rate = world.mean_extra_spells[band] * rng.gamma(0.7, 1 / 0.7, n_patients)
        n_spells = np.minimum(1 + rng.poisson(rate), 25)
        total = np.cumsum(n_spells)
        if total[-1] >= n:
            break
        n_patients = int(n_patients * 1.3)
    last = int(np.searchsorted(total, n))
    n_spells = n_spells[: last + 1].copy()
    n_spells[-1] -= total[last] - n
    return band[: last + 1], sex[: last + 1], n_spells


def _first_age(rng, band):
    """Age (whole years, and days) of each patient at the first admission; and whether it is a birth."""
    n_patients = len(band)
    years = _BAND_FIRST_AGE[band] + np.floor(
        rng.random(n_patients) * (_BAND_LAST_AGE[band] - _BAND_FIRST_AGE[band] + 1)).astype(np.int64)
    old = band == 10
    years[old] = 85 + np.minimum(rng.geometric(0.13, old.sum()) - 1, 22)
    age_days = years * 365 + rng.integers(0, 365, n_patients)
    babies = band == 0
    birth = babies & (rng.random(n_patients) < 0.55)
    age_days[birth] = 0
    return years, age_days, birth


def _spell_days(rng, last_day: int, n_spells, years):
    """Admission and discharge day of each spell of the patients, and which spells end in a transfer.

    Each patient's spells (lengths of stay and gaps: a transfer — 0-2 days, at
    the rate of :func:`.hsmr.transfer_p` by age —, a readmission within 30 days
    or a long gap) are scaled to fit in the window, then placed at a random
    start; spells of a patient never overlap and each admission is strictly
    later than the one before.
    """
    n_patients = len(n_spells)
    n_total = int(n_spells.sum())
    patient = np.repeat(np.arange(n_patients), n_spells)
    last_of_patient = np.ones(n_total, bool)
    last_of_patient[:-1] = patient[1:] != patient[:-1]
    first_age_years = np.repeat(years, n_spells)
    los = np.where(rng.random(n_total) < 0.22, 0,
                   np.minimum(rng.geometric(1.0 / (2.0 + first_age_years / 12.0)), 120))
    gap_type = rng.random(n_total)  # gap after this spell: transfer / readmission / long
    p_transfer = transfer_p(first_age_years)
    transfer = (gap_type < p_transfer) & ~last_of_patient
    readmission = (gap_type >= p_transfer) & (gap_type < p_transfer + 0.13) & ~last_of_patient
    los = np.where(transfer, np.maximum(los, 1), los)
    gap = np.where(transfer, transfer_gap(rng.random(n_total)),
                   np.where(readmission, rng.integers(1, 31, n_total), rng.exponential(420.0, n_total)))
    gap[last_of_patient] = 0.0
    long_gap = ~transfer & ~readmission & ~last_of_patient
    starts = segment_starts(n_spells)
    span = np.add.reduceat(los + gap, starts)
    fixed = np.add.reduceat(los + np.where(long_gap, 0.0, gap), starts)
    long_total = np.add.reduceat(np.where(long_gap, gap, 0.0), starts)
    budget = last_day - 2.0 - 2.0 * n_spells  # reserve a day per gap/transfer for the integer rounding below
    shrink_long = np.where(span > budget, np.clip((budget - fixed) / np.maximum(long_total, 1e-9), 0, 1), 1.0)
    shrink_all = np.where(fixed > budget, budget / np.maximum(fixed, 1e-9), 1.0)
    shrink_long_s = np.repeat(shrink_long, n_spells)
    shrink_all_s = np.repeat(shrink_all, n_spells)
    los_days = np.floor(los * shrink_all_s).astype(np.int64)
    gap_days = np.floor(np.where(long_gap, gap * shrink_long_s, gap) * shrink_all_s).astype(np.int64)
    los_days = np.where(transfer, np.maximum(los_days, 1), los_days)
    gap_days = np.where(~transfer & ~last_of_patient, np.maximum(gap_days, 1), gap_days)  # strictly later
    step = los_days + gap_days
    span_days = np.add.reduceat(step, starts)
    first_day = np.floor(rng.random(n_patients) * np.maximum(last_day - 2.0 - span_days, 0.0)).astype(np.int64)
    running = np.cumsum(step)
    within = running - np.repeat(running[starts] - step[starts], n_spells)  # inclusive cumsum within patient
    adm_day = np.repeat(first_day, n_spells) + within - step
    dis_day = adm_day + los_days
    dis_day = np.maximum(dis_day, adm_day)
    next_adm = np.empty(n_total, np.int64)
    next_adm[:-1] = adm_day[1:]
    next_adm[-1] = _NEVER
    next_adm[last_of_patient] = _NEVER
    dis_day = np.minimum(dis_day, next_adm)  # never overlap
    transfer &= (next_adm - dis_day <= 2) & (dis_day > adm_day)
    return adm_day, dis_day, transfer, readmission, starts


def _birth_weight(rng, world: World, group, age_band_true):
    """Birth weight (grams, -1 none) and band (0-3; 4 unknown): perinatal groups, and some other babies."""
    n_total = len(group)
    perinatal = world.perinatal[group]
    low = world.low_birthweight[group]
    grams = np.where(low, rng.normal(1750, 700, n_total), rng.normal(3350, 560, n_total))
    grams = np.clip(np.round(grams / 5) * 5, 350, 6200).astype(np.int64)
    has_weight = ((perinatal & (rng.random(n_total) < 0.92))
                  | ((age_band_true == 0) & ~perinatal & (rng.random(n_total) < 0.3)))
    band = np.where(~has_weight, 4, np.searchsorted(np.array([1000, 2500, 4500]), grams, side="right"))
    return np.where(has_weight, grams, -1), band


def _trusts(rng, world: World, band, n_spells, transfer_out):
    """Acute position of each spell's trust: a home trust (given the patient's age band, :mod:`.casemix`),
    sometimes another one of the region; transfers go to another acute trust of the region, ∝ its size
    × exp(:data:`.hsmr.TRANSFER_SEVERITY_PULL` × its severity tilt) (the tertiary centres take more).
    Returns (positions, transfer_in)."""
    acute = world.acute_trusts()
    n_total = int(n_spells.sum())
    home = _categorical(rng, world.home_cdf(), band)
    position = np.repeat(home, n_spells)
    away = rng.random(n_total) < 0.1
    position = np.where(away, other_trust_in_region(rng, position, acute.region, acute.share), position)
    transfer_in = np.zeros(n_total, bool)
    transfer_in[1:] = transfer_out[:-1]
    index = np.arange(n_total)
    depth = index - np.maximum.accumulate(np.where(transfer_in, 0, index))  # n-th transfer of a chain
    pull = acute.share * np.exp(TRANSFER_SEVERITY_PULL * world.profiles.severity)
    for d in range(1, int(depth.max(initial=0)) + 1):  # each link from its predecessor's (final) trust
        arriving = np.nonzero(depth == d)[0]
        position[arriving] = other_trust_in_region(rng, position[arriving - 1], acute.region, pull)
    return position, transfer_in


def age_missing_p(world: World, sex, age_years) -> np.ndarray:
    """P(age unknown) of each spell, by sex and true age (:attr:`.world.World.age_missing`)."""
    z = (np.clip(age_years, 0, 100) - 50.0) / 25.0
    base, slope = world.age_missing[sex, 0], world.age_missing[sex, 1]
    return np.clip(base * np.exp(slope * z), 0.0, 0.05)


def admimeth_missing_p(world: World, elective) -> np.ndarray:
    """P(admission method unknown) of each spell, by its true method (elective work more often)."""
    return np.where(elective, world.admimeth_missing[0], world.admimeth_missing[1])


def analysis_spells(world: World, rng: np.random.Generator, n: int, calendar: Calendar | None = None) -> dict:
    """``n`` analysis admissions of fresh patients, with covariates, outcomes' log-odds and dates.

    Keys: ``patient``, ``nth`` (0 = the patient's first admission),
    ``patient_spells``, ``adm_day``, ``dis_day``, ``dob_day``, ``age_years``,
    ``age_band_true``, ``age_band`` (unknown for some), ``sex_true``, ``sex``,
    ``group``, ``admimeth``, ``elective`` (the true method), ``charlson``, ``birweit_band``, ``grams``,
    ``acute_position``, ``trust``, ``month``, ``fy``, ``transfer_out``,
    ``transfer_in``, ``readmission_gap``, ``birth``, ``patient_band``; what :mod:`.hsmr` adds:
    ``transfer_codes`` (the codes of the link into a spell that continues a transfer, bits of
    :data:`.hsmr.TRANSFER_CODE_MIX`), ``admimeth_transfer`` (ADMIMETH 81), ``admisorc_transfer``
    (ADMISORC 49–53), ``emergency`` (an emergency ADMIMETH), ``palliative``, ``prior_emergency``
    (the patient's emergency admissions 1–365 days before; :func:`plant_outcomes` restricts it to the
    person), ``prior_window`` and ``patient_first`` (what it is counted from); and the log-odds:
    ``eta_shmi`` (the SHMI's terms: the risk averaged over palliative care and prior admissions),
    ``hsmr_shift`` (:func:`.hsmr.marginal_shift`), ``eta_casemix`` (with the HSMR's terms: without the
    trust-year effect) and ``eta``.

    The spells of a transfer chain (a planned one: :func:`plant_outcomes` drops
    the links out of spells that end in death) share the first spell's diagnosis
    group, Charlson band and birth weight; the first spell's group is the more
    severe of two draws and it is mostly non-elective; the later ones are
    non-elective (:mod:`.hsmr` rule 1).
    """
    calendar = calendar or world.calendar()
    band, sex, n_spells = _patients(world, rng, n)
    years, first_age_days, birth = _first_age(rng, band)
    n_total = int(n_spells.sum())
    nth = position_in_segment(n_spells)
    adm_day, dis_day, transfer_out, readmission, starts = _spell_days(rng, world.last_day, n_spells, years)
    dob_day = np.repeat(-first_age_days, n_spells) + np.repeat(adm_day[starts], n_spells)
    age_years = np.floor((adm_day - dob_day) / 365.25).astype(np.int64)
    position, transfer_in = _trusts(rng, world, band, n_spells, transfer_out)
    # the first spell of each spell's transfer chain (itself when it continues none)
    index = np.arange(n_total)
    head = np.maximum.accumulate(np.where(transfer_in, 0, index))
    profiles = world.profiles
    # model age band and sex (with missing values)
    age_band_true = np.where(age_years < 1, 0,
                             np.where(age_years < 5, 1, np.minimum(2 + (age_years - 5) // 5, 19)))
    sex_true = np.repeat(sex, n_spells)
    age_unknown = rng.random(n_total) < age_missing_p(world, sex_true, age_years)
    sex_unknown = rng.random(n_total) < 0.0002
    # diagnosis group | trust, age band, sex; a transfer's first spell: the more severe of two draws
    cell = (position * 2 + sex_true) * 20 + age_band_true
    group = _categorical(rng, world.group_cdf, cell)
    origin = np.nonzero(transfer_out)[0]
    other = _categorical(rng, world.group_cdf, cell[origin])
    severity = world.group_severity
    group[origin] = np.where(severity[other] > severity[group[origin]], other, group[origin])
    group = group[head]
    # admission method: transfers mostly non-elective, the spells continuing one always (and never unknown)
    elective = rng.random(n_total) < sigmoid(logit(world.elective_p[group]) + profiles.elective[position])
    elective &= ~((transfer_out & (rng.random(n_total) < TRANSFER_NON_ELECTIVE)) | transfer_in)
    admimeth_unknown = (rng.random(n_total) < admimeth_missing_p(world, elective)) & ~transfer_in
    # Charlson band
    z = charlson_age_z(age_years)
    coding = profiles.charlson[position]
    p_positive = sigmoid(world.charlson_a + 1.1 * z + coding)
    p_high = sigmoid(world.charlson_b + 0.5 * z + 0.5 * coding)
    band_zero = rng.random(n_total) >= p_positive
    charlson = np.where(band_zero, 0, np.where(rng.random(n_total) < p_high, 2, 1))[head]
    grams, birweit_band = _birth_weight(rng, world, group, age_band_true)
    grams, birweit_band = grams[head], birweit_band[head]
    # the codes of each transfer link; which admissions are emergencies (ADMIMETH 21-28)
    codes = np.where(transfer_in, transfer_codes(rng.random(n_total)), 0)
    admimeth = np.where(admimeth_unknown, 2, np.where(elective, 0, 1))
    admimeth_transfer = transfer_in & (codes & ADMIMETH_CODE > 0)
    first_birth = np.repeat(birth, n_spells) & (nth == 0)
    generic = (admimeth == 1) & ~admimeth_transfer & ~first_birth & ~world.maternity[group]
    emergency = generic & (rng.random(n_total) < EMERGENCY_SHARE)
    patient = np.repeat(np.arange(len(n_spells)), n_spells)
    patient_first = np.repeat(starts, n_spells)
    prior_window = window_start(patient, adm_day, patient_first)
    spells = {"patient": patient, "nth": nth,
              "patient_spells": np.repeat(n_spells, n_spells), "adm_day": adm_day, "dis_day": dis_day,
              "dob_day": dob_day, "age_years": age_years, "age_band_true": age_band_true,
              "age_band": np.where(age_unknown, AGE_UNKNOWN, age_band_true), "sex_true": sex_true,
              "sex": np.where(sex_unknown, 2, sex_true), "group": group,
              "admimeth": admimeth, "elective": elective,
              "charlson": charlson,
              "birweit_band": birweit_band, "grams": grams, "acute_position": position,
              "trust": world.acute_trusts().rows[position], "month": calendar.month_of(adm_day),
              "fy": calendar.fy_of(dis_day), "transfer_out": transfer_out, "transfer_in": transfer_in,
              "readmission_gap": readmission, "birth": first_birth,
              "patient_band": np.repeat(band, n_spells), "transfer_codes": codes,
              "admimeth_transfer": admimeth_transfer, "admisorc_transfer": transfer_in & (codes & ADMISORC_CODE > 0),
              "emergency": emergency, "patient_first": patient_first, "prior_window": prior_window,
              "prior_emergency": prior_emergency(emergency, prior_window, patient_first)}
    # palliative care: more likely the higher the risk under the SHMI's terms (hsmr rule 2)
    eta_shmi, q = _shmi_log_odds(world, spells)
    spells["palliative"] = rng.random(n_total) < q
    _set_log_odds(world, spells, eta_shmi, q)
    return spells


def _shmi_log_odds(world: World, spells: dict):
    """Each spell's log-odds under the SHMI's terms (no trust effect) and its probability of palliative care."""
    eta_shmi = linear_predictor(world, spells, trust=False)
    return eta_shmi, palliative_p(eta_shmi, world.profiles.palliative[spells["acute_position"]])


def _set_log_odds(world: World, spells: dict, eta_shmi: np.ndarray, q: np.ndarray) -> None:
    """``eta_shmi``, ``hsmr_shift`` (:func:`.hsmr.marginal_shift`), ``eta_casemix`` (with the HSMR's terms)
    and ``eta`` (with the trust-year effect) of the spells."""
    spells["eta_shmi"] = eta_shmi
    spells["hsmr_shift"] = marginal_shift(eta_shmi, q, world.prior_p[spells["age_band_true"]])
    spells["eta_casemix"] = eta_shmi + hsmr_log_odds(spells)
    year = np.clip(spells["fy"] - 2005, 0, 5)
    spells["eta"] = spells["eta_casemix"] + world.trust_year[spells["acute_position"], year]


def refresh_log_odds(world: World, spells: dict) -> None:
    """Recompute the log-odds of :func:`analysis_spells`' spells under the world as it is now (a calibration
    step changed it), keeping what was drawn (palliative care among it)."""
    _set_log_odds(world, spells, *_shmi_log_odds(world, spells))


def pilot_spells(world: World, rng_seed, n: int) -> dict:
    """``n`` analysis admissions from their own stream (calibration pilots)."""
    rng = np.random.default_rng(rng_seed)
    return analysis_spells(world, rng, n)


def _deaths(world: World, spells: dict, uniforms: np.ndarray):
    """Who dies (``uniforms`` < P(death)), admission by admission, with the prior emergency admissions of
    each spell's person (:mod:`.hsmr` rule 3: a death ends a person, so a later spell of the patient counts
    only what follows it).

    Returns (died, excess: died only for the post-discharge trust's excess, first spell of each spell's
    person, prior emergency admissions, log-odds without that excess).
    """
    n_total = len(uniforms)
    year = np.clip(spells["fy"] - 2005, 0, 5)
    excess = world.post_discharge[spells["acute_position"], year]
    base = spells["eta"] - PRIOR_EMERGENCY_LOG_OR * np.minimum(spells["prior_emergency"], PRIOR_EMERGENCY_CAP)
    emergency, window = spells["emergency"], spells["prior_window"]
    person_first = spells["patient_first"].copy()
    count = np.zeros(n_total, np.int64)
    died = np.zeros(n_total, bool)
    nth = spells["nth"]
    order = np.argsort(nth, kind="stable")
    bounds = np.searchsorted(nth[order], np.arange(int(nth.max(initial=0)) + 2))
    for j in range(len(bounds) - 1):
        at = order[bounds[j]:bounds[j + 1]]
        if j:
            before = at - 1  # the patient's previous admission
            person_first[at] = np.where(died[before], at, person_first[before])
        count[at] = prior_emergency(emergency, window, person_first, at)
        eta = base[at] + PRIOR_EMERGENCY_LOG_OR * np.minimum(count[at], PRIOR_EMERGENCY_CAP)
        died[at] = uniforms[at] < sigmoid(eta + excess[at])
    eta = base + PRIOR_EMERGENCY_LOG_OR * np.minimum(count, PRIOR_EMERGENCY_CAP)
    return died, died & (uniforms >= sigmoid(eta)), person_first, count, eta


def plant_outcomes(world: World, rng: np.random.Generator, spells: dict) -> None:
    """Bernoulli deaths from the model; split patients into people at each death; death dates.

    Adds ``died``, ``in_hospital``, ``person``, ``dod_day``, ``last_of_person``,
    ``late_death`` (dies more than 30 days after the last discharge),
    ``p_death``, ``p_casemix`` (without the trust-year effect) and ``readmitted_30d``, and clears
    transfers out of a spell that ended its person.  Sets ``prior_emergency``
    to the person's (:mod:`.hsmr` rule 3) and the log-odds with it; adds
    ``post_discharge_excess`` (a death the post-discharge trust's excess adds:
    1-30 days after discharge, never in hospital), ``disdest_transfer`` (DISDEST
    49–53 on the last episode: the links out that carry it, and a few dangling
    codes) and ``admisorc_transfer`` with its dangling codes.
    """
    n_total = len(spells["eta"])
    died, excess, person_first, count, eta = _deaths(world, spells, rng.random(n_total))
    year = np.clip(spells["fy"] - 2005, 0, 5)
    p_death = sigmoid(eta + world.post_discharge[spells["acute_position"], year])
    spells["eta_casemix"] = spells["eta_shmi"] + hsmr_log_odds(dict(spells, prior_emergency=count))
    spells.update(eta=eta, prior_emergency=count, patient_first=person_first)
    patient = spells["patient"]
    # a death ends a person: later spells of the patient belong to a new person
    new_person = np.ones(n_total, bool)
    new_person[1:] = (patient[1:] != patient[:-1]) | died[:-1]
    person = np.cumsum(new_person) - 1
    last_of_person = np.ones(n_total, bool)
    last_of_person[:-1] = new_person[1:]
    # in hospital (DISMETH 4) or after discharge (d days, 0..30; the post-discharge excess: 1..30)
    in_hospital = died & ~excess & (rng.random(n_total) < 0.62)
    day_weight = np.exp(-np.arange(31) / 11.0)
    day_weight[30] *= 2.0
    day_weight[0] *= 0.3
    uniforms = rng.random(n_total)
    days_after = np.searchsorted(np.cumsum(day_weight / day_weight.sum()), uniforms, side="right")
    day_weight[0] = 0.0
    days_after_excess = np.searchsorted(np.cumsum(day_weight / day_weight.sum()), uniforms, side="right")
    days_after = np.minimum(np.where(excess, days_after_excess, days_after), 30)
    dod_day = np.where(died, spells["dis_day"] + np.where(in_hospital, 0, days_after), -_NEVER)
    # transfers are real only when the origin spell did not end the person
    spells["transfer_out"] = spells["transfer_out"] & ~died & ~last_of_person
    transfer_in = np.zeros(n_total, bool)
    transfer_in[1:] = spells["transfer_out"][:-1]
    spells["transfer_in"] = transfer_in
    # DISDEST 49-53 on the links out that carry it; dangling transfer codes (no admission / discharge of the
    # person within 2 days)
    next_codes = np.zeros(n_total, np.int64)
    next_codes[:-1] = spells["transfer_codes"][1:]
    gap_after = np.full(n_total, _NEVER)
    gap_after[:-1] = np.where(last_of_person[:-1], _NEVER, spells["adm_day"][1:] - spells["dis_day"][:-1])
    gap_before = np.full(n_total, _NEVER)
    gap_before[1:] = gap_after[:-1]
    dangling_out = ~spells["transfer_out"] & ~died & (gap_after > 2) & (rng.random(n_total) < DANGLING_CODE_RATE)
    dangling_in = (~spells["admisorc_transfer"] & ~transfer_in & (gap_before > 2)
                   & (rng.random(n_total) < DANGLING_CODE_RATE))
    spells["disdest_transfer"] = (spells["transfer_out"] & (next_codes & DISDEST_CODE > 0)) | dangling_out
    spells["admisorc_transfer"] = spells["admisorc_transfer"] | dangling_in
    readmitted = np.zeros(n_total, bool)
    readmitted[1:] = ~new_person[1:] & (spells["adm_day"][1:] - spells["dis_day"][:-1] <= 30)
    spells["readmitted_30d"] = readmitted
    # survivors who die more than 30 days after their last discharge
    later = last_of_person & ~died & (
        rng.random(n_total) < 0.012 + 0.10 * sigmoid((spells["age_years"] - 82) / 7.0))
    days_to_late_death = np.where(rng.random(n_total) < 0.04, 31,
                                  31 + np.minimum(rng.geometric(1 / 220.0, n_total) - 1, 700))
    dod_day = np.where(later, spells["dis_day"] + days_to_late_death, dod_day)
    spells.update(died=died, in_hospital=in_hospital, person=person, dod_day=dod_day,
                  last_of_person=last_of_person, late_death=later, p_death=p_death,
                  p_casemix=sigmoid(spells["eta_casemix"]), post_discharge_excess=excess)
