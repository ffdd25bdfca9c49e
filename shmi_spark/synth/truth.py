"""The truth: METHOD.md §2-§3 applied to the clean spell arrays, and the truth files.

``link_chunk`` applies the exclusions and the death linkage to one chunk's
spells exactly as the method states (it does not look at what was planted)
and reports any spell where rule and plan disagree (there must be none).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from shmi_spark.synth import patients as P
from shmi_spark.synth.chunk import NO_DATE
from shmi_spark.synth.world import (ADM_LEVELS, AGE_LEVELS, BW_LEVELS, CHARLSON_LEVELS, IMD_LEVELS, REF, SEX_LEVELS,
                    World)

CLASSPAT_EXCLUDED = (1, 2, 3)  # vocabulary indices of CLASSPAT 2, 3, 4


def ons_rows(sp: dict, rng: np.random.Generator):
    """ONS registrations (person, DOD) incl. ~0.5% duplicate registrations with a later date."""
    has = sp["ons"]
    person = sp["person"][has]
    dod = sp["dod"][has]
    dup = rng.random(len(person)) < 0.005
    person = np.concatenate([person, person[dup]])
    dod = np.concatenate([dod, dod[dup] + rng.integers(1, 8, int(dup.sum()))])
    o = np.lexsort((dod, person))
    return person[o], dod[o], int(dup.sum())


def included_mask(world: World, sp: dict) -> np.ndarray:
    types = world.trusts.TYPE.to_numpy()
    return ((sp["last_epistat"] == 3) & (sp["dis"] >= 0) & ~np.isin(sp["classpat"], CLASSPAT_EXCLUDED)
            & (sp["dismeth_last"] != 5) & (types[sp["trust"]] == "acute") & (sp["junk"] == 0))


def link_chunk(world: World, sp: dict, ons_person: np.ndarray, ons_dod: np.ndarray) -> dict:
    """Outcome of every included spell by METHOD.md §3 (in-hospital or ≤ 30 days, last spell)."""
    inc = np.nonzero(included_mask(world, sp))[0]
    npers = sp["n_people"]
    dod = np.full(npers, NO_DATE, np.int64)
    # earliest ONS date per person (rows are sorted by person, dod)
    first = np.ones(len(ons_person), bool)
    first[1:] = ons_person[1:] != ons_person[:-1]
    dod[ons_person[first]] = ons_dod[first]
    # DISMETH 4 without an ONS record: a death on the discharge date
    d4 = inc[(sp["dismeth_last"][inc] == 4)]
    no_ons = dod[sp["person"][d4]] == NO_DATE
    dod[sp["person"][d4[no_ons]]] = sp["dis"][d4[no_ons]]
    # order included spells by person, admission, discharge, spell key (PROCODE3:PROVSPNOPS)
    code_rank = np.argsort(np.argsort(world.trusts.PROCODE3.to_numpy()))
    pers, adm, dis = sp["person"][inc], sp["adm_day"][inc], sp["dis"][inc]
    o = np.lexsort((sp["spell_no"][inc], code_rank[sp["trust"][inc]], dis, adm, pers))
    inc, pers, adm, dis = inc[o], pers[o], adm[o], dis[o]
    pd_ = dod[pers]
    has = pd_ != NO_DATE
    started = has & (adm <= pd_)
    nxt_started = np.zeros(len(inc), bool)
    same_next = np.zeros(len(inc), bool)
    same_next[:-1] = pers[1:] == pers[:-1]
    nxt_started[:-1] = same_next[:-1] & started[1:]
    last_before = started & ~nxt_started
    died = last_before & ((sp["dismeth_last"][inc] == 4) | (pd_ - dis <= 30))
    in_hosp = died & ((sp["dismeth_last"][inc] == 4) | (pd_ <= dis))
    out = {"inc": inc, "died": died, "in_hospital": in_hosp, "dod": np.where(died, pd_, NO_DATE)}
    # agreement with the plan
    planned_inc = sp["kind"] == P.ANALYSIS
    out["mismatch_included"] = int((included_mask(world, sp) != planned_inc).sum())
    rule = np.zeros(len(sp["kind"]), bool)
    rule[inc[died]] = True
    out["mismatch_died"] = int((rule[planned_inc] != sp["died"][planned_inc]).sum())
    # deaths within 30 days of an earlier spell's discharge (assigned to the later one)
    prev_within = np.zeros(len(inc), bool)
    prev_within[1:] = died[1:] & same_next[:-1] & (pd_[1:] - dis[:-1] <= 30)
    out["deaths_after_readmission"] = int(prev_within.sum())
    out["deaths_on_day_30"] = int((died & (pd_ - dis == 30)).sum())
    out["survivors_death_on_day_31"] = int((last_before & ~died & (pd_ - dis == 31)).sum())
    out["survivors_death_after_30_days"] = int((last_before & ~died).sum())
    return out


def aggregate_chunk(world: World, cal: P.Calendar, sp: dict, link: dict) -> dict:
    """Per-chunk counts: trust × year, calibration cells, groups."""
    inc, died = link["inc"], link["died"]
    nA = sp["n_analysis"]
    acute = np.nonzero(world.trusts.TYPE.to_numpy() == "acute")[0]
    pos = np.full(len(world.trusts), -1)
    pos[acute] = np.arange(len(acute))
    ta = pos[sp["trust"][inc]]
    fy = cal.fy_of(sp["dis"][inc]) - 2005
    ny = 6
    ty = ta * ny + np.clip(fy, 0, ny - 1)
    spells_ty = np.bincount(ty, minlength=len(acute) * ny)
    deaths_ty = np.bincount(ty, weights=died, minlength=len(acute) * ny).astype(np.int64)
    # calibration cells (inc are analysis spells: the first nA rows)
    assert (inc < nA).all()
    a = sp["age_band"][inc]
    s = sp["sex"][inc]
    m = sp["adm"][inc]
    im = sp["imd_fifth"][inc]
    c = sp["charl"][inc]
    cell = (((a * 3 + s) * 3 + m) * 6 + im) * 3 + c
    ncell = len(AGE_LEVELS) * 3 * 3 * 6 * 3
    cal_sp = np.bincount(cell, minlength=ncell)
    cal_d = np.bincount(cell, weights=died, minlength=ncell).astype(np.int64)
    G = len(world.group_ids)
    g = sp["g"][inc]
    return {"ty_spells": spells_ty, "ty_deaths": deaths_ty, "cal_spells": cal_sp, "cal_deaths": cal_d,
            "g_spells": np.bincount(g, minlength=G), "g_deaths": np.bincount(g, weights=died, minlength=G).astype(np.int64),
            "expected_deaths": float(sp["p"][inc].sum())}


def calibration_frame(cal_spells: np.ndarray, cal_deaths: np.ndarray) -> pd.DataFrame:
    idx = np.nonzero(cal_spells)[0]
    c = idx % 3; r = idx // 3
    im = r % 6; r //= 6
    m = r % 3; r //= 3
    s = r % 3; a = r // 3
    return pd.DataFrame({"AGE_BAND": np.array(AGE_LEVELS)[a], "SEX_CAT": np.array(SEX_LEVELS)[s],
                         "ADMIMETH_CAT": np.array(ADM_LEVELS)[m], "IMD_FIFTH": np.array(IMD_LEVELS)[im],
                         "CHARLSON_BAND": np.array(CHARLSON_LEVELS)[c],
                         "SPELLS": cal_spells[idx].astype(np.int64), "DEATHS": cal_deaths[idx].astype(np.int64)})


def coefficients(world: World) -> pd.DataFrame:
    """Per-group logistic coefficients, re-expressed against reference levels (which are 0)."""
    levels = {"AGE_BAND": AGE_LEVELS, "SEX_CAT": SEX_LEVELS, "ADMIMETH_CAT": ADM_LEVELS,
              "ADM_MONTH": [str(m) for m in range(1, 13)], "DIS_FYEAR": [str(y) for y in range(2005, 2011)],
              "CHARLSON_BAND": CHARLSON_LEVELS, "BIRWEIT_BAND": BW_LEVELS}
    rows = []
    for gi, gid in enumerate(world.group_ids):
        per = bool(world.perinatal[gi])
        intercept = float(world.alpha[gi])
        terms = []
        for term, lv in levels.items():
            if term == "BIRWEIT_BAND" and not per:
                continue
            if term == "CHARLSON_BAND" and gi == 0:
                continue
            eff = world.shared[term] + world.dev[term][gi]
            ref = lv.index(REF[term])
            intercept += float(eff[ref])
            terms.append((term, lv, eff - eff[ref]))
        rows.append((int(gid), "INTERCEPT", "", intercept))
        for term, lv, est in terms:
            rows += [(int(gid), term, lv[i], float(est[i])) for i in range(len(lv))]
    df = pd.DataFrame(rows, columns=["DIAG_GROUP", "TERM", "LEVEL", "ESTIMATE"])
    df["ESTIMATE"] = df.ESTIMATE.round(6)
    return df


def trust_effects(world: World) -> tuple[pd.DataFrame, pd.DataFrame]:
    acute = world.trusts[world.trusts.TYPE == "acute"].PROCODE3.to_numpy()
    years = np.arange(2005, 2011)
    te = pd.DataFrame({"PROCODE3": np.repeat(acute, 6), "DIS_FYEAR": np.tile(years, len(acute)),
                       "EFFECT": np.round(world.trust_year.ravel(), 6)})
    t, y = np.nonzero(world.excess)
    po = pd.DataFrame({"PROCODE3": acute[t], "DIS_FYEAR": years[y], "LOG_OR": np.round(world.excess[t, y], 6)})
    return te, po.sort_values(["DIS_FYEAR", "PROCODE3"]).reset_index(drop=True)


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_default) + "\n")


def _default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))
