"""The synthetic world's parameters and their calibration.

:func:`build_world` turns (seed, N, window) into a :class:`World`: the trusts,
the diagnosis groups (from the project's default reference files), the
per-group logistic death models (shared effects + group deviations), the
trust-year effects with the planted outliers of the paper's Table 4, and the
demographic mixes.  The shared effects are calibrated deterministically by
raking in logit space on a pilot sample so that the world reproduces the
paper's Tables 2 and 3 (``CALIBRATION`` below holds the published figures).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

VERSION = "1"

#: Default reference files of the project (METHOD.md §1).
ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIAG = ROOT / "conf" / "reference" / "diag_groups.csv"
DEFAULT_CHARLSON = ROOT / "conf" / "reference" / "charlson.csv"

# ---------------------------------------------------------------- levels
AGE_LEVELS = (["<1", "1-4"] + [f"{a}-{a + 4}" for a in range(5, 90, 5)] + ["90+", "unknown"])
AGE_UNKNOWN = len(AGE_LEVELS) - 1  # 20
SEX_LEVELS = ["male", "female", "unknown"]
ADM_LEVELS = ["elective", "non-elective", "unknown"]
CHARLSON_LEVELS = ["0", "1-5", ">5"]
BW_LEVELS = ["<1000", "1000-2499", "2500-4499", "4500+", "unknown"]
IMD_LEVELS = ["1", "2", "3", "4", "5", "unknown"]
MONTHS = list(range(1, 13))
REF = {"AGE_BAND": "65-69", "SEX_CAT": "male", "ADMIMETH_CAT": "non-elective",
       "ADM_MONTH": "1", "CHARLSON_BAND": "0", "BIRWEIT_BAND": "2500-4499", "DIS_FYEAR": "2005"}

#: Table 2 age bands → model age-band indices.
T2_BANDS = {"<1": [0], "1-4": [1], "5-14": [2, 3], "15-24": [4, 5], "25-34": [6, 7],
            "35-44": [8, 9], "45-54": [10, 11], "55-64": [12, 13], "65-74": [14, 15],
            "75-84": [16, 17], "85+": [18, 19], "missing": [20]}
T2_OF_AGE = np.zeros(len(AGE_LEVELS), dtype=np.int8)
for _i, (_k, _v) in enumerate(T2_BANDS.items()):
    T2_OF_AGE[_v] = _i
T2_NAMES = list(T2_BANDS)

#: The paper's Tables 2-4 (Campbell et al., BMJ 2012;344:e1001), as in
#: shared/calibration/bmj2012_tables.csv.
CALIBRATION_CSV = """table,variable,level,sex,deaths,admissions,pct_died
T2,age,<1,M,9023,1242359,0.7
T2,age,<1,F,7265,976381,0.7
T2,age,1-4,M,990,896570,0.1
T2,age,1-4,F,847,664736,0.1
T2,age,5-14,M,1157,969256,0.1
T2,age,5-14,F,1014,775243,0.1
T2,age,15-24,M,3132,1215664,0.3
T2,age,15-24,F,1974,1335480,0.1
T2,age,25-34,M,5117,1277416,0.4
T2,age,25-34,F,3744,1383334,0.3
T2,age,35-44,M,13279,1697032,0.8
T2,age,35-44,F,11277,1692040,0.7
T2,age,45-54,M,31299,1895815,1.7
T2,age,45-54,F,26078,1803346,1.4
T2,age,55-64,M,79815,2472297,3.2
T2,age,55-64,F,58855,2084589,2.8
T2,age,65-74,M,156178,2839494,5.5
T2,age,65-74,F,113757,2398270,4.7
T2,age,75-84,M,269426,2700884,10.0
T2,age,75-84,F,257784,2924310,8.8
T2,age,85+,M,195446,1114540,17.5
T2,age,85+,F,329350,2067313,15.9
T2,age,missing,M,878,32844,2.7
T2,age,missing,F,696,23391,3.0
T2,age,total,M,765740,18354171,4.2
T2,age,total,F,812641,18128433,4.5
T3,admission_type,emergency,all,1501055,27395986,5.5
T3,admission_type,elective,all,76748,9057433,0.8
T3,admission_type,missing,all,847,35274,2.4
T3,imd_fifth,1 least deprived,all,346890,8874140,3.9
T3,imd_fifth,2,all,328466,7439153,4.4
T3,imd_fifth,3,all,318109,6815773,4.7
T3,imd_fifth,4,all,301006,6329181,4.8
T3,imd_fifth,5 most deprived,all,259536,5697075,4.6
T3,imd_fifth,missing,all,24643,1333371,1.8
T3,charlson,0,all,507279,25935482,2.0
T3,charlson,1-5,all,192125,4702488,4.1
T3,charlson,>5,all,879246,5850723,15.0
T3,total,all,all,1578650,36488693,4.3
T4,outlying_trusts,2005/06,all,,4,
T4,outlying_trusts,2006/07,all,,2,
T4,outlying_trusts,2007/08,all,,2,
T4,outlying_trusts,2008/09,all,,3,
T4,outlying_trusts,2009/10,all,,2,
"""


def calibration_targets() -> pd.DataFrame:
    return pd.read_csv(io.StringIO(CALIBRATION_CSV), dtype={"level": str})


FULL_SCALE = 36_488_693
N_ACUTE = 146
#: Table 4 pattern: (trust slot, financial years).  Slot k = the k-th planted trust.
OUTLIER_PATTERN = [(0, [2005, 2006]), (1, [2005]), (2, [2005]), (3, [2005]),
                   (4, [2006, 2008, 2009]), (5, [2007, 2008]), (6, [2007, 2009]), (7, [2008])]
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
class World:
    seed: int
    n: int
    start: date
    end: date
    W: int                      # index of the window's last day (start = day 0)
    trusts: pd.DataFrame        # PROCODE3, NAME, TYPE, REGION, SIZE (acute: analysis spells/yr full scale)
    groups: pd.DataFrame        # DIAG_GROUP, LABEL, PERINATAL, profile, SIZE, ELECTIVE, RATE
    group_ids: np.ndarray       # generator group index -> DIAG_GROUP (index 0 = invalid group 0)
    group_cum: np.ndarray       # (21*2, G) cumulative P(group | age band, sex)
    elective_p: np.ndarray      # (G,) P(elective | group)
    perinatal: np.ndarray       # (G,) bool
    alpha: np.ndarray           # (G,) intercept (at shared reference 0)
    shared: dict                # term -> array of shared effects
    dev: dict                   # term -> (G, L) group deviations
    trust_year: np.ndarray      # (T_acute, 6) effect incl. excess
    excess: np.ndarray          # (T_acute, 6) planted excess only
    patient_cell_w: np.ndarray  # (12 T2 bands excl missing, 2 sexes) patient weights
    mean_extra_spells: np.ndarray  # (12,) mean extra spells per patient by T2 band
    charlson_a: float = 0.0
    charlson_b: float = 0.0
    imd_w: np.ndarray = field(default_factory=lambda: np.ones(6))
    imd_theta: np.ndarray = field(default_factory=lambda: np.zeros(6))
    codes: dict = field(default_factory=dict)   # vocabularies (see _codes)
    params: dict = field(default_factory=dict)

    @property
    def n_acute(self) -> int:
        return int((self.trusts.TYPE == "acute").sum())


# ---------------------------------------------------------------- references

def load_references(diag_path: Path = DEFAULT_DIAG, charlson_path: Path = DEFAULT_CHARLSON):
    """The project's default diagnosis-group lookup and Charlson list (shmi_spark.io.reference)."""
    from shmi_spark.io import reference
    return reference, reference.load_diag_lookup(diag_path), reference.load_charlson(charlson_path)


