"""Tests of what the synthetic world plants for the HSMR (shmi_spark/synth/hsmr.py), read back from its files.

A 200,000-admission world: transfer chains found in the episode rows by the
link rule (same HESID, another trust, admitted 0–2 days after the discharge,
a transfer code) agree with the truth, and each code alone finds some;
palliative coding rises with the risk of death; emergency admissions in the year
before raise the risk; the post-discharge trust has excess deaths after
discharge and none in hospital.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shmi_spark.synth import generate as synth_generate
from shmi_spark.synth.hsmr import EMERGENCY_ADMIMETH, PRIOR_EMERGENCY_CAP, PRIOR_EMERGENCY_LOG_OR

TRANSFER_CODES = {"49", "50", "51", "52", "53"}
DIAGS = [f"DIAG_4_{i:02d}" for i in range(1, 21)]


def _date(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s, format="%Y-%m-%d", errors="coerce")


def spells_from_files(out: Path) -> pd.DataFrame:
    """Included spells (METHOD.md §2) with their deaths (§3), built from the files alone.

    Columns: HESID, PROCODE3, ADM, DIS (dates), ADMIMETH, ADMISORC (first episode),
    DISMETH, DISDEST (last), AGE, PALLIATIVE (Z51.5 in any diagnosis position or
    TRETSPEF 315), DOD, DIED, IN_HOSPITAL.
    """
    ep = pd.read_parquet(out / "hes_apc", columns=["HESID", "EPIKEY", "PROCODE3", "PROVSPNOPS", "EPIORDER", "EPISTAT",
                                                    "ADMIDATE", "DISDATE", "ADMIMETH", "ADMISORC", "DISDEST",
                                                    "DISMETH", "CLASSPAT", "STARTAGE", "TRETSPEF"] + DIAGS)
    ep = ep.drop_duplicates()
    trusts = pd.read_csv(out / "reference" / "trusts.csv", dtype=str)
    codes = ep[DIAGS].apply(lambda c: c.str.upper().str.replace(".", "", regex=False))
    ep["PALL"] = codes.eq("Z515").any(axis=1) | ep.TRETSPEF.eq("315")
    ep["ADM"], ep["DIS"] = _date(ep.ADMIDATE), _date(ep.DISDATE)
    ep["ORD"] = ep.EPIORDER.astype(int)
    ep = ep.sort_values(["PROCODE3", "PROVSPNOPS", "ORD"])
    g = ep.groupby(["PROCODE3", "PROVSPNOPS"], sort=False)
    first, last = g.first(), g.last()
    sp = pd.DataFrame({"HESID": first.HESID, "ADM": first.ADM, "ADMIMETH": first.ADMIMETH.fillna(""),
                       "ADMISORC": first.ADMISORC.fillna(""), "CLASSPAT": first.CLASSPAT,
                       "AGE": pd.to_numeric(first.STARTAGE, errors="coerce"),
                       "DIS": ep.groupby(["PROCODE3", "PROVSPNOPS"], sort=False).tail(1)
                       .set_index(["PROCODE3", "PROVSPNOPS"]).DIS,
                       "DISMETH": last.DISMETH, "DISDEST": last.DISDEST.fillna(""),
                       "FINISHED": g.EPISTAT.apply(lambda s: (s == "3").all()), "PALLIATIVE": g.PALL.any()}
                      ).reset_index()
    sp.loc[sp.AGE > 7000, "AGE"] = 0
    acute = set(trusts[trusts.TYPE == "acute"].PROCODE3)
    keep = (sp.FINISHED & sp.DIS.notna() & sp.ADM.notna() & (sp.DIS >= sp.ADM)
            & ~sp.CLASSPAT.isin(["2", "3", "4"]) & (sp.DISMETH != "5") & sp.PROCODE3.isin(acute))
    sp = sp[keep].copy()
    ons = pd.read_parquet(out / "ons_deaths")
    dod = _date(ons.DOD).groupby(ons.HESID).min()
    sp["DOD"] = sp.HESID.map(dod)
    no_ons = sp[(sp.DISMETH == "4") & sp.DOD.isna()].groupby("HESID").DIS.min()
    sp["DOD"] = sp.DOD.fillna(sp.HESID.map(no_ons))
    sp = sp.sort_values(["HESID", "ADM", "DIS", "PROCODE3", "PROVSPNOPS"]).reset_index(drop=True)
    started = sp.DOD.notna() & (sp.ADM <= sp.DOD)
    next_started = sp.HESID.shift(-1).eq(sp.HESID) & started.shift(-1, fill_value=False)
    last_before = started & ~next_started
    sp["DIED"] = last_before & ((sp.DISMETH == "4") | ((sp.DOD - sp.DIS).dt.days <= 30))
    sp["IN_HOSPITAL"] = sp.DIED & ((sp.DISMETH == "4") | (sp.DOD <= sp.DIS))
    return sp


def transfer_links(sp: pd.DataFrame) -> pd.DataFrame:
    """Each spell with the next spell of its HESID, where that one is at another trust and admitted 0–2 days
    after the discharge and some transfer code marks the link: the columns DISDEST (the first spell's
    DISDEST 49–53), ADMISORC, ADMIMETH81 (the next spell's), GAP (days)."""
    nxt = sp.shift(-1)
    same = nxt.HESID.eq(sp.HESID) & nxt.PROCODE3.ne(sp.PROCODE3)
    gap = (nxt.ADM - sp.DIS).dt.days
    links = pd.DataFrame({"DISDEST": sp.DISDEST.isin(TRANSFER_CODES), "ADMISORC": nxt.ADMISORC.isin(TRANSFER_CODES),
                          "ADMIMETH81": nxt.ADMIMETH.eq("81"), "GAP": gap})
    coded = links.DISDEST | links.ADMISORC | links.ADMIMETH81
    return links[same & gap.between(0, 2) & coded]


def prior_emergency(sp: pd.DataFrame) -> np.ndarray:
    """Emergency admissions (ADMIMETH 21–25, 2A–2D, 28) of the spell's HESID admitted 1–365 days before it."""
    hesid = pd.factorize(sp.HESID)[0].astype(np.int64)
    day = (sp.ADM - pd.Timestamp("2000-01-01")).dt.days.to_numpy().astype(np.int64)
    key = hesid * (1 << 24) + day
    assert (np.diff(key) > 0).all()  # a person's admissions are strictly later each time
    first = np.searchsorted(hesid, hesid, side="left")
    start = np.maximum(np.searchsorted(key, key - 365, side="left"), first)
    cumulative = np.concatenate([[0], np.cumsum(sp.ADMIMETH.isin(EMERGENCY_ADMIMETH).to_numpy())])
    index = np.arange(len(sp))
    return cumulative[index] - cumulative[start]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_hsmr")
    summary = synth_generate.generate(out, 200_000, 5, date(2005, 4, 1), date(2010, 9, 30), workers=2,
                                      log=lambda *_: None)
    sp = spells_from_files(out)
    assert len(sp) == summary["admissions"] and sp.DIED.sum() == summary["analysis_deaths"]
    return out, summary, sp


def test_transfer_chains_found_by_the_link_rule_are_the_planted_ones(world):
    out, summary, sp = world
    truth = summary["hsmr"]
    links = transfer_links(sp)
    assert len(links) == truth["transfer_links"]
    # a few percent of the non-elective admissions start a link
    non_elective = ~sp.ADMIMETH.isin(["11", "12", "13", "99", ""])
    assert 0.015 < links.index.isin(sp.index[non_elective]).sum() / non_elective.sum() < 0.06
    gaps = {str(int(g)): int(n) for g, n in links.GAP.value_counts().items()}
    assert gaps == truth["transfer_links_by_gap_days"]
    assert min(gaps.values()) > 0.05 * len(links) and set(gaps) == {"0", "1", "2"}
    # each rule alone finds some links; the codes agree with the truth, link by link
    names = ["DISDEST", "ADMISORC", "ADMIMETH81"]
    combination = links[names].apply(lambda r: "+".join(n for n in names if r[n]), axis=1).value_counts().to_dict()
    assert combination == {k: v for k, v in truth["transfer_links_by_codes"].items() if v}
    for name in names:
        assert combination[name] > 0.05 * len(links), name
    # chains: a first spell and its continuations
    starts_chain = ~links.index.isin(links.index + 1)
    assert starts_chain.sum() == truth["transfer_chains"]
    assert len(set(links.index) | set(links.index + 1)) == truth["transfer_chain_spells"]
    # the risk follows the chain: deaths in later spells, continuing patients sicker than the average
    continued = sp.loc[links.index + 1]
    assert continued.DIED.sum() == truth["transfer_links_ending_in_death"] > 0
    assert continued.DIED.mean() > 1.5 * sp.DIED.mean()
    # transfer codes also occur without a link (out of or into hospitals outside the data)
    unlinked = sp.DISDEST.isin(TRANSFER_CODES) & ~sp.index.isin(links.index)
    assert unlinked.sum() == truth["transfer_codes_without_link"]["DISDEST"] > 0
    # truth/trust_year_hsmr.csv has every link once on each side
    ty = pd.read_csv(out / "truth" / "trust_year_hsmr.csv", dtype={"PROCODE3": str})
    assert ty.TRANSFERS_OUT.sum() == ty.TRANSFERS_IN.sum() == len(links)
    assert ty.CHAINS_FIRST.sum() == truth["transfer_chains"]
    assert ty.DEATHS_IN_HOSPITAL.sum() == sp.IN_HOSPITAL.sum() == summary["analysis_deaths_in_hospital"]


def test_palliative_coding_rises_with_the_risk_of_death(world):
    out, summary, sp = world
    truth = summary["hsmr"]
    assert sp.PALLIATIVE.sum() == truth["palliative_spells"]
    assert (sp.PALLIATIVE & sp.DIED).sum() == truth["palliative_deaths"]
    among_deaths, among_survivors = sp.PALLIATIVE[sp.DIED].mean(), sp.PALLIATIVE[~sp.DIED].mean()
    assert among_deaths > 0.12 and among_deaths > 8 * among_survivors
    assert 0.3 < sp.DIED[sp.PALLIATIVE].mean() < 0.8
    # within an age band too: older patients are coded more, but not only that
    old = sp.AGE >= 75
    assert sp.PALLIATIVE[old & sp.DIED].mean() > 5 * sp.PALLIATIVE[old & ~sp.DIED].mean()
    ty = pd.read_csv(out / "truth" / "trust_year_hsmr.csv", dtype={"PROCODE3": str})
    assert ty.PALLIATIVE_SPELLS.sum() == truth["palliative_spells"]
    params = json.loads((out / "truth" / "params.json").read_text())["hsmr"]["palliative"]
    assert params["b"] > 0 and params["log_or"] > 0


def test_prior_emergency_admissions_raise_the_risk(world):
    import statsmodels.api as sm
    out, summary, sp = world
    truth = summary["hsmr"]
    prior = np.minimum(prior_emergency(sp), PRIOR_EMERGENCY_CAP)
    bands = ("0", "1", "2", "3+")
    assert {b: int((prior == i).sum()) for i, b in enumerate(bands)} == truth["prior_emergency_spells"]
    assert {b: int(((prior == i) & sp.DIED).sum()) for i, b in enumerate(bands)} == truth["prior_emergency_deaths"]
    assert (prior >= 1).mean() > 0.1
    # crude: more deaths with more prior emergency admissions
    rate = [sp.DIED[prior == i].mean() for i in range(4)]
    assert rate[0] < rate[1] < rate[3]
    # adjusted for age band, admission type and palliative care, a clear effect per admission: less than the
    # planted log-odds (0.2), a logistic model without the diagnosis group and Charlson terms estimating the
    # marginal effect (smaller), and the years before the window start being unseen (before the rule: -0.03)
    frame = pd.DataFrame({"died": sp.DIED.astype(float), "prior": prior,
                          "age": np.minimum(sp.AGE.fillna(-5) // 10, 9).astype(int).astype(str),
                          "method": sp.ADMIMETH.str[0].where(sp.ADMIMETH.str[0].isin(["1", "2", "3", "8"]), "9"),
                          "palliative": sp.PALLIATIVE.astype(int)})
    design = pd.get_dummies(frame[["age", "method"]], drop_first=True, dtype=float)
    design["palliative"] = frame.palliative
    design["prior"] = frame.prior
    fit = sm.GLM(frame.died, sm.add_constant(design), family=sm.families.Binomial()).fit()
    assert max(0.06, 4 * fit.bse["prior"]) < fit.params["prior"] < PRIOR_EMERGENCY_LOG_OR + 2 * fit.bse["prior"]
    params = json.loads((out / "truth" / "params.json").read_text())["hsmr"]["prior_emergency"]
    assert params["log_or_per_admission"] == PRIOR_EMERGENCY_LOG_OR and params["cap"] == PRIOR_EMERGENCY_CAP


def test_post_discharge_trust_dies_after_discharge_only(world):
    out, summary, sp = world
    planted = pd.read_csv(out / "truth" / "planted_post_discharge.csv", dtype={"PROCODE3": str})
    code = planted.PROCODE3.iloc[0]
    assert planted.PROCODE3.nunique() == 1 and code == summary["hsmr"]["post_discharge_trust"]
    assert list(planted.DIS_FYEAR) == list(range(2005, 2011)) and (planted.LOG_OR > 0).all()
    outliers = pd.read_csv(out / "truth" / "planted_outliers.csv", dtype={"PROCODE3": str})
    assert code not in set(outliers.PROCODE3)
    profiles = pd.read_csv(out / "truth" / "trust_profiles.csv", dtype={"PROCODE3": str})
    size_rank = profiles.SPELLS_PER_YEAR_FULL_SCALE.rank(pct=True)[profiles.PROCODE3 == code].iloc[0]
    assert 0.3 < size_rank < 0.7  # mid-sized
    expected = pd.read_csv(out / "truth" / "trust_year_casemix.csv", dtype={"PROCODE3": str})
    expected = expected.groupby("PROCODE3").EXPECTED.sum()
    sp = sp.assign(AFTER=sp.DIED & ~sp.IN_HOSPITAL)
    by_trust = sp.groupby("PROCODE3")[["DIED", "IN_HOSPITAL", "AFTER"]].sum().join(expected)
    national = by_trust.drop(index=code).sum()
    here = by_trust.loc[code]
    # deaths after discharge far above what its case mix leads to expect; deaths in hospital as expected
    assert here.AFTER / here.EXPECTED > 3 * national.AFTER / national.EXPECTED
    assert 0.5 < (here.IN_HOSPITAL / here.EXPECTED) / (national.IN_HOSPITAL / national.EXPECTED) < 1.6
    assert here.AFTER / here.DIED > 0.7 > national.AFTER / national.DIED
    assert here.DIED / here.EXPECTED > 3  # the SHMI, roughly: well above any funnel limit at this size
    # the added deaths: 1-30 days after discharge, not discharged dead
    after = sp[(sp.PROCODE3 == code) & sp.AFTER]
    assert (after.DISMETH != "4").all() and ((after.DOD - after.DIS).dt.days.between(1, 30)).all()
    assert planted.EXCESS_DEATHS.sum() == summary["hsmr"]["post_discharge_excess_deaths"] > 0
    assert (planted.DEATHS - planted.DEATHS_IN_HOSPITAL >= planted.EXCESS_DEATHS).all()
