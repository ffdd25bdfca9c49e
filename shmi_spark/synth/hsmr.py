"""What the HSMR needs of the synthetic world: transfers, palliative care, prior emergency admissions,
and a trust whose excess deaths all come after discharge.

The rules, with their parameters (written to truth/params.json ``hsmr``; the
counts they produced to truth/summary.json ``hsmr``):

1. **Transfers between acute trusts** (:func:`transfer_p`).  A spell of a
   patient who has a later admission ends in a transfer with probability
   ``TRANSFER_P_BASE + TRANSFER_P_OLD · sigmoid((age − 70) / 8)`` (age at the
   patient's first admission: 3.1% at 40, 5.5% at 70, 7.6% at 90; about 3% of
   non-elective admissions start a transfer).  The transferred patient is
   sicker: the first spell's diagnosis group is the more severe (higher
   log-odds of death) of two draws from the trust's mix, and
   ``TRANSFER_NON_ELECTIVE`` of them are non-elective.  The next spell of the
   same patient is at another acute trust of the region (∝ its size ×
   exp(``TRANSFER_SEVERITY_PULL`` × its severity tilt): the tertiary centres
   take more), admitted 0, 1 or 2 days after the discharge
   (``TRANSFER_GAP_P``), non-elective (never unknown), with
   the same diagnosis group, Charlson band and birth weight (the same illness:
   the patient's death risk follows the chain, and a patient who dies dies in a
   later spell of it — a spell that ends in death is no transfer).  A chain may
   run over three or more trusts.  Each link carries one or more of three
   codes (``TRANSFER_CODE_MIX``, bits): DISDEST 49–53 on the last episode of the
   first spell (1), ADMISORC 49–53 on the next spell (2), ADMIMETH 81 on the
   next spell (4) — so that each rule, alone, finds some links.  A link is
   thus found in the files as: the next spell of the same HESID, at another
   trust, admitted 0–2 days after the discharge, with at least one of the
   three codes.  Codes without a link also occur: ``DANGLING_CODE_RATE`` of
   the other spells discharged alive carry DISDEST 49–53 with no admission of
   the patient in the next 2 days, and as many spells ADMISORC 49–53 with no
   discharge of the patient in the 2 days before (transfers from or to
   hospitals outside the data); a planned next spell whose first spell ended in
   death keeps its ADMISORC / ADMIMETH 81 codes but belongs to another person.
2. **Palliative care** (:func:`palliative_p`).  A spell is palliative with
   probability ``sigmoid(PALLIATIVE_A + PALLIATIVE_B · eta_shmi + tilt_t)``:
   ``eta_shmi`` the spell's log-odds of death under the SHMI's terms (group,
   age, sex, admission method, month, year, Charlson, birth weight; no trust
   effect), ``tilt_t`` the trust's palliative-coding tilt
   (truth/trust_profiles.csv ``PALLIATIVE_TILT``).  A palliative spell's
   log-odds of death are ``PALLIATIVE_LOG_OR`` higher than those of a spell
   alike but not palliative.  It is coded with Z51.5
   among the secondary diagnoses of its first episode, treatment specialty 315
   on its last episode, or both (``PALLIATIVE_CODE_SPLIT``); no other spell
   carries either code.
3. **Prior emergency admissions** (:func:`prior_emergency`).  A spell's log-odds
   of death are ``PRIOR_EMERGENCY_LOG_OR`` higher per emergency admission of
   the same person (HESID) admitted 1–365 days before it, counting at most
   ``PRIOR_EMERGENCY_CAP``.  An emergency admission is one whose first
   episode's ADMIMETH is 21–25, 2A–2D or 28 (:data:`EMERGENCY_ADMIMETH`); the
   other non-elective methods (maternity 31/32, births 82/83, transfers 81,
   84, 89, 98) are not.  Patients have repeated admissions already (the
   mean number of admissions rises with age); a death ends a person, so a
   spell counts only the admissions of its own person.

   Rules 2 and 3 redistribute the risk among spells alike in the SHMI's
   covariates, they do not add to it: each spell's log-odds also carry the
   shift of :func:`marginal_shift`, which keeps its risk averaged over
   palliative care (probability as above) and prior admissions (its age band's
   distribution, truth/params.json ``hsmr.prior_emergency.p_by_age_band``) the
   SHMI model's (truth/coefficients.csv, which the SHMI's fitted models still
   recover).  A trust that codes more palliative care has no more deaths for it:
   the HSMR, which adjusts for the coding, finds it fewer.
4. **A trust with excess deaths after discharge** (:func:`pick_post_discharge_trust`).
   One mid-sized acute trust (size rank in the middle fifth, not one of the
   planted Table 4 outliers; of those, the one whose case mix has the highest
   death rate) in every financial year of the window: its spells'
   log-odds of death within 30 days are raised by ``LOG_OR`` (truth/planted_post_discharge.csv),
   and every death this adds (a spell that dies but would not have without it)
   is a death 1–30 days after discharge (DISMETH not 4, an ONS date after
   DISDATE).  Its in-hospital deaths are those of the model without the excess,
   so an indicator of in-hospital deaths (the HSMR) sees nothing.  ``LOG_OR``
   is set as for the Table 4 outliers, from the trust's expected deaths a year at
   the world's size: the SHMI is to exceed its 99.8% limit by 2 standard errors,
   a ratio of observed to expected deaths of between exp(0.30) and ``POST_DISCHARGE_MAX_RATIO``
   (the cap reached in small worlds, where a year holds few deaths).
"""

