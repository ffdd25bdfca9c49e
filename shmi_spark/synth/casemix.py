"""Per-trust case-mix profiles: how the patients of one acute trust differ from another's.

Real trusts differ in case mix: a seaside district general hospital admits older
patients than an inner-city teaching hospital, which does more elective work,
takes more of the complex (high-risk) diagnoses, codes comorbidity more deeply
and serves a more deprived population.  Across trusts the crude death rate then
follows the case-mix-expected rate closely (the paper's R² of crude on expected
death rate: 0.81 in 2007/08).  A :class:`TrustProfiles` holds, per acute trust
(in acute-position order), the tilts the generator applies to its patients:

* ``age`` — log-ratio of a trust's share of patients per 25 years of age
  (positive: an older catchment); applied by drawing each patient's home trust
  given the patient's age band (:func:`home_trust_cdf`), which keeps both the
  national age mix and the trusts' sizes;
* ``elective`` — shift of the log-odds of an elective admission (every group);
* ``charlson`` — shift of the log-odds of a Charlson band above 0 (coding depth);
* ``severity`` — tilt of the diagnosis-group mix towards the groups of high
  death rate (tertiary referrals, cancer work), per standard deviation of the
  groups' log-odds of death;
* ``deprivation`` — tilt of the deprivation-fifth mix towards the most deprived
  fifth, per fifth;
* ``palliative`` — shift of the log-odds of a spell being palliative (coded Z51.5
  and/or treatment specialty 315: :mod:`.hsmr` rule 2) — a contextual indicator
  (METHOD.md §7) and a term of the HSMR's case mix; a palliative spell's risk
  of death is higher (:data:`.hsmr.PALLIATIVE_LOG_OR`).

The tilts are drawn from their own random stream so that the rest of the world
(trust effects, planted outliers, the death model) is drawn as before.  The
national Tables 2-3 are kept by the calibration (:mod:`.calibrate`), which rakes
the national mixes on pilot samples drawn with the profiles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TrustProfiles", "PROFILE_SD", "TEACHING_SHIFT", "draw_profiles", "home_trust_cdf", "PATIENT_BAND_MID_AGE"]

#: SD of each tilt across trusts (the scale of the case-mix differences).  Tuned so that the R² across
#: trusts of crude on case-mix expected death rate is about 0.8 in a world of 1M admissions (0.73-0.85 in
#: every year over seeds 1, 2, 3, 5; 0.75-0.88 without the post-discharge trust of :mod:`.hsmr`); the
#: case-mix-expected rates of the trusts then range ~1.4-7.7% (coefficient of variation ~0.3).  At full
#: scale, where a trust-year's deaths are 36 times as many, the binomial noise is smaller and the R² higher
#: (~0.93-0.97).  (Raised by a tenth — age, elective, Charlson, severity — when the transfers of
#: :mod:`.hsmr` came: a transfer takes a sick patient to another trust of the region, which narrowed the
#: spread of the expected rates by a tenth.)
PROFILE_SD = {"age": 0.363, "elective": 0.396, "charlson": 0.297, "severity": 0.187, "deprivation": 0.30,
              "palliative": 0.6}
#: shift of each tilt at a teaching trust (large, urban: younger, more elective and complex work,
#: deeper coding, more deprived)
TEACHING_SHIFT = {"age": -0.18, "elective": 0.27, "charlson": 0.18, "severity": 0.11, "deprivation": 0.25}
#: mid-point age (years) of each Table 2 band of a patient (missing excluded)
PATIENT_BAND_MID_AGE = np.array([0.5, 2.5, 9.5, 19.5, 29.5, 39.5, 49.5, 59.5, 69.5, 79.5, 89.0])


@dataclass
class TrustProfiles:
    """The case-mix tilts of each acute trust (arrays in acute-position order)."""

    teaching: np.ndarray      # (T,) bool
    age: np.ndarray           # (T,) log-ratio of patients per 25 years of age
    elective: np.ndarray      # (T,) shift of the log-odds of an elective admission
    charlson: np.ndarray      # (T,) shift of the log-odds of a Charlson band above 0
    severity: np.ndarray      # (T,) tilt of the group mix per SD of the groups' log-odds of death
    deprivation: np.ndarray   # (T,) tilt of the deprivation mix per fifth (towards the most deprived)
    palliative: np.ndarray    # (T,) shift of the log-odds of palliative care (hsmr rule 2)

    @classmethod
    def flat(cls, n: int) -> TrustProfiles:
        """No case-mix differences between the ``n`` trusts."""
        zero = np.zeros(n)
        return cls(np.zeros(n, bool), zero, zero.copy(), zero.copy(), zero.copy(), zero.copy(), zero.copy())

    def as_frame_columns(self) -> dict:
        """The profiles as columns (for truth/trust_profiles.csv)."""
        return {"TEACHING": self.teaching.astype(int), "AGE_TILT": np.round(self.age, 6),
                "ELECTIVE_SHIFT": np.round(self.elective, 6), "CHARLSON_SHIFT": np.round(self.charlson, 6),
                "SEVERITY_TILT": np.round(self.severity, 6), "DEPRIVATION_TILT": np.round(self.deprivation, 6),
                "PALLIATIVE_TILT": np.round(self.palliative, 6)}


def draw_profiles(rng: np.random.Generator, size: np.ndarray) -> TrustProfiles:
    """Case-mix profiles of trusts of the given sizes: about a third of the largest half (more often the
    larger) are teaching trusts.

    The tilts are correlated as in real trusts: an older catchment goes with less
    deprivation and less elective work (seaside and rural district generals),
    a teaching trust with a younger, more deprived population, more elective and
    complex work and deeper coding.
    """
    n = len(size)
    rank = np.argsort(np.argsort(-size))          # 0 = largest
    teaching = (rank < n // 2) & (rng.random(n) < 0.5 * (1.0 - rank / (n // 2)) + 0.1)
    # five latent normals: age, elective, charlson, severity, deprivation; elective, charlson and
    # deprivation partly from age
    latent = rng.standard_normal((n, 5))
    age = PROFILE_SD["age"] * latent[:, 0]
    elective = PROFILE_SD["elective"] * (0.9 * latent[:, 1] - 0.3 * latent[:, 0])
    charlson = PROFILE_SD["charlson"] * (0.9 * latent[:, 2] + 0.3 * latent[:, 0])
    severity = PROFILE_SD["severity"] * latent[:, 3]
    deprivation = PROFILE_SD["deprivation"] * (0.9 * latent[:, 4] - 0.4 * latent[:, 0])
    palliative = PROFILE_SD["palliative"] * rng.standard_normal(n)
    shift = teaching.astype(float)
    return TrustProfiles(teaching=teaching, age=age + TEACHING_SHIFT["age"] * shift,
                         elective=elective + TEACHING_SHIFT["elective"] * shift,
                         charlson=charlson + TEACHING_SHIFT["charlson"] * shift,
                         severity=severity + TEACHING_SHIFT["severity"] * shift,
                         deprivation=deprivation + TEACHING_SHIFT["deprivation"] * shift, palliative=palliative)


def home_trust_cdf(band_weight: np.ndarray, share: np.ndarray, age_tilt: np.ndarray,
                   iterations: int = 200) -> np.ndarray:
    """(bands, trusts) cumulative P(home trust | patient's age band).

    ``band_weight``: the national share of admissions by patient age band;
    ``share``: each trust's share of admissions; ``age_tilt``: each trust's
    log-ratio per 25 years of age.  The joint table band x trust ∝
    exp(tilt x (age - 50) / 25) is raked (iterative proportional fitting) to
    both margins, so the national age mix and the trusts' sizes are kept.
    """
    band_weight = np.asarray(band_weight, float) / np.sum(band_weight)
    share = np.asarray(share, float) / np.sum(share)
    z = (PATIENT_BAND_MID_AGE[: len(band_weight)] - 50.0) / 25.0
    joint = np.exp(np.outer(z, age_tilt))
    for _ in range(iterations):
        joint *= (share / joint.sum(0))[None, :]
        joint *= (band_weight / joint.sum(1))[:, None]
    conditional = joint / joint.sum(1, keepdims=True)
    cumulative = np.cumsum(conditional, 1)
    cumulative[:, -1] = 1.0
    return cumulative
