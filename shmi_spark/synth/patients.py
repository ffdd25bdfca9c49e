"""The vectorised generator: patients → spells → outcomes (numpy only, no per-row Python).

``analysis_spells`` draws the analysis admissions (acute-trust spells that
survive METHOD.md §2) with their covariates and planted outcomes;
``chunk_spells`` adds the excluded kinds and the people they belong to, and
returns one spell-level table (a dict of equal-length arrays) for a chunk.
"""

from __future__ import annotations

import numpy as np

from shmi_spark.synth.world import (AGE_UNKNOWN, T2_BANDS, T2_NAMES, World, _sigmoid, new_seedseq)

# ----------------------------------------------------------------- kinds
ANALYSIS, DAY_CASE, REGULAR, NON_ACUTE, STILLBIRTH, IN_HOSPITAL, UNFINISHED, TRAP_DAYCASE, JUNK = range(9)
KIND_NAMES = ["analysis", "day_case", "regular_attender", "non_acute_trust", "stillbirth",
              "still_in_hospital", "unfinished_episode", "day_case_before_death", "junk"]
#: excluded kinds, per analysis admission
EXTRA_RATES = {DAY_CASE: 0.055, REGULAR: 0.022, NON_ACUTE: 0.04, STILLBIRTH: 0.0008,
               IN_HOSPITAL: 0.004, UNFINISHED: 0.0006}
DATE_PAD = 400      # date vocabulary starts DATE_PAD days before the window
DATE_AFTER = 900    # ... and ends this many days after it


def charlson_z(age_years):
    return (np.clip(age_years, 0, 100) - 60.0) / 20.0