def _logit(p):
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


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


AGE_MID = np.array([0.5, 2.5] + [a + 2.5 for a in range(5, 90, 5)] + [93.0, 50.0])


def _age_profile(kind: str, slope: float) -> np.ndarray:
    a = AGE_MID[:20]
    if kind == "neonatal":
        w = np.zeros(20); w[0] = 1.0
    elif kind == "maternity":
        w = np.exp(-0.5 * ((a - 29) / 6.5) ** 2); w[a < 15] = 0; w[a > 47] = 0
    elif kind == "child":
        w = np.exp(-a / 12.0)
    elif kind == "old":
        w = np.exp(-0.5 * ((a - 75) / 14) ** 2) + 0.02
    else:
        w = np.exp(slope * (a - 50) / 30.0)
        w[0] *= 0.3
    return w / w.max()


def _groups(lookup, rng) -> pd.DataFrame:
    g = lookup.groups.copy()
    g["DIAG_GROUP"] = g["DIAG_GROUP"].astype(int)
    g = g[g.DIAG_GROUP != 0].sort_values("DIAG_GROUP").reset_index(drop=True)
    g["LABEL"] = g["LABEL"].astype(str)
    g["PERINATAL"] = g["PERINATAL"].astype(bool)
    n = len(g)
    g["PROFILE"] = [_profile(l, p) for l, p in zip(g.LABEL, g.PERINATAL)]
    g["SLOPE"] = rng.normal(0.4, 0.7, n)
    size = np.exp(rng.normal(0.0, 0.9, n))
    size[g.PROFILE.eq("maternity").to_numpy()] = 1.5
    size[g.PROFILE.eq("neonatal").to_numpy()] *= 2.0
    g["SIZE"] = size
    rate = np.exp(rng.normal(np.log(0.012), 0.8, n))
    for pat, r in reversed(_RATE_HINTS):  # first hint wins
        m = g.LABEL.str.contains(pat, regex=True, case=False).to_numpy()
        rate[m] = r * np.exp(rng.normal(0, 0.2, m.sum()))
    g["RATE"] = np.clip(rate, 2e-4, 0.6)
    el = np.full(n, 0.15)
    for pat, e in reversed(_ELECTIVE_HINTS):
        m = g.LABEL.str.contains(pat, regex=True, case=False).to_numpy()
        el[m] = e
    el[g.PROFILE.isin(["neonatal", "maternity"]).to_numpy()] = 0.01
    g["ELECTIVE"] = el
    return g


