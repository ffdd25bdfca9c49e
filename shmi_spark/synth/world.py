"""The synthetic world: its parameters, and how the uncalibrated ones are drawn.

A :class:`World` holds everything the generator draws spells from: the trusts
(146 acute trusts as in the paper, and non-acute ones whose spells METHOD.md §2
excludes), the diagnosis groups (from the project's default reference files,
METHOD.md §1) with their code vocabularies, the per-group logistic death models
of METHOD.md §5 (shared effects + group deviations, :func:`linear_predictor`),
the trust-year effects with the planted outliers of the paper's Table 4 (and the
post-discharge trust's excess, :mod:`.hsmr`), the trusts' case-mix profiles
(:mod:`.casemix`: who each trust admits), and the demographic mixes.  :func:`draft_world` draws all of it from the seed;
:mod:`.calibrate` then rakes the shared effects and the mixes to the paper's
Tables 2-3 (:mod:`.paper`) on a pilot sample.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from itertools import combinations
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd

from shmi_spark.hes.levels import AGE_LEVELS, UNKNOWN
from shmi_spark.io import reference
from shmi_spark.synth.casemix import PROFILE_SD, TEACHING_SHIFT, TrustProfiles, draw_profiles, home_trust_cdf
from shmi_spark.synth.dates import Calendar
from shmi_spark.synth.numeric import logit, seed_sequence
from shmi_spark.synth.paper import FULL_SCALE, OUTLIER_PATTERN, calibration_targets

__all__ = ["VERSION", "DEFAULT_DIAG", "DEFAULT_CHARLSON", "AGE_UNKNOWN", "N_ACUTE", "World", "GroupMix",
           "CharlsonCombos", "AcuteTrusts", "draft_world", "charlson_combos", "linear_predictor",
           "charlson_age_z", "deprivation_p"]

VERSION = "2"

#: Default reference files of the project (METHOD.md §1), packaged with shmi_spark.
DEFAULT_DIAG, DEFAULT_CHARLSON = (Path(p) for p in reference.reference_paths("", ""))

#: Index of the ``unknown`` age band (the model's age-band index of a spell of unknown age).
AGE_UNKNOWN = AGE_LEVELS.index(UNKNOWN)
#: Acute trusts, as in the paper.
N_ACUTE = 146
#: Mid-point (years) of each model age band; the unknown band at 50.
AGE_MID = np.array([0.5, 2.5] + [a + 2.5 for a in range(5, 90, 5)] + [93.0, 50.0])
#: Age bands with an age (all but ``unknown``).
N_AGE_BANDS = 20

REGIONS = ["North East", "North West", "Yorkshire and the Humber", "East Midlands",
           "West Midlands", "East of England", "London", "South East Coast", "South Central",
           "South West"][:9]
REGION_WEIGHT = np.array([0.06, 0.15, 0.11, 0.09, 0.11, 0.11, 0.15, 0.13, 0.09])
TOWNS = ["Ashby", "Barford", "Carnford", "Dunmere", "Eastwick", "Fairholme", "Glenbury",
         "Harrowfield", "Ilsworth", "Kingsmead", "Langley", "Marlow Vale", "Northbridge",
         "Oakhurst", "Pendleton", "Queensford", "Ravensworth", "Saltmarsh", "Thornbury",
         "Upton", "Westerham", "Yarmouth Vale", "Ambledown", "Brackenridge", "Colwick",
         "Dovercourt", "Elmstead", "Fernhill", "Greystoke", "Hollins", "Ivybridge Vale",
         "Juniper Hill", "Kestrel", "Lindfield", "Millbrook", "Netherby", "Orchard Cross",
         "Portwood", "Riverside", "Stonebridge", "Tanfield", "Underwood", "Wolds", "Ashcombe",
         "Birchwood", "Castlegate", "Deanfield", "Edgeworth", "Foxley", "Goldcrest"]


@dataclass
class GroupMix:
    """What P(diagnosis group | age band, sex) is built from (one row per generator group)."""

    size: np.ndarray            # (G,) relative size of each group (0 for the invalid group)
    age_profile: np.ndarray     # (G, 20) relative weight of each age band (unknown excluded)
    sex_weight: np.ndarray      # (G, 2) weight of male, female

    def cumulative(self, boost: np.ndarray | None = None, severity: np.ndarray | None = None,
                   tilt: np.ndarray | None = None) -> np.ndarray:
        """(trusts x 2 sexes x 20 age bands, G) cumulative P(group | trust, age band, sex).

        ``boost`` scales the sizes; ``severity`` (G,) scores the groups and ``tilt``
        (trusts,) tilts each trust's mix by exp(tilt x severity) (one trust, untilted,
        when ``tilt`` is None).  The invalid group (index 0) takes 0.12% of each row.
        """
        sizes = self.size if boost is None else self.size * boost
        base = np.zeros((2 * N_AGE_BANDS, len(sizes)))
        for sex in range(2):
            for band in range(N_AGE_BANDS):
                base[sex * N_AGE_BANDS + band] = sizes * self.age_profile[:, band] * self.sex_weight[:, sex]
        tilts = np.zeros(1) if tilt is None else np.asarray(tilt, float)
        score = np.zeros(len(sizes)) if severity is None else severity
        weight = base[None, :, :] * np.exp(tilts[:, None, None] * score[None, None, :])
        weight[:, :, 0] = 0.0
        weight[:, :, 0] = 0.0012 / (1 - 0.0012) * weight.sum(2)  # invalid primary diagnosis
        cumulative = np.cumsum(weight, 2) / weight.sum(2, keepdims=True)
        cumulative[:, :, -1] = 1.0
        return cumulative.reshape(-1, len(sizes))


@dataclass
class CharlsonCombos:
    """The Charlson condition sets a spell may carry (size 1-3), with draw weights, score and band."""

    sets: list[tuple[str, ...]]  # condition names of each set
    weight: np.ndarray          # (n,) relative probability of each set
    score: np.ndarray           # (n,) SHMI Charlson score (negative sums taken as 0)
    band: np.ndarray            # (n,) band index: 0, 1 (1-5), 2 (>5)
    conditions: np.ndarray      # (n, 3) condition indices of each set, -1 padding
    members: list[np.ndarray]   # per band: indices of the sets in that band
    cumulative: list[np.ndarray]  # per band: cumulative draw probability over its members


@dataclass
class AcuteTrusts:
    """The acute trusts, in ``world.trusts`` order: their rows, share of admissions and region."""

    rows: np.ndarray            # row of each acute trust in world.trusts
    share: np.ndarray           # share of analysis admissions (sums to 1)
    region: np.ndarray          # region index (regions sorted by name)


@dataclass
class World:
    """Everything the generator draws from: trusts, groups and codes, the death model, the mixes.

    Arrays indexed by generator group (``G`` = the diagnosis groups + the invalid
    group 0) or by acute-trust position (acute trusts in ``trusts`` order).
    """

    seed: int
    n: int
    start: date
    end: date
    last_day: int               # index of the window's last day (start = day 0)
    trusts: pd.DataFrame        # PROCODE3, NAME, TYPE, REGION, SIZE (acute: analysis spells/yr full scale)
    groups: pd.DataFrame        # DIAG_GROUP, LABEL, PERINATAL, PROFILE, SLOPE, SIZE, RATE, ELECTIVE
    group_ids: np.ndarray       # generator group index -> DIAG_GROUP (index 0 = invalid group 0)
    group_mix: GroupMix         # what group_cdf is built from
    group_cdf: np.ndarray       # (T_acute*2*20, G) cumulative P(group | (position * 2 + sex) * 20 + age band)
    group_severity: np.ndarray  # (G,) standardised log-odds of death of each group (the severity tilt's score)
    profiles: TrustProfiles     # per-trust case-mix tilts (:mod:`.casemix`)
    elective_p: np.ndarray      # (G,) P(elective | group)
    perinatal: np.ndarray       # (G,) bool
    maternity: np.ndarray       # (G,) bool: maternity groups
    low_birthweight: np.ndarray  # (G,) bool: groups of short gestation / low birth weight
    alpha: np.ndarray           # (G,) intercept (at shared reference 0)
    shared: dict                # term -> array of shared effects
    deviation: dict             # term -> (G, L) group deviations
    trust_year: np.ndarray      # (T_acute, 6) effect incl. excess
    excess: np.ndarray          # (T_acute, 6) planted excess only
    outlier_positions: np.ndarray  # acute-trust positions of the planted outliers' slots (OUTLIER_PATTERN)
    #: acute-trust position of the trust with excess deaths after discharge (:mod:`.hsmr`; -1 before calibration)
    post_discharge_position: int
    patient_cell_w: np.ndarray  # (11 Table 2 bands excl missing, 2 sexes) patient weights
    mean_extra_spells: np.ndarray  # (11,) mean extra spells per patient by Table 2 band
    charlson_combos: CharlsonCombos
    charlson_a: float = 0.0
    charlson_b: float = 0.0
    imd_w: np.ndarray = field(default_factory=lambda: np.ones(6))
    imd_theta: np.ndarray = field(default_factory=lambda: np.zeros(6))
    #: P(age unknown | sex, age) = age_missing[sex, 0] * exp(age_missing[sex, 1] * (age - 50) / 25)
    age_missing: np.ndarray = field(default_factory=lambda: np.array([[0.0016, 0.0], [0.0016, 0.0]]))
    #: P(admission method unknown | elective, non-elective)
    admimeth_missing: np.ndarray = field(default_factory=lambda: np.array([0.001, 0.001]))
    codes: dict = field(default_factory=dict)   # code vocabularies (see _codes)
    params: dict = field(default_factory=dict)  # written to truth/params.json
    #: (T_acute, 6) log-odds excess whose deaths all come after discharge (the post-discharge trust, :mod:`.hsmr`)
    post_discharge: np.ndarray = field(default_factory=lambda: np.zeros((N_ACUTE, 6)))
    #: (20 age bands, 4) P(0, 1, 2, 3+ emergency admissions in the year before | age band) (:mod:`.hsmr` rule 3)
    prior_p: np.ndarray = field(default_factory=lambda: np.tile([1.0, 0.0, 0.0, 0.0], (N_AGE_BANDS, 1)))

    @property
    def n_acute(self) -> int:
        return int((self.trusts.TYPE == "acute").sum())

    def acute_trusts(self) -> AcuteTrusts:
        trusts = self.trusts
        rows = np.nonzero(trusts.TYPE.to_numpy() == "acute")[0]
        size = trusts.SIZE.to_numpy()[rows]
        region = trusts.REGION.to_numpy()[rows]
        regions = sorted(set(region))
        region_index = np.array([regions.index(r) for r in region])
        return AcuteTrusts(rows, size / size.sum(), region_index)

    def calendar(self) -> Calendar:
        return Calendar(self.start, self.last_day)

    def home_cdf(self) -> np.ndarray:
        """(11 Table 2 bands, acute trusts) cumulative P(home trust | patient's band) (:mod:`.casemix`)."""
        band_weight = self.patient_cell_w.sum(1) * (1.0 + self.mean_extra_spells)
        return home_trust_cdf(band_weight, self.acute_trusts().share, self.profiles.age)

    def set_group_cdf(self, boost: np.ndarray | None = None) -> None:
        """Rebuild :attr:`group_cdf` from the group mix (``boost`` scales the groups' sizes)."""
        self.group_cdf = self.group_mix.cumulative(boost, self.group_severity, self.profiles.severity)


# ---------------------------------------------------------------- the death model (METHOD.md §5)

def linear_predictor(world: World, spells: dict, trust: bool = True) -> np.ndarray:
    """Log-odds of death of each analysis spell: group intercept + shared effects + group deviations.

    Charlson terms do not apply to the invalid group (index 0); birth-weight terms
    apply to the perinatal groups only; the trust-year effect (with any planted
    excess) is added last, unless ``trust`` is False (the case-mix-only log-odds).
    This is the SHMI's model (truth/coefficients.csv): a spell's risk given its
    covariates, averaged over what the HSMR adjusts for besides (:mod:`.hsmr`:
    palliative care, prior emergency admissions, whose terms
    :func:`.patients.analysis_spells` adds so that this average is kept).
    """
    group = spells["group"]
    shared, deviation = world.shared, world.deviation
    eta = world.alpha[group].copy()
    eta += shared["AGE_BAND"][spells["age_band"]] + deviation["AGE_BAND"][group, spells["age_band"]]
    eta += shared["SEX_CAT"][spells["sex"]] + deviation["SEX_CAT"][group, spells["sex"]]
    eta += shared["ADMIMETH_CAT"][spells["admimeth"]] + deviation["ADMIMETH_CAT"][group, spells["admimeth"]]
    month = spells["month"] - 1
    eta += shared["ADM_MONTH"][month] + deviation["ADM_MONTH"][group, month]
    year = np.clip(spells["fy"] - 2005, 0, 5)
    eta += shared["DIS_FYEAR"][year] + deviation["DIS_FYEAR"][group, year]
    charlson = spells["charlson"]
    eta += np.where(group != 0, shared["CHARLSON_BAND"][charlson] + deviation["CHARLSON_BAND"][group, charlson], 0.0)
    birweit = spells["birweit_band"]
    eta += np.where(world.perinatal[group],
                    shared["BIRWEIT_BAND"][birweit] + deviation["BIRWEIT_BAND"][group, birweit], 0.0)
    if trust:
        eta += world.trust_year[spells["acute_position"], year]
    return eta


def deprivation_p(world: World, age_years, tilt, imd_w=None, imd_theta=None) -> np.ndarray:
    """(patients, 6) P(deprivation fifth | age, trust's tilt) ∝ w_f exp(theta_f z_age + tilt (f - 2))
    for the fifths f = 0-4 (the unknown fifth, 5, untilted)."""
    imd_w = world.imd_w if imd_w is None else imd_w
    imd_theta = world.imd_theta if imd_theta is None else imd_theta
    z_age = (np.clip(age_years, 0, 100) - 55.0) / 25.0
    step = np.array([-2.0, -1.0, 0.0, 1.0, 2.0, 0.0])
    log_weight = np.log(imd_w)[None, :] + imd_theta[None, :] * z_age[:, None] + np.outer(tilt, step)
    p_fifth = np.exp(log_weight - log_weight.max(1, keepdims=True))
    return p_fifth / p_fifth.sum(1, keepdims=True)


def charlson_age_z(age_years):
    """The age covariate of the Charlson-band model: (age clipped to 0-100, less 60) / 20."""
    return (np.clip(age_years, 0, 100) - 60.0) / 20.0


# ---------------------------------------------------------------- groups

_RATE_HINTS = [  # (regex on label, reference death rate at 65-69 non-elective, Charlson 0)
    (r"septicaemia", 0.20), (r"cardiac arrest", 0.45), (r"respiratory failure", 0.25),
    (r"aspiration", 0.22), (r"secondary malignan", 0.18), (r"pancreas|liver and intrahep", 0.18),
    (r"bronchus|oesophagus|stomach", 0.14), (r"leukaemia|myeloma|other and unspecified primary", 0.09),
    (r"cancer|lymphoma|melanoma", 0.05), (r"pneumonia", 0.10), (r"stroke", 0.12),
    (r"heart failure", 0.08), (r"acute myocardial", 0.06), (r"kidney injury", 0.09),
    (r"dementia", 0.06), (r"pulmonary embolism", 0.05),
    (r"neck of femur", 0.05), (r"intracranial", 0.06), (r"alcohol-related liver", 0.12),
    (r"gastrointestinal haemorrhage", 0.04), (r"intestinal obstruction|vascular disorders of intestine", 0.05),
    (r"pregnancy", 0.012), (r"livebirths", 0.006), (r"chest pain|abdominal pain|nausea|syncope", 0.003),
    (r"eye and ear|female genital|calculi|hernia|back problems|osteoarthritis", 0.0015),
    (r"short gestation|asphyxia|perinatal|congenital", 0.02),
]
_ELECTIVE_HINTS = [
    (r"cancer|chemotherapy|lymphoma|leukaemia|myeloma|melanoma|malignan", 0.55),
    (r"eye and ear|benign|hernia|osteoarthritis|back problems|prostatic|calculi|heart valve|"
     r"angina|rehabilitation|female genital|examination|inflammatory arthritis|venous", 0.55),
    (r"septicaemia|pneumonia|acute|injur|fracture|poisoning|burns|wound|arrest|failure|syncope|"
     r"pain|nausea|infection|intracranial|haemorrhage|livebirths|pregnancy|stroke", 0.03),
]


def _profile(label: str, perinatal: bool) -> str:
    """The age/sex profile of a group, from its label: neonatal, maternity, male, female, child, old, general."""
    low = label.lower()
    if perinatal or re.search(r"livebirth|short gestation|perinatal|birth asphyxia", low):
        return "neonatal"
    if re.search(r"pregnancy|abortive|childbirth", low):
        return "maternity"
    if re.search(r"prostate|male genital", low) and "female" not in low:
        return "male"
    if re.search(r"uterus|cervix|ovary|female genital|breast", low):
        return "female"
    if re.search(r"congenital", low):
        return "child"
    if re.search(r"cancer|leukaemia|myeloma|lymphoma|malignan|dementia|senility|parkinson|"
                 r"femur|heart failure|cerebrovascular|stroke|angina|atrial|aneurysm", low):
        return "old"
    return "general"


def _age_profile(profile: str, slope: float) -> np.ndarray:
    """Relative weight of each age band (unknown excluded) for a group of the given profile; max 1."""
    ages = AGE_MID[:N_AGE_BANDS]
    if profile == "neonatal":
        weight = np.zeros(N_AGE_BANDS)
        weight[0] = 1.0
    elif profile == "maternity":
        weight = np.exp(-0.5 * ((ages - 29) / 6.5) ** 2)
        weight[ages < 15] = 0
        weight[ages > 47] = 0
    elif profile == "child":
        weight = np.exp(-ages / 12.0)
    elif profile == "old":
        weight = np.exp(-0.5 * ((ages - 75) / 14) ** 2) + 0.02
    else:
        weight = np.exp(slope * (ages - 50) / 30.0)
        weight[0] *= 0.3
    return weight / weight.max()


def _groups(lookup, rng) -> pd.DataFrame:
    """The diagnosis groups (group 0 dropped) with profile, age slope, size, death rate and elective share."""
    groups = lookup.groups.copy()
    groups["DIAG_GROUP"] = groups["DIAG_GROUP"].astype(int)
    groups = groups[groups.DIAG_GROUP != 0].sort_values("DIAG_GROUP").reset_index(drop=True)
    groups["LABEL"] = groups["LABEL"].astype(str)
    groups["PERINATAL"] = groups["PERINATAL"].astype(bool)
    n_groups = len(groups)
    groups["PROFILE"] = [_profile(label, perinatal) for label, perinatal in zip(groups.LABEL, groups.PERINATAL,
                                                                                strict=True)]
    groups["SLOPE"] = rng.normal(0.4, 0.7, n_groups)
    size = np.exp(rng.normal(0.0, 0.9, n_groups))
    size[groups.PROFILE.eq("maternity").to_numpy()] = 1.5
    size[groups.PROFILE.eq("neonatal").to_numpy()] *= 2.0
    groups["SIZE"] = size
    rate = np.exp(rng.normal(np.log(0.012), 0.8, n_groups))
    for pattern, hint in reversed(_RATE_HINTS):  # first hint wins
        hit = groups.LABEL.str.contains(pattern, regex=True, case=False).to_numpy()
        rate[hit] = hint * np.exp(rng.normal(0, 0.2, hit.sum()))
    groups["RATE"] = np.clip(rate, 2e-4, 0.6)
    elective = np.full(n_groups, 0.15)
    for pattern, hint in reversed(_ELECTIVE_HINTS):
        hit = groups.LABEL.str.contains(pattern, regex=True, case=False).to_numpy()
        elective[hit] = hint
    elective[groups.PROFILE.isin(["neonatal", "maternity"]).to_numpy()] = 0.01
    groups["ELECTIVE"] = elective
    return groups


# ---------------------------------------------------------------- trusts

_TRUST_KINDS = [("acute", N_ACUTE, "R"), ("specialist", 72, "R"), ("mental_health", 24, "R"),
                ("community", 12, "5"), ("independent", 16, "N")]


def _procodes(rng, n, prefix, taken):
    """``n`` new 3-character provider codes starting with ``prefix`` (added to ``taken``)."""
    alphabet = np.array(list("ABCDEFGHJKLMNPQRTVWXY0123456789"))
    out = []
    while len(out) < n:
        code = prefix + "".join(rng.choice(alphabet, 3 - len(prefix)))
        if code not in taken:
            taken.add(code)
            out.append(code)
    return out


def _acute_sizes(rng) -> np.ndarray:
    """Analysis admissions a year of each acute trust at full scale: about 20,000 to over 150,000.

    A log-normal body (narrower below the median than above) between a smallest
    trust of 19,800 and a largest of 158,000 admissions a year, scaled so that the
    trusts hold the paper's admissions (a year of :data:`FULL_SCALE` / 5.5).
    """
    quantiles = (np.arange(N_ACUTE) + 0.5) / N_ACUTE
    z = np.array([NormalDist().inv_cdf(x) for x in quantiles])
    size = np.exp(np.where(z < 0, 0.28 * z, 0.40 * z))
    size[0], size[-1] = 19_800, 158_000
    body = slice(1, N_ACUTE - 1)
    size[body] *= (FULL_SCALE / 5.5 - size[0] - size[-1]) / size[body].sum()
    rng.shuffle(size)
    return size


def _name_suffix(rng, kind: str) -> str:
    # the three choices are drawn whatever the kind (the draw order of the world)
    suffixes = {"acute": rng.choice(["Hospitals NHS Trust", "Hospital NHS Foundation Trust",
                                     "University Hospitals NHS Trust", "General Hospital NHS Trust"]),
                "specialist": rng.choice(["Heart and Chest Hospital NHS Trust",
                                          "Orthopaedic Hospital NHS Foundation Trust",
                                          "Children's Hospital NHS Trust", "Cancer Centre NHS Trust",
                                          "Eye Hospital NHS Foundation Trust", "Women's Hospital NHS Trust"]),
                "mental_health": "Mental Health NHS Trust",
                "community": "Community Health Services",
                "independent": rng.choice(["Private Hospital", "Independent Treatment Centre"])}
    return str(suffixes[kind])


def _trust_name(rng, kind: str, names_used: set[str]) -> str:
    """A new trust name: a town (or two) and a suffix of the trust's kind."""
    while True:
        town = TOWNS[rng.integers(len(TOWNS))]
        second = TOWNS[rng.integers(len(TOWNS))]
        base = town if rng.random() < 0.6 else f"{town} and {second}"
        name = f"{base} {_name_suffix(rng, kind)}"
        if name not in names_used:
            names_used.add(name)
            return name


def _trusts(rng) -> pd.DataFrame:
    """All trusts: PROCODE3, NAME, TYPE, REGION, SIZE (SIZE 0 for the non-acute)."""
    taken: set[str] = set()
    rows = []
    size = _acute_sizes(rng)
    region = rng.choice(len(REGIONS), N_ACUTE, p=REGION_WEIGHT / REGION_WEIGHT.sum())
    names_used: set[str] = set()
    for kind, n, prefix in _TRUST_KINDS:
        codes = _procodes(rng, n, prefix, taken)
        for i in range(n):
            name = _trust_name(rng, kind, names_used)
            rows.append((codes[i], name, kind,
                         REGIONS[region[i]] if kind == "acute" else REGIONS[rng.integers(len(REGIONS))],
                         float(size[i]) if kind == "acute" else 0.0))
    return pd.DataFrame(rows, columns=["PROCODE3", "NAME", "TYPE", "REGION", "SIZE"])


# ---------------------------------------------------------------- codes

def _normalised(codes) -> set[str]:
    """The normalised form of each code (METHOD.md §1; a value that is no code dropped)."""
    return {code for code in map(reference.normalise_code, codes) if code is not None}


def _codes(lookup, charlson, rng) -> dict:
    """Code vocabularies: primary codes per group, Charlson codes per condition, fillers."""
    group_codes = reference.group_codes(lookup, rng=np.random.default_rng(int(rng.integers(2**31))))
    charlson = charlson.copy()
    charlson["PREFIX"] = charlson["PREFIX"].astype(str).str.upper().str.replace(".", "", regex=False)
    prefixes = tuple(sorted(set(charlson.PREFIX)))
    all_codes = sorted(_normalised(c for codes in group_codes.values() for c in codes)
                       | _normalised(c for c in lookup.codes.CODE.astype(str) if len(str(c)) >= 3))
    all_codes = [c for c in all_codes if c and re.fullmatch(r"[A-Z][0-9]{2}[0-9X]", c)]
    filler = [c for c in all_codes if not c.startswith(prefixes) and c != "Z515"]
    conditions = list(dict.fromkeys(charlson.CONDITION))
    condition_weight = {c: int(charlson.loc[charlson.CONDITION == c, "WEIGHT"].iloc[0]) for c in conditions}
    condition_codes = {}
    for condition in conditions:
        found: list[str] = []
        for prefix in charlson.loc[charlson.CONDITION == condition, "PREFIX"]:
            matching = [x for x in all_codes if x.startswith(prefix)]
            found.extend(matching if matching else [prefix + ("X" if len(prefix) == 3 else "")][:1])
        condition_codes[condition] = sorted(set(x for x in found if len(x) == 4))
    codes_by_group = {int(k): sorted(_normalised(v)) for k, v in group_codes.items()}
    for group, codes in codes_by_group.items():  # the generator relies on the lookup agreeing
        bad = [c for c in codes if lookup.group_of(c) != group]
        if bad:
            raise ValueError(f'group_codes gave {bad[:3]} for group {group}')
    # unmapped primary codes for the invalid group: shaped like codes, absent from the lookup
    invalid = [c for c in ["U999", "U509", "U829", "U071", "U049", "Y99X", "W999", "V999", "X999"]
               if lookup.group_of(c) is None][:5]
    return {"group_codes": codes_by_group,
            "filler": filler, "conditions": conditions, "condition_weight": condition_weight,
            "condition_codes": condition_codes, "invalid": invalid, "prefixes": prefixes}


# ---------------------------------------------------------------- Charlson combos

#: prevalence of each Charlson condition (others 0.02), for the draw weights of condition sets
CONDITION_PREVALENCE = {"copd": .25, "diab": .25, "chf": .12, "cevd": .08, "canc": .12, "rend": .12,
                        "dementia": .08, "ami": .06, "pvd": .05, "rheumd": .04, "metacanc": .04, "mld": .02,
                        "pud": .02, "msld": .01, "hp": .02, "aids": .004, "diabwc": .06}


def charlson_combos(conditions: list[str], weights: dict) -> CharlsonCombos:
    """All condition sets of size 1-3 with their probability weight, SHMI score and band."""
    prevalence = {c: CONDITION_PREVALENCE.get(c, 0.02) for c in conditions}
    sets, weight, score = [], [], []
    for size, penalty in ((1, 1.0), (2, 0.45), (3, 0.2)):
        for combo in combinations(conditions, size):
            sets.append(combo)
            weight.append(penalty * np.prod([prevalence[c] for c in combo]))
            score.append(max(0, sum(weights[c] for c in combo)))
    scores = np.array(score)
    band = np.where(scores == 0, 0, np.where(scores <= 5, 1, 2))
    weights_arr = np.array(weight)
    indices = np.full((len(sets), 3), -1, np.int64)
    for i, combo in enumerate(sets):
        indices[i, :len(combo)] = [conditions.index(x) for x in combo]
    members, cumulative = [], []
    for b in range(3):
        # band 0: a lone "diabetes complications" code (score -1 → 0), if any
        in_band = np.nonzero(band == b)[0]
        members.append(in_band)
        cumulative.append(np.cumsum(weights_arr[in_band]) / weights_arr[in_band].sum() if len(in_band)
                          else np.zeros(0))
    return CharlsonCombos(sets, weights_arr, scores, band, indices, members, cumulative)


# ---------------------------------------------------------------- the draft world

#: initial shared effects (raked by :mod:`.calibrate`) and the SD of the group deviations from them
_SHARED_SD = {"AGE_BAND": 0.12, "SEX_CAT": 0.08, "ADMIMETH_CAT": 0.25, "ADM_MONTH": 0.03,
              "DIS_FYEAR": 0.03, "CHARLSON_BAND": 0.2, "BIRWEIT_BAND": 0.25}
#: mean extra spells per patient by Table 2 band (excluding missing)
_MEAN_EXTRA_SPELLS = np.array([0.35, 0.6, 0.5, 0.6, 0.7, 0.9, 1.2, 1.6, 2.0, 2.4, 2.6])


def _initial_shared_effects() -> dict:
    age = np.concatenate([0.075 * (AGE_MID[:N_AGE_BANDS] - 67.0), [0.0]])
    age[0] = -1.5
    age[1] = -4.0
    return {
        "AGE_BAND": age,
        "SEX_CAT": np.array([0.0, -0.13, 0.0]),
        "ADMIMETH_CAT": np.array([-1.6, 0.0, -0.6]),
        "ADM_MONTH": 0.08 * np.cos(2 * np.pi * (np.arange(12)) / 12.0),
        "DIS_FYEAR": -0.03 * np.arange(6),
        "CHARLSON_BAND": np.array([0.0, 0.35, 1.3]),
        "BIRWEIT_BAND": np.array([2.8, 1.2, 0.0, 0.3, 0.6]),
    }


def _group_mix(groups: pd.DataFrame) -> GroupMix:
    n_groups = len(groups) + 1
    age_profile = np.zeros((n_groups, N_AGE_BANDS))
    sex_weight = np.ones((n_groups, 2))
    for i, row in enumerate(groups.itertuples(), start=1):
        age_profile[i] = _age_profile(row.PROFILE, row.SLOPE)
        if row.PROFILE in ("maternity", "female"):
            sex_weight[i] = [0.0 if row.PROFILE == "maternity" or "breast" not in row.LABEL.lower() else 0.01, 1.0]
        elif row.PROFILE == "male":
            sex_weight[i] = [1.0, 0.0]
    return GroupMix(np.concatenate([[0.0], groups.SIZE.to_numpy()]), age_profile, sex_weight)


def _patient_cell_weights() -> np.ndarray:
    """Patients by Table 2 cell (band excl. missing x sex): Table 2 spells / spells per patient."""
    targets = calibration_targets()
    table2 = targets[(targets.table == "T2") & ~targets.level.isin(["total", "missing"])]
    spells = np.stack([table2[table2.sex == "M"].admissions.to_numpy(),
                       table2[table2.sex == "F"].admissions.to_numpy()], 1)
    return spells / (1.0 + _MEAN_EXTRA_SPELLS)[:, None]


def draft_world(seed: int, n: int, start: date, end: date) -> World:
    """The world before calibration: everything drawn from ``seed`` (stream 0)."""
    lookup = reference.load_diag_lookup(DEFAULT_DIAG)
    charlson = reference.load_charlson(DEFAULT_CHARLSON)
    rng = np.random.default_rng(seed_sequence(seed, 0))
    trusts = _trusts(rng)
    groups = _groups(lookup, rng)
    codes = _codes(lookup, charlson, rng)
    groups = groups[groups.DIAG_GROUP.isin(codes["group_codes"])].reset_index(drop=True)
    n_groups = len(groups) + 1  # + invalid group at index 0
    low_birthweight = groups.LABEL.str.lower().str.contains("gestation|low birth", regex=True).to_numpy()
    shared = _initial_shared_effects()
    deviation = {term: rng.normal(0, _SHARED_SD[term], (n_groups, len(effects))) for term, effects in shared.items()}
    deviation["CHARLSON_BAND"][0] = 0.0
    rates = np.concatenate([[0.03], groups.RATE.to_numpy()])
    # trust-year effects; the planted outliers go to some of the 40 largest acute trusts
    acute = trusts.index[trusts.TYPE == "acute"].to_numpy()
    persistent = rng.normal(0, 0.05, len(acute))
    annual = rng.normal(0, 0.04, (len(acute), 6))
    largest = np.argsort(-trusts.SIZE.to_numpy()[acute])[:40]
    outlier_positions = rng.choice(largest, len({slot for slot, _ in OUTLIER_PATTERN}), replace=False)
    mix = _group_mix(groups)
    log_odds = logit(rates[1:])
    severity = np.concatenate([[0.0], (log_odds - log_odds.mean()) / log_odds.std()])
    size = trusts.SIZE.to_numpy()[acute]
    profiles = draw_profiles(np.random.default_rng(seed_sequence(seed, 5)), size)
    params = {"seed": seed, "n": n, "start": start.isoformat(), "end": end.isoformat(), "version": VERSION,
              "outlier_slots": [int(acute[s]) for s in outlier_positions],
              "casemix_profile_sd": dict(PROFILE_SD), "casemix_teaching_shift": dict(TEACHING_SHIFT),
              "teaching_trusts": int(profiles.teaching.sum())}
    return World(
        seed=seed, n=n, start=start, end=end, last_day=(end - start).days, trusts=trusts, groups=groups,
        group_ids=np.concatenate([[0], groups.DIAG_GROUP.to_numpy()]), group_mix=mix,
        group_cdf=mix.cumulative(None, severity, profiles.severity), group_severity=severity, profiles=profiles,
        elective_p=np.concatenate([[0.1], groups.ELECTIVE.to_numpy()]),
        perinatal=np.concatenate([[False], groups.PROFILE.eq("neonatal").to_numpy()]),
        maternity=np.concatenate([[False], groups.PROFILE.eq("maternity").to_numpy()]),
        low_birthweight=np.concatenate([[False], low_birthweight]),
        alpha=logit(rates), shared=shared, deviation=deviation,
        trust_year=persistent[:, None] + annual, excess=np.zeros((len(acute), 6)),
        outlier_positions=outlier_positions, post_discharge_position=-1,
        post_discharge=np.zeros((len(acute), 6)), patient_cell_w=_patient_cell_weights(),
        mean_extra_spells=_MEAN_EXTRA_SPELLS.copy(),
        charlson_combos=charlson_combos(codes["conditions"], codes["condition_weight"]), codes=codes, params=params)