from __future__ import annotations

import numpy as np

from shmi_spark.synth.numeric import sigmoid

__all__ = ["TRANSFER_P_BASE", "TRANSFER_P_OLD", "TRANSFER_NON_ELECTIVE", "TRANSFER_SEVERITY_PULL", "TRANSFER_GAP_P",
           "TRANSFER_CODE_MIX", "DISDEST_CODE", "ADMISORC_CODE", "ADMIMETH_CODE", "DANGLING_CODE_RATE", "PALLIATIVE_A",
           "PALLIATIVE_B", "PALLIATIVE_LOG_OR", "PALLIATIVE_CODE_SPLIT", "EMERGENCY_ADMIMETH", "EMERGENCY_SHARE",
           "PRIOR_EMERGENCY_LOG_OR", "PRIOR_EMERGENCY_CAP", "PRIOR_EMERGENCY_DAYS", "POST_DISCHARGE_MAX_RATIO",
           "transfer_p", "transfer_gap", "transfer_codes", "palliative_p", "hsmr_log_odds", "marginal_shift",
           "window_start",
           "prior_emergency", "pick_post_discharge_trust", "rules"]

# ---------------------------------------------------------------- 1. transfers

#: P(a spell followed by another admission of the patient ends in a transfer) = base + old · sigmoid((age − 70) / 8)
TRANSFER_P_BASE, TRANSFER_P_OLD = 0.03, 0.05
#: share of the first spells of a transfer that are made non-elective (the rest keep their drawn method)
TRANSFER_NON_ELECTIVE = 0.85
#: the trust a transfer goes to: another acute trust of the region, ∝ size × exp(PULL × its severity tilt)
TRANSFER_SEVERITY_PULL = 4.0
#: P(the next spell is admitted 0, 1, 2 days after the discharge)
TRANSFER_GAP_P = (0.70, 0.22, 0.08)
#: the codes of a link: bit 1 DISDEST 49–53 on the first spell, 2 ADMISORC 49–53 on the next, 4 ADMIMETH 81
DISDEST_CODE, ADMISORC_CODE, ADMIMETH_CODE = 1, 2, 4
#: P(codes of a link): all three, each alone, each pair
TRANSFER_CODE_MIX = {7: 0.40, 1: 0.15, 2: 0.15, 4: 0.15, 3: 0.05, 5: 0.05, 6: 0.05}
#: share of the spells with no link that carry a DISDEST (or ADMISORC) transfer code all the same
DANGLING_CODE_RATE = 0.003

# ---------------------------------------------------------------- 2. palliative care

#: P(palliative) = sigmoid(A + B · eta_shmi + the trust's palliative tilt)
PALLIATIVE_A, PALLIATIVE_B = -1.2, 0.9
#: log-odds of death added for a palliative spell
PALLIATIVE_LOG_OR = 1.0
#: P(codes of a palliative spell): Z51.5 only, both Z51.5 and TRETSPEF 315, TRETSPEF 315 only
PALLIATIVE_CODE_SPLIT = (0.60, 0.25, 0.15)

# ---------------------------------------------------------------- 3. prior emergency admissions

#: ADMIMETH of an emergency admission
EMERGENCY_ADMIMETH = ("21", "22", "23", "24", "25", "2A", "2B", "2C", "2D", "28")
#: share of the non-elective admissions (not maternity, birth or transfer) with an emergency ADMIMETH;
#: the rest are 84, 89 or 98 (the weights of :func:`.episodes._admission`: 94 of 96.5)
EMERGENCY_SHARE = 94 / 96.5
#: log-odds of death per emergency admission in the 365 days before, counting at most CAP of them
PRIOR_EMERGENCY_LOG_OR, PRIOR_EMERGENCY_CAP, PRIOR_EMERGENCY_DAYS = 0.2, 3, 365