# ---------------------------------------------------------------- trusts

def _code3(rng, n, prefix, taken):
    alphabet = np.array(list("ABCDEFGHJKLMNPQRTVWXY0123456789"))
    out = []
    while len(out) < n:
        c = prefix + "".join(rng.choice(alphabet, 3 - len(prefix)))
        if c not in taken:
            taken.add(c)
            out.append(c)
    return out


def _trusts(rng) -> pd.DataFrame:
    taken: set[str] = set()
    rows = []
    # acute: sizes (analysis admissions a year at full scale); left-skewed body, long right tail
    q = (np.arange(N_ACUTE) + 0.5) / N_ACUTE
    from statistics import NormalDist
    z = np.array([NormalDist().inv_cdf(x) for x in q])
    size = 52_800 * np.exp(np.where(z < 0, 0.55 * z, 0.28 * z))
    size[0], size[-1] = 12_188, 155_809
    size = size * (FULL_SCALE / 5.5 / size.sum())
    rng.shuffle(size)
    region = rng.choice(len(REGIONS), N_ACUTE, p=REGION_WEIGHT / REGION_WEIGHT.sum())
    kinds = [("acute", N_ACUTE, "R"), ("specialist", 72, "R"), ("mental_health", 24, "R"),
             ("community", 12, "5"), ("independent", 16, "N")]
    names_used: set[str] = set()
    for kind, n, prefix in kinds:
        codes = _code3(rng, n, prefix, taken)
        for i in range(n):
            while True:
                town = TOWNS[rng.integers(len(TOWNS))]
                second = TOWNS[rng.integers(len(TOWNS))]
                base = town if rng.random() < 0.6 else f"{town} and {second}"
                suffix = {"acute": rng.choice(["Hospitals NHS Trust", "Hospital NHS Foundation Trust",
                                               "University Hospitals NHS Trust", "General Hospital NHS Trust"]),
                          "specialist": rng.choice(["Heart and Chest Hospital NHS Trust",
                                                    "Orthopaedic Hospital NHS Foundation Trust",
                                                    "Children's Hospital NHS Trust", "Cancer Centre NHS Trust",
                                                    "Eye Hospital NHS Foundation Trust", "Women's Hospital NHS Trust"]),
                          "mental_health": "Mental Health NHS Trust",
                          "community": "Community Health Services",
                          "independent": rng.choice(["Private Hospital", "Independent Treatment Centre"])}[kind]
                name = f"{base} {suffix}"
                if name not in names_used:
                    names_used.add(name)
                    break
            rows.append((codes[i], name, kind,
                         REGIONS[region[i]] if kind == "acute" else REGIONS[rng.integers(len(REGIONS))],
                         float(size[i]) if kind == "acute" else 0.0))
    t = pd.DataFrame(rows, columns=["PROCODE3", "NAME", "TYPE", "REGION", "SIZE"])
    return t


