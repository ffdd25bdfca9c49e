"""The truth: METHOD.md §2-§3 applied to the clean spell arrays, and the truth files.

:func:`link_chunk` applies the exclusions of §2 (:func:`included_mask`) and the
death linkage of §3 to one chunk's spell table exactly as the method states (it
does not look at what was planted) and reports any spell where rule and plan
disagree (there must be none).  :func:`aggregate_chunk` counts the included
spells and deaths by trust and year (the truth of the paper's funnel, §7), by
calibration cell (Tables 2-3) and by group.  :func:`coefficients` and
:func:`trust_effects` write the planted model (§5) and trust effects; the files
are described in ``docs/tables.md``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from shmi_spark.hes.levels import (
    ADMIMETH_LEVELS,
    AGE_LEVELS,
    BIRWEIT_LEVELS,
    CHARLSON_LEVELS,
    IMD_LEVELS,
    NOT_APPLICABLE,
    SEX_LEVELS,
)
from shmi_spark.synth.dates import Calendar
from shmi_spark.synth.spells import ANALYSIS, NO_DATE
from shmi_spark.synth.world import World

__all__ = ["CLASSPAT_EXCLUDED", "REFERENCE_LEVELS", "MODEL_LEVELS", "ons_rows", "included_mask", "link_chunk",
           "aggregate_chunk", "hsmr_counts", "calibration_frame", "coefficients", "trust_effects", "write_json"]

#: The reference level of each term in truth/coefficients.csv (its estimate is 0).
REFERENCE_LEVELS = {"AGE_BAND": "65-69", "SEX_CAT": "male", "ADMIMETH_CAT": "non-elective",
                    "ADM_MONTH": "1", "CHARLSON_BAND": "0", "BIRWEIT_BAND": "2500-4499", "DIS_FYEAR": "2005"}
#: The levels of each term of the planted model, in the order of its effect arrays; the birth-weight
#: bands of the perinatal groups (``n/a`` is not a level of their model).
MODEL_LEVELS = {"AGE_BAND": AGE_LEVELS, "SEX_CAT": SEX_LEVELS, "ADMIMETH_CAT": ADMIMETH_LEVELS,
                "ADM_MONTH": tuple(str(m) for m in range(1, 13)),
                "DIS_FYEAR": tuple(str(y) for y in range(2005, 2011)),
                "CHARLSON_BAND": CHARLSON_LEVELS,
                "BIRWEIT_BAND": BIRWEIT_LEVELS[:BIRWEIT_LEVELS.index(NOT_APPLICABLE)]}

CLASSPAT_EXCLUDED = (1, 2, 3)  # vocabulary indices of CLASSPAT 2, 3, 4 (METHOD.md §2)


def ons_rows(spells: dict, rng: np.random.Generator):
    """ONS registrations (person, DOD day) incl. ~0.5% duplicate registrations with a later date.

    Sorted by person and date; also returns the number of duplicates.
    """
    registered = spells["ons"]
    person = spells["person"][registered]
    dod_day = spells["dod_day"][registered]
    duplicate = rng.random(len(person)) < 0.005
    person = np.concatenate([person, person[duplicate]])
    dod_day = np.concatenate([dod_day, dod_day[duplicate] + rng.integers(1, 8, int(duplicate.sum()))])
    order = np.lexsort((dod_day, person))
    return person[order], dod_day[order], int(duplicate.sum())


def included_mask(world: World, spells: dict) -> np.ndarray:
    """The spells METHOD.md §2 keeps: finished, discharged, ordinary admissions (not CLASSPAT 2-4), not
    stillbirths, at acute trusts, and no malformed row."""
    types = world.trusts.TYPE.to_numpy()
    return ((spells["last_epistat"] == 3) & (spells["dis_day"] >= 0)
            & ~np.isin(spells["classpat"], CLASSPAT_EXCLUDED) & (spells["dismeth_last"] != 5)
            & (types[spells["trust"]] == "acute") & (spells["junk"] == 0))


def _date_of_death(spells: dict, included, ons_person, ons_dod) -> np.ndarray:
    """Day of death of each person: the earliest ONS date, else (DISMETH 4) the discharge date."""
    dod_day = np.full(spells["n_people"], NO_DATE, np.int64)
    # earliest ONS date per person (rows are sorted by person, dod)
    first = np.ones(len(ons_person), bool)
    first[1:] = ons_person[1:] != ons_person[:-1]
    dod_day[ons_person[first]] = ons_dod[first]
    # DISMETH 4 without an ONS record: a death on the discharge date
    died_in_hospital = included[(spells["dismeth_last"][included] == 4)]
    no_ons = dod_day[spells["person"][died_in_hospital]] == NO_DATE
    dod_day[spells["person"][died_in_hospital[no_ons]]] = spells["dis_day"][died_in_hospital[no_ons]]
    return dod_day


def link_chunk(world: World, spells: dict, ons_person: np.ndarray, ons_dod: np.ndarray) -> dict:
    """Outcome of every included spell by METHOD.md §3 (in-hospital or ≤ 30 days, last spell)."""
    included = np.nonzero(included_mask(world, spells))[0]
    dod_of_person = _date_of_death(spells, included, ons_person, ons_dod)
    # order included spells by person, admission, discharge, spell key (PROCODE3:PROVSPNOPS)
    code_rank = np.argsort(np.argsort(world.trusts.PROCODE3.to_numpy()))
    person, adm_day, dis_day = spells["person"][included], spells["adm_day"][included], spells["dis_day"][included]
    order = np.lexsort((spells["spell_no"][included], code_rank[spells["trust"][included]], dis_day, adm_day, person))
    included, person, adm_day, dis_day = included[order], person[order], adm_day[order], dis_day[order]
    dod_day = dod_of_person[person]
    started = (dod_day != NO_DATE) & (adm_day <= dod_day)
    same_next = np.zeros(len(included), bool)
    same_next[:-1] = person[1:] == person[:-1]
    next_started = np.zeros(len(included), bool)
    next_started[:-1] = same_next[:-1] & started[1:]
    last_before = started & ~next_started
    dismeth_4 = spells["dismeth_last"][included] == 4
    died = last_before & (dismeth_4 | (dod_day - dis_day <= 30))
    in_hospital = died & (dismeth_4 | (dod_day <= dis_day))
    out = {"included": included, "died": died, "in_hospital": in_hospital,
           "dod_day": np.where(died, dod_day, NO_DATE)}
    # agreement with the plan
    planned = spells["kind"] == ANALYSIS
    out["mismatch_included"] = int((included_mask(world, spells) != planned).sum())
    rule = np.zeros(len(spells["kind"]), bool)
    rule[included[died]] = True
    out["mismatch_died"] = int((rule[planned] != spells["died"][planned]).sum())
    # deaths within 30 days of an earlier spell's discharge (assigned to the later one)
    previous_within = np.zeros(len(included), bool)
    previous_within[1:] = died[1:] & same_next[:-1] & (dod_day[1:] - dis_day[:-1] <= 30)
    out["deaths_after_readmission"] = int(previous_within.sum())
    out["deaths_on_day_30"] = int((died & (dod_day - dis_day == 30)).sum())
    out["survivors_death_on_day_31"] = int((last_before & ~died & (dod_day - dis_day == 31)).sum())
    out["survivors_death_after_30_days"] = int((last_before & ~died).sum())
    return out


#: calibration cell = ((((age band * 3 + sex) * 3 + admission method) * 6 + IMD fifth) * 3 + Charlson band)
_CELL_SIZES = (len(AGE_LEVELS), len(SEX_LEVELS), len(ADMIMETH_LEVELS), len(IMD_LEVELS), len(CHARLSON_LEVELS))


def aggregate_chunk(world: World, calendar: Calendar, spells: dict, link: dict) -> dict:
    """Per-chunk counts: trust × year (spells, deaths, case-mix expected deaths), calibration cells, groups.

    The case-mix expected deaths of a trust-year are the sum of its spells' death
    probabilities under the planted model without the trust-year effect.
    """
    included, died = link["included"], link["died"]
    acute = np.nonzero(world.trusts.TYPE.to_numpy() == "acute")[0]
    position = np.full(len(world.trusts), -1)
    position[acute] = np.arange(len(acute))
    n_years = 6
    year = calendar.fy_of(spells["dis_day"][included]) - 2005
    trust_year = position[spells["trust"][included]] * n_years + np.clip(year, 0, n_years - 1)
    # calibration cells (included spells are analysis spells: the first n_analysis rows)
    assert (included < spells["n_analysis"]).all()
    cell = np.zeros(len(included), np.int64)
    for key, size in zip(("age_band", "sex", "admimeth", "imd_fifth", "charlson"), _CELL_SIZES, strict=True):
        cell = cell * size + spells[key][included]
    n_cells = int(np.prod(_CELL_SIZES))
    n_groups = len(world.group_ids)
    group = spells["group"][included]
    n_ty = len(acute) * n_years

    def per_trust_year(flag):
        return np.bincount(trust_year, weights=flag, minlength=n_ty).astype(np.int64)

    return {"ty_spells": np.bincount(trust_year, minlength=len(acute) * n_years),
            "ty_in_hospital": per_trust_year(link["in_hospital"]),
            "ty_palliative": per_trust_year(spells["palliative"][included]),
            "ty_transfer_out": per_trust_year(spells["transfer_out"][included]),
            "ty_transfer_in": per_trust_year(spells["transfer_in"][included]),
            "ty_chain_first": per_trust_year(spells["transfer_out"][included] & ~spells["transfer_in"][included]),
            "ty_excess": per_trust_year(spells["post_discharge_excess"][included]),
            "ty_deaths": np.bincount(trust_year, weights=died, minlength=len(acute) * n_years).astype(np.int64),
            "ty_expected": np.bincount(trust_year, weights=spells["p_casemix"][included],
                                       minlength=len(acute) * n_years),
            "cal_spells": np.bincount(cell, minlength=n_cells),
            "cal_deaths": np.bincount(cell, weights=died, minlength=n_cells).astype(np.int64),
            "g_spells": np.bincount(group, minlength=n_groups),
            "g_deaths": np.bincount(group, weights=died, minlength=n_groups).astype(np.int64),
            "expected_deaths": float(spells["p_death"][included].sum())}


def hsmr_counts(spells: dict) -> dict:
    """What the rules of :mod:`.hsmr` planted in one chunk's analysis spells (truth/summary.json ``hsmr``).

    Transfer links (a spell and the next spell of its person, at another trust,
    0–2 days later) by gap and by the codes they carry, chains and their spells,
    transfer codes without a link; palliative spells and deaths; spells and
    deaths by prior emergency admissions (0, 1, 2, 3+); the post-discharge
    trust's added deaths.
    """
    n = spells["n_analysis"]
    out_, in_ = spells["transfer_out"][:n], spells["transfer_in"][:n]
    disdest, admisorc = spells["disdest_transfer"][:n], spells["admisorc_transfer"][:n]
    admimeth81, died = spells["admimeth_transfer"][:n], spells["died"][:n]
    origin = np.nonzero(out_)[0]
    arrival = origin + 1
    assert (spells["person"][arrival] == spells["person"][origin]).all() and in_[arrival].all()
    assert (spells["trust"][arrival] != spells["trust"][origin]).all()
    gap = spells["adm_day"][arrival] - spells["dis_day"][origin]
    bits = disdest[origin] * 1 + admisorc[arrival] * 2 + admimeth81[arrival] * 4
    names = {1: "DISDEST", 2: "ADMISORC", 4: "ADMIMETH81"}
    by_codes = {"+".join(name for bit, name in names.items() if b & bit): int((bits == b).sum()) for b in range(1, 8)}
    prior = np.minimum(spells["prior_emergency"], 3)
    palliative = spells["palliative"][:n]
    excess = spells["post_discharge_excess"]
    return {
        "transfer_links": int(len(origin)), "transfer_chains": int((out_ & ~in_).sum()),
        "transfer_chain_spells": int((out_ | in_).sum()),
        "transfer_links_by_gap_days": {str(d): int((gap == d).sum()) for d in range(3)},
        "transfer_links_by_codes": by_codes,
        "transfer_links_by_rule": {name: int((bits & bit > 0).sum()) for bit, name in names.items()},
        "transfer_links_ending_in_death": int(died[arrival].sum()),
        "transfer_codes_without_link": {"DISDEST": int((disdest & ~out_).sum()),
                                        "ADMISORC": int((admisorc & ~in_).sum()),
                                        "ADMIMETH81": int((admimeth81 & ~in_).sum())},
        "palliative_spells": int(palliative.sum()), "palliative_deaths": int((palliative & died).sum()),
        "emergency_admissions": int(spells["emergency"][:n].sum()),
        "prior_emergency_spells": {k: int((prior == i).sum()) for i, k in enumerate(("0", "1", "2", "3+"))},
        "prior_emergency_deaths": {k: int(((prior == i) & died).sum()) for i, k in enumerate(("0", "1", "2", "3+"))},
        "post_discharge_excess_deaths": int(excess.sum()),
    }


def calibration_frame(cal_spells: np.ndarray, cal_deaths: np.ndarray) -> pd.DataFrame:
    """The non-empty calibration cells as truth/calibration_counts.csv (levels of :mod:`shmi_spark.hes.levels`)."""
    cells = np.nonzero(cal_spells)[0]
    age, sex, admimeth, imd, charlson = np.unravel_index(cells, _CELL_SIZES)
    return pd.DataFrame({"AGE_BAND": np.array(AGE_LEVELS)[age], "SEX_CAT": np.array(SEX_LEVELS)[sex],
                         "ADMIMETH_CAT": np.array(ADMIMETH_LEVELS)[admimeth], "IMD_FIFTH": np.array(IMD_LEVELS)[imd],
                         "CHARLSON_BAND": np.array(CHARLSON_LEVELS)[charlson],
                         "SPELLS": cal_spells[cells].astype(np.int64), "DEATHS": cal_deaths[cells].astype(np.int64)})


def coefficients(world: World) -> pd.DataFrame:
    """Per-group logistic coefficients, re-expressed against reference levels (which are 0).

    The birth-weight terms of the perinatal groups only; no Charlson terms for the invalid group 0.
    """
    rows = []
    for index, group in enumerate(world.group_ids):
        perinatal = bool(world.perinatal[index])
        intercept = float(world.alpha[index])
        terms = []
        for term, levels in MODEL_LEVELS.items():
            if term == "BIRWEIT_BAND" and not perinatal:
                continue
            if term == "CHARLSON_BAND" and index == 0:
                continue
            effect = world.shared[term] + world.deviation[term][index]
            reference = levels.index(REFERENCE_LEVELS[term])
            intercept += float(effect[reference])
            terms.append((term, levels, effect - effect[reference]))
        rows.append((int(group), "INTERCEPT", "", intercept))
        for term, levels, estimate in terms:
            rows += [(int(group), term, levels[i], float(estimate[i])) for i in range(len(levels))]
    frame = pd.DataFrame(rows, columns=["DIAG_GROUP", "TERM", "LEVEL", "ESTIMATE"])
    frame["ESTIMATE"] = frame.ESTIMATE.round(6)
    return frame


def trust_effects(world: World) -> tuple[pd.DataFrame, pd.DataFrame]:
    """truth/trust_effects.csv (every acute trust-year) and truth/planted_outliers.csv (the excess only)."""
    acute = world.trusts[world.trusts.TYPE == "acute"].PROCODE3.to_numpy()
    years = np.arange(2005, 2011)
    effects = pd.DataFrame({"PROCODE3": np.repeat(acute, 6), "DIS_FYEAR": np.tile(years, len(acute)),
                            "EFFECT": np.round(world.trust_year.ravel(), 6)})
    trust, year = np.nonzero(world.excess)
    outliers = pd.DataFrame({"PROCODE3": acute[trust], "DIS_FYEAR": years[year],
                             "LOG_OR": np.round(world.excess[trust, year], 6)})
    return effects, outliers.sort_values(["DIS_FYEAR", "PROCODE3"]).reset_index(drop=True)


def write_json(path: Path, obj) -> None:
    """``obj`` as indented JSON with sorted keys (numpy scalars and arrays as numbers and lists)."""
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_default) + "\n")


def _default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))