# ---------------------------------------------------------------- 4. the post-discharge trust

#: the largest ratio of observed to expected deaths planted at the post-discharge trust
POST_DISCHARGE_MAX_RATIO = 5.0
#: the trust is drawn from the acute trusts of size rank in this range (quantiles of size)
_POST_DISCHARGE_SIZE_RANGE = (0.4, 0.6)


def transfer_p(age_years) -> np.ndarray:
    """P(a spell followed by another admission of the patient ends in a transfer), by age (rule 1)."""
    return TRANSFER_P_BASE + TRANSFER_P_OLD * sigmoid((np.asarray(age_years, float) - 70.0) / 8.0)


def transfer_gap(uniforms: np.ndarray) -> np.ndarray:
    """Days from a transfer's discharge to the next admission (0, 1, 2: :data:`TRANSFER_GAP_P`)."""
    return np.searchsorted(np.cumsum(TRANSFER_GAP_P), uniforms, side="right").clip(0, 2)


def transfer_codes(uniforms: np.ndarray) -> np.ndarray:
    """The codes (bits of :data:`TRANSFER_CODE_MIX`) a link carries, one per uniform."""
    codes = np.array(list(TRANSFER_CODE_MIX), np.int64)
    cumulative = np.cumsum(list(TRANSFER_CODE_MIX.values()))
    return codes[np.minimum(np.searchsorted(cumulative / cumulative[-1], uniforms, side="right"), len(codes) - 1)]


def palliative_p(eta_shmi: np.ndarray, tilt: np.ndarray) -> np.ndarray:
    """P(palliative) of each spell (rule 2): ``eta_shmi`` its log-odds under the SHMI's terms, ``tilt`` its
    trust's palliative-coding tilt."""
    return sigmoid(PALLIATIVE_A + PALLIATIVE_B * eta_shmi + tilt)


def hsmr_log_odds(spells: dict) -> np.ndarray:
    """The log-odds of death the HSMR's terms add to the SHMI's (rules 2 and 3): palliative care, prior
    emergency admissions, and the spell's :func:`marginal_shift` (``hsmr_shift``)."""
    return (spells["hsmr_shift"] + PALLIATIVE_LOG_OR * spells["palliative"]
            + PRIOR_EMERGENCY_LOG_OR * np.minimum(spells["prior_emergency"], PRIOR_EMERGENCY_CAP))


def marginal_shift(eta: np.ndarray, q: np.ndarray, prior_p: np.ndarray, iterations: int = 3) -> np.ndarray:
    """The log-odds shift ``d`` of each spell that keeps its risk, averaged over the HSMR's terms, the SHMI's.

    Solves ``sum_k prior_p[k] ((1 - q) sigmoid(eta + d + b k) + q sigmoid(eta + d + b k + g)) = sigmoid(eta)``
    (``g`` :data:`PALLIATIVE_LOG_OR`, ``b`` :data:`PRIOR_EMERGENCY_LOG_OR`, ``k`` = 0-3 prior emergency
    admissions capped) by Newton's method from 0: ``eta`` the spell's log-odds under the SHMI's terms,
    ``q`` its probability of palliative care, ``prior_p`` (spells, 4) the distribution of its capped count
    (its age band's).  Whatever a trust's palliative coding or its patients' admissions in the year before,
    its expected deaths under the SHMI's model are then the true ones: the HSMR's terms only tell apart,
    among spells alike in the SHMI's covariates, those more or less at risk.
    """
    target = sigmoid(eta)
    shift = np.zeros_like(target)
    weights = [(k, prior_p[:, k] * (1.0 - q), prior_p[:, k] * q) for k in range(prior_p.shape[1])]
    for _ in range(iterations):
        value = -target
        slope = np.zeros_like(target)
        for k, w_plain, w_palliative in weights:
            base = eta + shift + PRIOR_EMERGENCY_LOG_OR * k
            for weight, s in ((w_plain, sigmoid(base)), (w_palliative, sigmoid(base + PALLIATIVE_LOG_OR))):
                value = value + weight * s
                slope = slope + weight * s * (1.0 - s)
        shift = shift - value / np.maximum(slope, 1e-12)
    return shift


def window_start(patient: np.ndarray, adm_day: np.ndarray, first_of_patient: np.ndarray) -> np.ndarray:
    """For each spell, the first spell of its patient admitted at most 365 days before it (itself if none).

    Spells sorted by patient, then admission (strictly later each time); ``first_of_patient``: the index of
    each spell's patient's first spell.
    """
    key = patient.astype(np.int64) * (1 << 24) + adm_day
    start = np.searchsorted(key, key - PRIOR_EMERGENCY_DAYS, side="left")
    return np.maximum(start, first_of_patient)