class Calendar:
    """Day offsets (0 = window start) → month, financial year."""

    def __init__(self, world: World):
        base = np.datetime64(world.start.isoformat())
        off = np.arange(-DATE_PAD, world.W + DATE_AFTER + 1)
        d = base + off.astype("timedelta64[D]")
        self.strings = np.datetime_as_string(d, unit="D")
        m = d.astype("M8[M]").astype(np.int64)
        self.month = (m % 12 + 1).astype(np.int8)
        year = (m // 12 + 1970)
        self.fy = (year - (self.month < 4)).astype(np.int16)

    def month_of(self, day):
        return self.month[day + DATE_PAD]

    def fy_of(self, day):
        return self.fy[day + DATE_PAD]


def linear_predictor(world: World, sp: dict) -> np.ndarray:
    g = sp["g"]
    sh, dv = world.shared, world.dev
    eta = world.alpha[g].copy()
    eta += sh["AGE_BAND"][sp["age"]] + dv["AGE_BAND"][g, sp["age"]]
    eta += sh["SEX_CAT"][sp["sex"]] + dv["SEX_CAT"][g, sp["sex"]]
    eta += sh["ADMIMETH_CAT"][sp["adm"]] + dv["ADMIMETH_CAT"][g, sp["adm"]]
    eta += sh["ADM_MONTH"][sp["month"] - 1] + dv["ADM_MONTH"][g, sp["month"] - 1]
    fy = np.clip(sp["fy"] - 2005, 0, 5)
    eta += sh["DIS_FYEAR"][fy] + dv["DIS_FYEAR"][g, fy]
    notinv = g != 0
    eta += np.where(notinv, sh["CHARLSON_BAND"][sp["charl"]] + dv["CHARLSON_BAND"][g, sp["charl"]], 0.0)
    per = world.perinatal[g]
    eta += np.where(per, sh["BIRWEIT_BAND"][sp["bwb"]] + dv["BIRWEIT_BAND"][g, sp["bwb"]], 0.0)
    eta += world.trust_year[sp["acute_idx"], fy]
    return eta


def _categorical(rng, cum_rows: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Draw one category per element from row ``rows`` of cumulative-probability table ``cum_rows``."""
    k = cum_rows.shape[1]
    flat = (cum_rows + np.arange(cum_rows.shape[0])[:, None]).ravel()
    u = rng.random(len(rows)) + rows
    idx = np.searchsorted(flat, u, side="right") - rows * k
    return np.clip(idx, 0, k - 1)


def _segment_starts(counts):
    starts = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    return starts


def _within(counts):
    """0..k-1 inside each segment of the given lengths."""
    tot = int(counts.sum())
    starts = np.repeat(_segment_starts(counts), counts)
    return np.arange(tot) - starts


def _acute_tables(world: World):
    t = world.trusts
    acute = np.nonzero(t.TYPE.to_numpy() == "acute")[0]
    size = t.SIZE.to_numpy()[acute]
    region = t.REGION.to_numpy()[acute]
    regions = sorted(set(region))
    rid = np.array([regions.index(r) for r in region])
    return acute, size / size.sum(), rid


def _same_region_other(rng, trust_a, rid, share):
    """A different acute trust in the same region (∝ size), per element of trust_a (acute indices)."""
    out = trust_a.copy()
    R = rid.max() + 1
    members = [np.nonzero(rid == r)[0] for r in range(R)]
    for r in range(R):
        m = np.nonzero(rid[trust_a] == r)[0]
        if len(m) == 0 or len(members[r]) < 2:
            continue
        mem = members[r]
        w = share[mem] / share[mem].sum()
        pick = mem[np.minimum(np.searchsorted(np.cumsum(w), rng.random(len(m)), side="right"), len(mem) - 1)]
        same = pick == trust_a[m]
        # move collisions to the next member
        pos = np.searchsorted(mem, pick[same])
        pick[same] = mem[(pos + 1) % len(mem)]
        out[m] = pick
    return out


def analysis_spells(world: World, rng: np.random.Generator, n: int, cal: Calendar | None = None) -> dict:
    """``n`` analysis admissions of fresh patients, with covariates, outcomes and dates."""
    cal = cal or Calendar(world)
    W = world.W
    cellw = world.patient_cell_w.ravel() / world.patient_cell_w.sum()
    mean_k = 1.0 + (world.mean_extra_spells[:, None] * np.ones((1, 2))).ravel() @ cellw
    npat = int(n / mean_k * 1.15) + 100
    while True:
        cell = np.minimum(np.searchsorted(np.cumsum(cellw), rng.random(npat), side="right"), len(cellw) - 1)
        band, sex = cell // 2, cell % 2
        lam = world.mean_extra_spells[band] * rng.gamma(0.7, 1 / 0.7, npat)
        k = np.minimum(1 + rng.poisson(lam), 25)
        cs = np.cumsum(k)
        if cs[-1] >= n:
            break
        npat = int(npat * 1.3)
    last = int(np.searchsorted(cs, n))
    k = k[: last + 1].copy()
    k[-1] -= cs[last] - n
    band, sex = band[: last + 1], sex[: last + 1]
    P = len(k)
    # age at first admission (days)
    lo = np.array([0, 1, 5, 15, 25, 35, 45, 55, 65, 75, 85])
    hi = np.array([0, 4, 14, 24, 34, 44, 54, 64, 74, 84, 85])
    years = lo[band] + np.floor(rng.random(P) * (hi[band] - lo[band] + 1)).astype(np.int64)
    old = band == 10
    years[old] = 85 + np.minimum(rng.geometric(0.13, old.sum()) - 1, 22)
    age_days0 = years * 365 + rng.integers(0, 365, P)
    babies = band == 0
    birth = babies & (rng.random(P) < 0.55)
    age_days0[birth] = 0
    # spells
    S = int(k.sum())
    pid = np.repeat(np.arange(P), k)
    j = _within(k)
    first = j == 0
    lastsp = np.ones(S, bool); lastsp[:-1] = pid[1:] != pid[:-1]
    agey0 = np.repeat(years, k)
    los = np.where(rng.random(S) < 0.22, 0, np.minimum(rng.geometric(1.0 / (2.0 + agey0 / 12.0)), 120))
    gtype = rng.random(S)  # gap after this spell: transfer / readmission / long
    transfer_i = (gtype < 0.02) & ~lastsp
    readm = (gtype >= 0.02) & (gtype < 0.15) & ~lastsp
    los = np.where(transfer_i, np.maximum(los, 1), los)
    gap = np.where(transfer_i, 0.0, np.where(readm, rng.integers(1, 31, S), rng.exponential(420.0, S)))
    gap[lastsp] = 0.0
    longgap = ~transfer_i & ~readm & ~lastsp
    starts = _segment_starts(k)
    span = np.add.reduceat(los + gap, starts)
    fixed = np.add.reduceat(los + np.where(longgap, 0.0, gap), starts)
    lg = np.add.reduceat(np.where(longgap, gap, 0.0), starts)
    budget = W - 2.0 - 2.0 * k  # reserve a day per gap/transfer for the integer rounding below
    f_long = np.where(span > budget, np.clip((budget - fixed) / np.maximum(lg, 1e-9), 0, 1), 1.0)
    f_all = np.where(fixed > budget, budget / np.maximum(fixed, 1e-9), 1.0)
    f_long_s = np.repeat(f_long, k); f_all_s = np.repeat(f_all, k)
    los_i = np.floor(los * f_all_s).astype(np.int64)
    gap_i = np.floor(np.where(longgap, gap * f_long_s, gap) * f_all_s).astype(np.int64)
    los_i = np.where(transfer_i, np.maximum(los_i, 1), los_i)
    gap_i = np.where(~transfer_i & ~lastsp, np.maximum(gap_i, 1), gap_i)  # strictly later admissions
    step = los_i + gap_i
    span2 = np.add.reduceat(step, starts)
    t1 = np.floor(rng.random(P) * np.maximum(W - 2.0 - span2, 0.0)).astype(np.int64)
    csum = np.cumsum(step)
    cum = csum - np.repeat(csum[starts] - step[starts], k)  # inclusive cumsum within patient
    adm = np.repeat(t1, k) + cum - step
    dis = adm + los_i
    dis = np.maximum(dis, adm)
    nxt_adm = np.empty(S, np.int64); nxt_adm[:-1] = adm[1:]; nxt_adm[-1] = 1 << 40
    nxt_adm[lastsp] = 1 << 40
    dis = np.minimum(dis, nxt_adm)  # never overlap
    transfer_i &= (dis == np.where(lastsp, -1, nxt_adm)) & (dis > adm)
    dob = np.repeat(-age_days0, k) + np.repeat(adm[starts], k)  # day offset of birth
    age_days = adm - dob
    age_years = np.floor(age_days / 365.25).astype(np.int64)
    # model age band and sex (with missing values)
    band_true = np.where(age_years < 1, 0, np.where(age_years < 5, 1, np.minimum(2 + (age_years - 5) // 5, 19)))
    age_unknown = rng.random(S) < 0.00155
    age_m = np.where(age_unknown, AGE_UNKNOWN, band_true)
    sex_true = np.repeat(sex, k)
    sex_unknown = rng.random(S) < 0.0002
    sex_m = np.where(sex_unknown, 2, sex_true)
    # diagnosis group | age band, sex
    g = _categorical(rng, world.group_cum, sex_true * 20 + band_true)
    # admission method
    el = rng.random(S) < world.elective_p[g]
    adm_unknown = rng.random(S) < 0.001
    adm_cat = np.where(adm_unknown, 2, np.where(el, 0, 1))
    # Charlson band and condition set
    z = charlson_z(age_years)
    p0 = _sigmoid(world.charlson_a + 1.1 * z)
    p2 = _sigmoid(world.charlson_b + 0.5 * z)
    u = rng.random(S)
    charl = np.where(u >= p0, 0, np.where(rng.random(S) < p2, 2, 1))
    # birth weight (perinatal groups; other babies sometimes)
    per = world.perinatal[g]
    lowbw = np.isin(world.group_ids[g], _lbw_groups(world))
    grams = np.where(lowbw, rng.normal(1750, 700, S), rng.normal(3350, 560, S))
    grams = np.clip(np.round(grams / 5) * 5, 350, 6200).astype(np.int64)
    has_bw = (per & (rng.random(S) < 0.92)) | ((band_true == 0) & ~per & (rng.random(S) < 0.3))
    bwb = np.where(~has_bw, 4, np.searchsorted(np.array([1000, 2500, 4500]), grams, side="right"))
    # trusts
    acute, share, rid = _acute_tables(world)
    home = np.minimum(np.searchsorted(np.cumsum(share), rng.random(P), side="right"), len(share) - 1)
    tr = np.repeat(home, k)
    away = rng.random(S) < 0.1
    tr = np.where(away, _same_region_other(rng, tr, rid, share), tr)
    # transfers: next spell at another acute trust in the region
    prev_tr = np.zeros(S, bool); prev_tr[1:] = transfer_i[:-1]
    ti = np.nonzero(prev_tr)[0]
    for _ in range(3):  # sequential transfers chain; resolve in order
        tr[ti] = _same_region_other(rng, tr[ti - 1], rid, share)
        bad = tr[ti] == tr[ti - 1]
        if not bad.any():
            break
    month = cal.month_of(adm)
    fy = cal.fy_of(dis)
    sp = {"pid": pid, "j": j, "k": np.repeat(k, k), "adm_day": adm, "dis": dis, "dob": dob,
          "age_years": age_years, "age_true": band_true, "age": age_m, "sex_true": sex_true,
          "sex": sex_m, "g": g, "adm": adm_cat, "charl": charl, "bwb": bwb,
          "grams": np.where(has_bw, grams, -1), "acute_idx": tr, "trust": acute[tr],
          "month": month, "fy": fy, "transfer_out": transfer_i, "transfer_in": prev_tr,
          "readm_gap": readm, "birth": np.repeat(birth, k) & first, "patient_band": np.repeat(band, k)}
    eta = linear_predictor(world, sp)
    sp["eta"] = eta
    return sp


_LBW_CACHE: dict = {}


def _lbw_groups(world: World):
    key = id(world)
    if key not in _LBW_CACHE:
        lab = world.groups.LABEL.str.lower()
        _LBW_CACHE[key] = world.groups.DIAG_GROUP[lab.str.contains("gestation|low birth", regex=True)].to_numpy()
    return _LBW_CACHE[key]


def pilot_spells(world: World, rng_seed, n: int) -> dict:
    rng = np.random.default_rng(rng_seed)
    return analysis_spells(world, rng, n)


def plant_outcomes(world: World, rng: np.random.Generator, sp: dict) -> None:
    """Bernoulli deaths from the model; split patients into people at each death; death dates."""
    S = len(sp["eta"])
    p = _sigmoid(sp["eta"])
    died = rng.random(S) < p
    pid = sp["pid"]
    # a death ends a person: later spells of the patient belong to a new person
    newp = np.ones(S, bool)
    newp[1:] = (pid[1:] != pid[:-1]) | died[:-1]
    person = np.cumsum(newp) - 1
    lastp = np.ones(S, bool); lastp[:-1] = newp[1:]
    # in hospital (DISMETH 4) or after discharge (d days, 0..30)
    inhosp = died & (rng.random(S) < 0.62)
    dw = np.exp(-np.arange(31) / 11.0); dw[30] *= 2.0; dw[0] *= 0.3
    d = np.searchsorted(np.cumsum(dw / dw.sum()), rng.random(S), side="right")
    dod = np.where(died, sp["dis"] + np.where(inhosp, 0, d), -(1 << 40))
    # transfers are real only when the origin spell did not end the person
    sp["transfer_out"] = sp["transfer_out"] & ~died & ~lastp
    tin = np.zeros(S, bool); tin[1:] = sp["transfer_out"][:-1]
    sp["transfer_in"] = tin
    readm30 = np.zeros(S, bool)
    readm30[1:] = ~newp[1:] & (sp["adm_day"][1:] - sp["dis"][:-1] <= 30)
    sp["readm30"] = readm30
    # survivors who die more than 30 days after their last discharge
    later = lastp & ~died & (rng.random(S) < 0.012 + 0.10 * _sigmoid((sp["age_years"] - 82) / 7.0))
    gapd = np.where(rng.random(S) < 0.04, 31, 31 + np.minimum(rng.geometric(1 / 220.0, S) - 1, 700))
    dod = np.where(later, sp["dis"] + gapd, dod)
    sp.update(died=died, inhosp=inhosp, person=person, dod=dod, last_of_person=lastp,
              late_death=later, p=p)