# ---------------------------------------------------------------- codes

def _codes(ref, lookup, charlson, rng) -> dict:
    """Code vocabularies: primary codes per group, Charlson codes per condition, fillers."""
    gc = ref.group_codes(lookup, rng=np.random.default_rng(int(rng.integers(2**31))))
    norm = ref.normalise_code
    char = charlson.copy()
    char["PREFIX"] = char["PREFIX"].astype(str).str.upper().str.replace(".", "", regex=False)
    prefixes = tuple(sorted(set(char.PREFIX)))
    allcodes = sorted({norm(c) for cs in gc.values() for c in cs} |
                      {norm(c) for c in lookup.codes.CODE.astype(str) if len(str(c)) >= 3})
    allcodes = [c for c in allcodes if c and re.fullmatch(r"[A-Z][0-9]{2}[0-9X]", c)]
    filler = [c for c in allcodes if not c.startswith(prefixes) and c != "Z515"]
    conds = list(dict.fromkeys(char.CONDITION))
    cond_weight = {c: int(char.loc[char.CONDITION == c, "WEIGHT"].iloc[0]) for c in conds}
    cond_codes = {}
    for c in conds:
        cs = []
        for p in char.loc[char.CONDITION == c, "PREFIX"]:
            m = [x for x in allcodes if x.startswith(p)]
            cs.extend(m if m else [p + ("X" if len(p) == 3 else "")][:1])
        cond_codes[c] = sorted(set(x for x in cs if len(x) == 4))
    codes_by_group = {int(k): sorted({norm(c) for c in v}) for k, v in gc.items()}
    for k, v in codes_by_group.items():  # the generator relies on the lookup agreeing
        bad = [c for c in v if lookup.group_of(c) != k]
        if bad:
            raise ValueError(f'group_codes gave {bad[:3]} for group {k}')
    # unmapped primary codes for the invalid group: shaped like codes, absent from the lookup
    invalid = [c for c in ["U999", "U509", "U829", "U071", "U049", "Y99X", "W999", "V999", "X999"]
               if lookup.group_of(c) is None][:5]
    return {"group_codes": codes_by_group,
            "filler": filler, "conditions": conds, "cond_weight": cond_weight,
            "cond_codes": cond_codes, "invalid": invalid, "prefixes": prefixes}


# ---------------------------------------------------------------- Charlson combos

COND_PREV = {"copd": .25, "diab": .25, "chf": .12, "cevd": .08, "canc": .12, "rend": .12,
             "dementia": .08, "ami": .06, "pvd": .05, "rheumd": .04, "metacanc": .04, "mld": .02,
             "pud": .02, "msld": .01, "hp": .02, "aids": .004, "diabwc": .06}


def charlson_combos(conds: list[str], weights: dict) -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
    """All condition sets of size 1-3 with their probability weight, SHMI score and band."""
    from itertools import combinations
    prev = {c: COND_PREV.get(c, 0.02) for c in conds}
    combos, w, score = [], [], []
    for k, pen in ((1, 1.0), (2, 0.45), (3, 0.2)):
        for cmb in combinations(conds, k):
            combos.append(cmb)
            w.append(pen * np.prod([prev[c] for c in cmb]))
            score.append(max(0, sum(weights[c] for c in cmb)))
    score = np.array(score)
    band = np.where(score == 0, 0, np.where(score <= 5, 1, 2))
    return combos, np.array(w), score, band