def prior_emergency(emergency: np.ndarray, window: np.ndarray, person_first: np.ndarray,
                    at: np.ndarray | None = None) -> np.ndarray:
    """Emergency admissions of the spell's person admitted 1–365 days before it (rule 3), uncapped.

    ``window``: :func:`window_start` of each spell; ``person_first``: the index of the first spell of each
    spell's person; ``at``: the spells to count for (all when None).
    """
    cumulative = np.concatenate([[0], np.cumsum(emergency)])
    index = np.arange(len(emergency)) if at is None else at
    first = np.maximum(window[index], person_first[index])
    return cumulative[index] - cumulative[first]


def pick_post_discharge_trust(size: np.ndarray, excluded: np.ndarray, death_rate: np.ndarray) -> int:
    """Acute position of the post-discharge trust (rule 4): of the mid-sized trusts (size rank within the
    middle fifth) but ``excluded`` (the Table 4 outliers), the one of highest ``death_rate`` (its case mix's:
    the most deaths expected, the clearest excess in a small world)."""
    rank = np.argsort(np.argsort(size)) / max(len(size) - 1, 1)
    low, high = _POST_DISCHARGE_SIZE_RANGE
    candidates = np.setdiff1d(np.nonzero((rank >= low) & (rank <= high))[0], excluded)
    return int(candidates[np.argmax(death_rate[candidates])])


def rules() -> dict:
    """The rules' parameters (truth/params.json ``hsmr``)."""
    return {
        "transfers": {"p_per_spell_with_a_later_admission": "base + old * sigmoid((age_at_first_admission - 70) / 8)",
                      "base": TRANSFER_P_BASE, "old": TRANSFER_P_OLD, "non_elective_share": TRANSFER_NON_ELECTIVE,
                      "first_spell_group": "the more severe of two draws from the trust's mix",
                      "next_spell": "another acute trust of the region, p proportional to size * exp(severity_pull"
                                    " * SEVERITY_TILT); same group, Charlson band, birth weight; non-elective",
                      "severity_pull": TRANSFER_SEVERITY_PULL,
                      "gap_days_p": {str(d): p for d, p in enumerate(TRANSFER_GAP_P)},
                      "codes_p": {_code_name(bits): p for bits, p in TRANSFER_CODE_MIX.items()},
                      "dangling_code_rate": DANGLING_CODE_RATE,
                      "link_rule": "next spell of the same HESID at another trust admitted 0-2 days after DISDATE, "
                                   "with DISDEST 49-53 on the first or ADMISORC 49-53 or ADMIMETH 81 on the next"},
        "palliative": {"p": "sigmoid(a + b * eta_shmi + PALLIATIVE_TILT of the trust)", "a": PALLIATIVE_A,
                       "b": PALLIATIVE_B, "log_or": PALLIATIVE_LOG_OR,
                       "codes_p": {"Z515": PALLIATIVE_CODE_SPLIT[0], "Z515+TRETSPEF315": PALLIATIVE_CODE_SPLIT[1],
                                   "TRETSPEF315": PALLIATIVE_CODE_SPLIT[2]}},
        "prior_emergency": {"log_or_per_admission": PRIOR_EMERGENCY_LOG_OR, "cap": PRIOR_EMERGENCY_CAP,
                            "window_days": [1, PRIOR_EMERGENCY_DAYS], "admimeth": list(EMERGENCY_ADMIMETH),
                            "counted": "earlier admissions of the same HESID (ADMIDATE 1-365 days before)"},
        "marginal_shift": "each spell's log-odds also carry d solving E[sigmoid(eta_shmi + d + log_or * palliative "
                          "+ log_or_per_admission * min(prior, cap))] = sigmoid(eta_shmi), over palliative ~ "
                          "Bernoulli(p) and prior ~ p_by_age_band: the SHMI's model (coefficients.csv) is the "
                          "average risk",
        "post_discharge": {"deaths_added": "1-30 days after discharge, DISMETH not 4",
                           "max_ratio": POST_DISCHARGE_MAX_RATIO,
                           "size_rank_range": list(_POST_DISCHARGE_SIZE_RANGE),
                           "choice": "of the trusts in the size rank range but the Table 4 outliers, the one of "
                                     "highest case-mix death rate (calibration pilot)",
                           "file": "truth/planted_post_discharge.csv"},
    }


def _code_name(bits: int) -> str:
    names = [name for bit, name in ((DISDEST_CODE, "DISDEST"), (ADMISORC_CODE, "ADMISORC"),
                                     (ADMIMETH_CODE, "ADMIMETH81")) if bits & bit]
    return "+".join(names)