def new_seedseq(seed: int, *key: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(entropy=int(seed), spawn_key=tuple(int(k) for k in key))


# ---------------------------------------------------------------- build

def build_world(seed: int, n: int, start: date = date(2005, 4, 1), end: date = date(2010, 9, 30),
                pilot: int = 300_000) -> World:
    from shmi_spark.synth import patients  # pilot sampling uses the generator itself
    ref, lookup, charlson = load_references()
    rng = np.random.default_rng(new_seedseq(seed, 0))
    trusts = _trusts(rng)
    groups = _groups(lookup, rng)
    codes = _codes(ref, lookup, charlson, rng)
    groups = groups[groups.DIAG_GROUP.isin(codes["group_codes"])].reset_index(drop=True)
    G = len(groups) + 1  # + invalid group at index 0
    group_ids = np.concatenate([[0], groups.DIAG_GROUP.to_numpy()])
    perinatal = np.concatenate([[False], groups.PROFILE.eq("neonatal").to_numpy()])
    # P(group | age band, sex)
    sizes = np.concatenate([[0.0], groups.SIZE.to_numpy()])
    prof = np.zeros((G, 20))
    sexw = np.ones((G, 2))
    for i, r in enumerate(groups.itertuples(), start=1):
        prof[i] = _age_profile(r.PROFILE, r.SLOPE)
        if r.PROFILE in ("maternity", "female"):
            sexw[i] = [0.0 if r.PROFILE == "maternity" or "breast" not in r.LABEL.lower() else 0.01, 1.0]
        elif r.PROFILE == "male":
            sexw[i] = [1.0, 0.0]
    elective = np.concatenate([[0.1], groups.ELECTIVE.to_numpy()])
    rates = np.concatenate([[0.03], groups.RATE.to_numpy()])
    W = (end - start).days
    params = {"seed": seed, "n": n, "start": start.isoformat(), "end": end.isoformat(), "version": VERSION}
    # shared effects (initial values, raked below)
    age_mid = AGE_MID.copy()
    A = np.concatenate([0.075 * (age_mid[:20] - 67.0), [0.0]])
    A[0] = -1.5; A[1] = -4.0
    shared = {
        "AGE_BAND": A,
        "SEX_CAT": np.array([0.0, -0.13, 0.0]),
        "ADMIMETH_CAT": np.array([-1.6, 0.0, -0.6]),
        "ADM_MONTH": 0.08 * np.cos(2 * np.pi * (np.arange(12)) / 12.0),
        "DIS_FYEAR": -0.03 * np.arange(6),
        "CHARLSON_BAND": np.array([0.0, 0.35, 1.3]),
        "BIRWEIT_BAND": np.array([2.8, 1.2, 0.0, 0.3, 0.6]),
    }
    sds = {"AGE_BAND": 0.12, "SEX_CAT": 0.08, "ADMIMETH_CAT": 0.25, "ADM_MONTH": 0.03,
           "DIS_FYEAR": 0.03, "CHARLSON_BAND": 0.2, "BIRWEIT_BAND": 0.25}
    dev = {}
    for term, v in shared.items():
        d = rng.normal(0, sds[term], (G, len(v)))
        dev[term] = d
    dev["CHARLSON_BAND"][0] = 0.0
    shared_c = {k: v.copy() for k, v in shared.items()}
    alpha = _logit(rates)
    # trust-year effects and planted outliers
    acute = trusts.index[trusts.TYPE == "acute"].to_numpy()
    Ta = len(acute)
    persistent = rng.normal(0, 0.05, Ta)
    annual = rng.normal(0, 0.04, (Ta, 6))
    trust_year = persistent[:, None] + annual
    excess = np.zeros((Ta, 6))
    big = np.argsort(-trusts.SIZE.to_numpy()[acute])[:40]
    slots = rng.choice(big, len({s for s, _ in OUTLIER_PATTERN}), replace=False)
    world = World(seed=seed, n=n, start=start, end=end, W=W, trusts=trusts, groups=groups,
                  group_ids=group_ids, group_cum=np.zeros((40, G)), elective_p=elective,
                  perinatal=perinatal, alpha=alpha, shared=shared_c, dev=dev,
                  trust_year=trust_year, excess=excess,
                  patient_cell_w=np.ones((11, 2)), mean_extra_spells=np.ones(11),
                  codes=codes, params=params)
    world.params["charlson_combos"] = charlson_combos(codes["conditions"], codes["cond_weight"])
    # patients: T2 cell weights (patients) from Table 2 spell counts / spells per patient
    tgt = calibration_targets()
    t2 = tgt[(tgt.table == "T2") & ~tgt.level.isin(["total", "missing"])]
    spells_cell = np.stack([t2[t2.sex == "M"].admissions.to_numpy(), t2[t2.sex == "F"].admissions.to_numpy()], 1)
    mean_extra = np.array([0.35, 0.6, 0.5, 0.6, 0.7, 0.9, 1.2, 1.6, 2.0, 2.4, 2.6])
    world.mean_extra_spells = mean_extra
    world.patient_cell_w = spells_cell / (1.0 + mean_extra)[:, None]
    # group choice table
    _set_group_table(world, sizes, prof, sexw)
    # planted outliers: need E deaths per trust-year; from the pilot
    world.params.update({"outlier_slots": [int(acute[s]) for s in slots]})
    _calibrate(world, pilot, sizes, prof, sexw, slots)
    return world


def _set_group_table(world, sizes, prof, sexw):
    G = len(sizes)
    cum = np.zeros((40, G))
    for s in range(2):
        for a in range(20):
            w = sizes * prof[:, a] * sexw[:, s]
            w[0] = 0.0012 * w.sum()  # invalid primary diagnosis
            cum[s * 20 + a] = np.cumsum(w) / w.sum()
    cum[:, -1] = 1.0
    world.group_cum = cum


def _calibrate(world: World, pilot: int, sizes, prof, sexw, slots) -> None:
    """Rake the shared effects on a pilot sample so the world reproduces Tables 2-3."""
    from shmi_spark.synth import patients
    tgt = calibration_targets()
    t2 = tgt[tgt.table == "T2"]
    age_rate = np.zeros(12)
    for i, b in enumerate(T2_NAMES):
        r = t2[t2.level == b]
        age_rate[i] = r.deaths.sum() / r.admissions.sum()
    sex_rate = np.array([t2[(t2.level == "total") & (t2.sex == s)].pct_died.iloc[0] for s in "MF"]) / 100
    sex_rate = np.array([765740 / 18354171, 812641 / 18128433])
    t3 = tgt[tgt.table == "T3"]
    adm_rate = np.array([76748 / 9057433, 1501055 / 27395986, 847 / 35274])
    ch_rate = np.array([507279 / 25935482, 192125 / 4702488, 879246 / 5850723])
    ch_share = np.array([25935482, 4702488, 5850723]) / 36488693
    adm_share_el = 9057433 / (9057433 + 27395986)
    rng = np.random.default_rng(new_seedseq(world.seed, 1))
    # two passes: (1) demographic / case-mix shares, (2) death rates
    for it in range(3):
        sp = patients.pilot_spells(world, rng_seed=new_seedseq(world.seed, 2, it), n=pilot)
        # admissions by T2 cell → adjust patient weights
        cnt = np.zeros((12, 3))
        np.add.at(cnt, (T2_OF_AGE[sp["age_true"]], sp["sex_true"]), 1)
        t2c = t2[~t2.level.isin(["total", "missing"])]
        target = np.stack([t2c[t2c.sex == "M"].admissions.to_numpy(), t2c[t2c.sex == "F"].admissions.to_numpy()], 1)
        have = cnt[:11, :2] / cnt[:11, :2].sum()
        want = target / target.sum()
        world.patient_cell_w = world.patient_cell_w * (want / np.maximum(have, 1e-9)) ** 0.9
        # elective share: shift group elective logits
        el = (sp["adm"] == 0).mean() / max((sp["adm"] < 2).mean(), 1e-9)
        world.elective_p = _sigmoid(_logit(world.elective_p) + (_logit(adm_share_el) - _logit(el)))
        # Charlson band shares: P(band>0 | age) = sigmoid(a + 0.9 z), P(>5 | >0) = sigmoid(b + 0.6 z)
        z = patients.charlson_z(sp["age_years"])
        for _ in range(30):
            p0 = _sigmoid(world.charlson_a + 1.1 * z)
            p2 = _sigmoid(world.charlson_b + 0.5 * z)
            s_pos, s_hi = p0.mean(), (p0 * p2).mean()
            world.charlson_a += _logit(1 - ch_share[0]) - _logit(s_pos)
            world.charlson_b += _logit(ch_share[2] / (1 - ch_share[0])) - _logit(s_hi / s_pos)
    sp = patients.pilot_spells(world, rng_seed=new_seedseq(world.seed, 3), n=pilot)
    p = _sigmoid(patients.linear_predictor(world, sp))
    # every group at least ~700 deaths over the window at full scale: raise small groups' sizes
    G = len(world.group_ids)
    dg = np.bincount(sp["g"], weights=p, minlength=G) * FULL_SCALE / len(p)
    boost = np.ones(G)
    low = (dg < 700) & (np.arange(G) > 0)
    boost[low] = np.minimum(700 / np.maximum(dg[low], 1.0), 12.0)
    if low.any():
        _set_group_table(world, sizes * boost, prof, sexw)
        sp = patients.pilot_spells(world, rng_seed=new_seedseq(world.seed, 4), n=pilot)
    world.params["group_size_boost"] = {int(world.group_ids[i]): round(float(boost[i]), 4) for i in np.nonzero(low)[0]}
    sh = world.shared
    # deaths: rake AGE (T2 bands), SEX, ADMIMETH, CHARLSON
    t2i = T2_OF_AGE[sp["age"]]
    for it in range(40):
        eta = patients.linear_predictor(world, sp)
        p = _sigmoid(eta)
        for i in range(12):
            m = t2i == i
            if m.any():
                sh["AGE_BAND"][T2_BANDS[T2_NAMES[i]]] += 0.8 * (_logit(age_rate[i]) - _logit(p[m].mean()))
        p = _sigmoid(patients.linear_predictor(world, sp))
        for s in range(2):
            m = sp["sex"] == s
            sh["SEX_CAT"][s] += 0.8 * (_logit(sex_rate[s]) - _logit(p[m].mean()))
        p = _sigmoid(patients.linear_predictor(world, sp))
        for a in range(3):
            m = sp["adm"] == a
            if m.any():
                sh["ADMIMETH_CAT"][a] += 0.8 * (_logit(adm_rate[a]) - _logit(p[m].mean()))
        p = _sigmoid(patients.linear_predictor(world, sp))
        for c in range(3):
            m = sp["charl"] == c
            sh["CHARLSON_BAND"][c] += 0.8 * (_logit(ch_rate[c]) - _logit(p[m].mean()))
    # keep the reference level of each term at 0 in the shared effects (move into alpha)
    p = _sigmoid(patients.linear_predictor(world, sp))
    # IMD fifth: P(fifth | patient) ∝ w_f exp(theta_f * zage); match Table 3 shares and rates
    t3i = t3[t3.variable == "imd_fifth"]
    imd_share = t3i.admissions.to_numpy() / t3i.admissions.sum()
    imd_rate = t3i.deaths.to_numpy() / t3i.admissions.to_numpy()
    za = (np.clip(sp["age_years"], 0, 100) - 55.0) / 25.0
    w, th = np.ones(6) / 6, np.zeros(6)
    for _ in range(200):
        lw = np.log(w)[None, :] + th[None, :] * za[:, None]
        P = np.exp(lw - lw.max(1, keepdims=True)); P /= P.sum(1, keepdims=True)
        share = P.mean(0)
        rate = (P * p[:, None]).sum(0) / P.sum(0)
        w = w * (imd_share / share)
        th = th + 0.5 * (_logit(imd_rate) - _logit(rate))
    world.imd_w, world.imd_theta = w / w.sum(), th
    # planted outliers: log-OR large enough to be flagged above the 99.8% limit at this N
    acute = world.trusts.index[world.trusts.TYPE == "acute"].to_numpy()
    share_t = world.trusts.SIZE.to_numpy()[acute] / world.trusts.SIZE.to_numpy()[acute].sum()
    deaths_year = p.mean() * world.n / 5.5
    tau2 = 0.065 ** 2
    for slot, years in OUTLIER_PATTERN:
        t = slots[slot]
        E = max(share_t[t] * deaths_year, 1.0)
        need = 3.090232 * np.sqrt(1.0 / E + tau2) + 2.5 * np.sqrt(1.0 / E)
        lor = float(np.clip(need * 1.1, 0.30, 1.2))
        for y in years:
            world.excess[t, y - 2005] = lor
    world.trust_year = world.trust_year + world.excess
    world.params["calibration"] = {
        "pilot_spells": int(len(p)), "pilot_pct_died": float(100 * p.mean()),
        "charlson_a": world.charlson_a, "charlson_b": world.charlson_b}
