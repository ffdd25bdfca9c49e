"""Spells → HES APC episode rows as a pyarrow table of strings (METHOD.md §1 field names).

Each spell of a chunk's spell table (:mod:`.spells`) becomes one or more
consultant episodes with the HES fields the pipeline reads (``docs/tables.md``):
dates cut from the spell, coded fields (STARTAGE, SEX, ADMIMETH, ADMISORC,
DISMETH, DISDEST, CLASSPAT, EPISTAT, IMD04_DECILE, BIRWEIT_1, TRETSPEF) drawn to
agree with the spell's covariates, and up to 20 diagnoses (the primary from the
spell's group; secondaries with the Charlson conditions, Z51.5 and fillers).
Codes and dates are indices into fixed vocabularies, turned into strings with
``pyarrow.compute.take``; ids are fixed-width strings built from byte buffers.

Planted problems (see :mod:`.dirty`): dirty diagnosis spellings; invalid covariate
codes (``SEX``, ``ADMIMETH``, ``STARTAGE``, ``CLASSPAT``) on a few episode rows of
analysis spells whose truth is already the covariate's unknown level (or, for
CLASSPAT, an ordinary admission) — METHOD.md §2 makes such a code the unknown level,
not a reject, so the spell stays in with the same covariates; the malformed
values of junk spells (rejected rows); and exact duplicate rows of a few analysis
episodes.  ``info["invalid_codes"]`` counts the invalid values written, per field
and value, once per distinct episode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from shmi_spark.synth.dates import Calendar
from shmi_spark.synth.dirty import (
    IMPOSSIBLE_DATES,
    INVALID_CODES,
    JUNK_KINDS,
    UNKNOWN_PROCODE,
    UNPARSEABLE_DATES,
    code_variants,
    dirty_codes,
    per_kind,
    plant_invalid_codes,
)
from shmi_spark.synth.hsmr import EMERGENCY_SHARE, PALLIATIVE_CODE_SPLIT
from shmi_spark.synth.numeric import position_in_segment, segment_starts
from shmi_spark.synth.spells import ANALYSIS, STILLBIRTH
from shmi_spark.synth.world import World

__all__ = ["COLUMNS", "FIELD_VALUES", "FIELD_INDEX", "BAD_DATES", "Vocabularies", "build_episodes", "hes_ids",
           "hex_ids", "dec_ids", "fixed_strings"]

COLUMNS = (["HESID", "EPIKEY", "PROCODE3", "PROVSPNOPS", "EPIORDER", "EPISTAT", "ADMIDATE", "EPISTART",
            "EPIEND", "DISDATE", "ADMIMETH", "ADMISORC", "DISDEST", "DISMETH", "CLASSPAT", "STARTAGE",
            "SEX"] + [f"DIAG_4_{i:02d}" for i in range(1, 21)] + ["BIRWEIT_1", "IMD04_DECILE", "TRETSPEF"])

#: The values of each coded field; the generator writes indices into these lists.
FIELD_VALUES = {
    "EPISTAT": ["3", "1", "9"],
    "ADMIMETH": ["11", "12", "13", "21", "22", "23", "24", "25", "2A", "2B", "2C", "2D", "28", "31", "32",
                 "81", "82", "83", "84", "89", "98", "99", ""] + INVALID_CODES["ADMIMETH"],
    "ADMISORC": ["19", "29", "39", "49", "50", "51", "52", "53", "54", "65", "66", "79", "85", "87", "88", "98", "99"],
    "DISDEST": ["19", "29", "49", "50", "51", "52", "53", "54", "65", "66", "79", "84", "87", "98", "99"],
    "DISMETH": ["1", "2", "3", "4", "5", "8", "9", ""],
    "CLASSPAT": ["1", "2", "3", "4", "5"] + INVALID_CODES["CLASSPAT"],
    "SEX": ["1", "2", "0", "9", ""] + INVALID_CODES["SEX"],
    "EPIORDER": [f"{i:02d}" for i in range(1, 31)],
    "STARTAGE": ([str(i) for i in range(121)] + [str(7000 + i) for i in range(1, 8)] + ["999", ""]
                 + INVALID_CODES["STARTAGE"]),
    "TRETSPEF": ["300", "100", "110", "320", "340", "430", "420", "424", "501", "370", "800", "130", "101",
                 "120", "301", "315", "560", "180", "330", "361"],
    "IMD04_DECILE": [str(i) for i in range(1, 11)],
    "BIRWEIT_1": [f"{g:04d}" for g in range(350, 6205, 5)],
}
#: value → index in :data:`FIELD_VALUES`, per field
FIELD_INDEX = {field: {value: i for i, value in enumerate(values)} for field, values in FIELD_VALUES.items()}
#: dates that are not dates of the window: HES null placeholders, then the malformed ones of :mod:`.dirty`
BAD_DATES = ["1800-01-01", "1801-01-01"] + IMPOSSIBLE_DATES + UNPARSEABLE_DATES

# indices into FIELD_VALUES used by name below
_STARTAGE_UNDER_1 = 121     # "7001": under 1 day ... "7007": 9-11 months
_STARTAGE_UNKNOWN, _STARTAGE_BLANK = 128, 129
_ADMIMETH_TRANSFER = 15     # "81"
_ADMISORC_BIRTH = 11        # "79"
_DISMETH_NOT_APPLICABLE = 5  # "8": episode not finished
_DISDEST_NOT_APPLICABLE = 13  # "98"
_DISDEST_DIED = 10          # "79"
_TRETSPEF_PALLIATIVE = 15   # "315"

_MIX = np.uint64(0x9E3779B97F4A7C15)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijection on 64-bit integers (opaque, collision-free ids)."""
    z = x.astype(np.uint64) * np.uint64(1) + _MIX
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def fixed_strings(chars: np.ndarray) -> pa.Array:
    """(n, L) uint8 ASCII matrix → pyarrow string array of width L (no copies per row)."""
    n, width = chars.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(chars, dtype=np.uint8)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


_HEX = np.frombuffer(b"0123456789ABCDEF", np.uint8)
_DIGITS = np.frombuffer(b"0123456789", np.uint8)


def hex_ids(x: np.ndarray, width: int = 16) -> pa.Array:
    """Non-negative integers → upper-case hexadecimal strings of ``width`` characters."""
    values = x.astype(np.uint64)
    shifts = np.arange(width - 1, -1, -1, dtype=np.uint64) * np.uint64(4)
    nibbles = ((values[:, None] >> shifts[None, :]) & np.uint64(15)).astype(np.int64)
    return fixed_strings(_HEX[nibbles])


def dec_ids(x: np.ndarray, width: int) -> pa.Array:
    """Non-negative integers → zero-padded decimal strings of ``width`` characters."""
    values = x.astype(np.int64)
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return fixed_strings(_DIGITS[(values[:, None] // powers[None, :]) % 10])


def hes_ids(chunk, person: np.ndarray) -> pa.Array:
    """HESID of each person of a chunk: an opaque 16-character id, unique across chunks."""
    return hex_ids(_mix64((chunk << 32) + person))


@dataclass
class CodeLists:
    """Lists of code indices, one list per row (a group, a Charlson condition), stored flat."""

    length: np.ndarray
    offset: np.ndarray
    values: np.ndarray

    @classmethod
    def of(cls, lists: list[list[int]]) -> CodeLists:
        length = np.array([len(x) for x in lists])
        offset = np.concatenate([[0], np.cumsum(length)[:-1]])
        return cls(length, offset, np.concatenate([np.array(x, np.int64) for x in lists]))

    def at(self, row, k):
        """The ``k``-th code of list ``row``."""
        return self.values[self.offset[row] + k]


class Vocabularies:
    """World-level vocabularies as pyarrow arrays (built once per process)."""

    def __init__(self, world: World, calendar: Calendar):
        self.calendar = calendar
        self.dates = list(calendar.strings) + BAD_DATES
        self.bad_date = {d: len(calendar.strings) + i for i, d in enumerate(BAD_DATES)}
        self.date_arr = pa.array(self.dates, pa.string())
        codes = world.codes
        clean = sorted(set(c for v in codes["group_codes"].values() for c in v) | set(codes["filler"])
                       | set(c for v in codes["condition_codes"].values() for c in v) | set(codes["invalid"])
                       | {"Z515", "P95X"})
        self.n_clean = len(clean)
        self.code_index = {c: i for i, c in enumerate(clean)}
        self.code_arr = pa.array(code_variants(clean), pa.string())
        group_codes = codes["group_codes"]
        #: primary codes of each generator group (group 0: the unmapped codes)
        self.group_codes = CodeLists.of([[self.code_index[c] for c in codes["invalid"]]]
                                        + [[self.code_index[c] for c in group_codes[int(g)]]
                                           for g in world.group_ids[1:]])
        # symptom groups: most codes in chapter R
        self.symptom = np.array([False] + [np.mean([c.startswith("R") for c in group_codes[int(g)]]) > 0.5
                                           for g in world.group_ids[1:]])
        #: codes of each Charlson condition
        self.condition_codes = CodeLists.of([[self.code_index[c] for c in codes["condition_codes"][k]]
                                             for k in codes["conditions"]])
        self.filler = np.array([self.code_index[c] for c in codes["filler"]], np.int64)
        self.z515 = self.code_index["Z515"]
        self.p95 = self.code_index["P95X"]
        procodes = world.trusts.PROCODE3.tolist() + [UNKNOWN_PROCODE]
        self.procode_arr = pa.array(procodes, pa.string())
        self.unknown_procode = len(procodes) - 1
        self.field_arr = {k: pa.array(v, pa.string()) for k, v in FIELD_VALUES.items()}


def _take(arr: pa.Array, index: np.ndarray) -> pa.Array:
    """Strings of ``arr`` at ``index``; a negative index is a null."""
    index = np.asarray(index)
    null = index < 0
    indices = pa.array(np.where(null, 0, index).astype(np.int32), mask=null if null.any() else None)
    return arr.take(indices)


def _pick(rng, n, options, p):
    """``n`` draws from ``options`` with probabilities ∝ ``p``."""
    p = np.asarray(p, float)
    return np.asarray(options)[np.minimum(np.searchsorted(np.cumsum(p / p.sum()), rng.random(n), side="right"),
                                          len(options) - 1)]


@dataclass
class _Episodes:
    """Where each episode sits in its spell."""

    spell: np.ndarray           # spell index of each episode
    order: np.ndarray           # 0-based EPIORDER
    first: np.ndarray           # first episode of its spell
    last: np.ndarray            # last episode of its spell
    per_spell: np.ndarray       # episodes of each spell

    @property
    def n(self) -> int:
        return len(self.spell)


def _dates(rng, voc: Vocabularies, spells: dict, episodes: _Episodes, last_day: int) -> dict:
    """Episode dates as date-vocabulary indices: the spell cut at sorted random fractions.

    Still in hospital: the last episode has no end (sometimes a HES placeholder);
    unfinished episodes (EPISTAT 1/9) keep their dates; some middle episodes carry
    a placeholder DISDATE.  Also ``EPISTAT`` indices, ``open_end`` (no EPIEND)
    and ``fy_day`` (the day giving the row's financial year).
    """
    spell, first, last = episodes.spell, episodes.first, episodes.last
    adm_day, dis_day = spells["adm_day"], spells["dis_day"]
    still_open = dis_day < 0
    dis_effective = np.where(still_open, np.maximum(last_day, adm_day) + 0, dis_day)
    x = rng.exponential(1.0, episodes.n)
    running = np.cumsum(x)
    starts = segment_starts(episodes.per_spell)
    total = np.add.reduceat(x, starts)
    before = np.repeat(running[starts] - x[starts], episodes.per_spell)
    fraction = (running - before) / np.repeat(total, episodes.per_spell)
    fraction[last] = 1.0
    admitted = adm_day[spell]
    span = dis_effective[spell] - admitted
    epiend = admitted + np.floor(span * fraction).astype(np.int64)
    epistart = np.empty(episodes.n, np.int64)
    epistart[0:1] = admitted[0:1]
    epistart[1:] = np.where(first[1:], admitted[1:], epiend[:-1])
    epiend = np.maximum(epiend, epistart)
    last_epistat = spells["last_epistat"][spell]
    epistat = np.where(last, np.where(last_epistat == 3, 0, np.where(last_epistat == 1, 1, 2)), 0)
    open_end = last & still_open[spell]
    index = voc.calendar.index
    epiend_index = np.where(open_end, -1, index(epiend))
    placeholder = open_end & (rng.random(episodes.n) < 0.2)
    epiend_index = np.where(placeholder, voc.bad_date["1801-01-01"], epiend_index)
    disdate_index = np.where(last & ~still_open[spell], index(dis_day[spell]), -1)
    placeholder = ~last & (rng.random(episodes.n) < 0.05)
    disdate_index = np.where(placeholder, voc.bad_date["1800-01-01"], disdate_index)
    return {"ADMIDATE": index(admitted), "EPISTART": index(epistart), "EPIEND": epiend_index,
            "DISDATE": disdate_index, "EPISTAT": epistat, "open_end": open_end,
            "still_open": still_open[spell], "epistart_day": epistart,
            "fy_day": np.where(open_end, epistart, epiend)}


def _startage(rng, spells: dict, episodes: _Episodes, epistart_day) -> np.ndarray:
    """STARTAGE indices: years, or the 7001-7007 codes under a year; 999 or blank when unknown."""
    age_days = epistart_day - spells["dob_day"][episodes.spell]
    age_years = np.floor(age_days / 365.25).astype(np.int64)
    under_1 = np.searchsorted(np.array([1, 7, 29, 91, 182, 273]), age_days, side="right")  # 0..6
    startage = np.where(age_years < 1, _STARTAGE_UNDER_1 + np.clip(under_1, 0, 6), np.clip(age_years, 0, 120))
    unknown = spells["age_unknown"][episodes.spell]
    return np.where(unknown, np.where(rng.random(episodes.n) < 0.75, _STARTAGE_UNKNOWN,
                                      np.where(rng.random(episodes.n) < 0.6, _STARTAGE_BLANK, -1)), startage)


def _sex(rng, spells: dict) -> np.ndarray:
    """SEX indices of each spell: 1, 2; unknown as 0, 9 or blank."""
    sex = spells["sex"]
    u = rng.random(len(sex))
    return np.where(sex == 0, 0, np.where(sex == 1, 1, np.where(u < 0.4, 2, np.where(u < 0.8, 3, 4))))


def _admission(rng, world: World, spells: dict):
    """ADMIMETH and ADMISORC indices of each spell, agreeing with its admission method and kind.

    Non-elective: maternity 31/32, births 82/83, ADMIMETH 81 where the spell
    table says so (``admimeth_transfer``), an emergency method 21–28 where it says
    ``emergency`` (analysis spells; the other kinds: :data:`.hsmr.EMERGENCY_SHARE`
    of the rest), else 84, 89 or 98.  ADMISORC 49–53 where ``admisorc_transfer``.
    """
    n = len(spells["kind"])
    admimeth = spells["admimeth"]
    elective = _pick(rng, n, [0, 1, 2], [0.55, 0.25, 0.2])
    emergency_code = _pick(rng, n, [3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [55, 18, 2, 3, 1, 3, 2, 1, 1, 8])
    other_code = _pick(rng, n, [18, 19, 20], [1, 1, 0.5])
    unknown = _pick(rng, n, [21, 22, -1], [0.5, 0.3, 0.2])
    non_elective = admimeth == 1
    maternity = world.maternity[spells["group"]]
    generic = non_elective & ~maternity & ~spells["birth"] & ~spells["admimeth_transfer"]
    emergency = np.where(spells["kind"] == ANALYSIS, spells["emergency"],
                         generic & (rng.random(n) < EMERGENCY_SHARE))
    method = np.where(admimeth == 0, elective,
                      np.where(non_elective, np.where(emergency, emergency_code, other_code), unknown))
    method = np.where(non_elective & maternity, np.where(rng.random(n) < 0.7, 13, 14), method)
    method = np.where(non_elective & spells["birth"], np.where(rng.random(n) < 0.9, 16, 17), method)
    method = np.where(non_elective & spells["admimeth_transfer"], _ADMIMETH_TRANSFER, method)
    old = (spells["adm_day"] - spells["dob_day"]) > 80 * 365
    source = np.where(spells["admisorc_transfer"], _pick(rng, n, [3, 4, 5, 6, 7], [1, 1, 6, 1, 1]),
                      np.where(spells["birth"], _ADMISORC_BIRTH, np.where(old & (rng.random(n) < 0.12), 8, 0)))
    return method, source, old


def _discharge(rng, spells: dict, episodes: _Episodes, still_open, open_end, old):
    """DISMETH and DISDEST indices of each episode (middle episodes: not yet discharged)."""
    n = len(spells["kind"])
    dismeth = spells["dismeth_last"]
    dismeth_last = np.select([dismeth == 1, dismeth == 2, dismeth == 4, dismeth == 5], [0, 1, 3, 4], 2)
    dismeth_middle = _pick(rng, episodes.n, [5, 6, -1, 7], [0.85, 0.05, 0.07, 0.03])
    method = np.where(episodes.last, dismeth_last[episodes.spell], dismeth_middle)
    method = np.where(open_end | (episodes.last & still_open), _DISMETH_NOT_APPLICABLE, method)
    destination_last = np.where(spells["disdest_transfer"], _pick(rng, n, [2, 3, 4, 5, 6], [1, 1, 6, 1, 1]),
                                np.where(dismeth == 4, _DISDEST_DIED, np.where(dismeth == 5, _DISDEST_DIED,
                                         np.where(old & (rng.random(n) < 0.1), 7, 0))))
    destination = np.where(episodes.last & ~still_open, destination_last[episodes.spell], _DISDEST_NOT_APPLICABLE)
    return method, destination


def _imd_decile(rng, spells: dict) -> np.ndarray:
    """IMD04_DECILE index of each spell: HES 1 = most deprived tenth, 10 = least; fifth 0 = least deprived."""
    imd = spells["imd"]
    return np.where(imd >= 5, -1, 2 * (4 - imd) + (rng.random(len(imd)) < 0.5))


def _palliative_codes(rng, spells: dict):
    """Which spells carry Z51.5, which TRETSPEF 315: every palliative spell one or both
    (:data:`.hsmr.PALLIATIVE_CODE_SPLIT`), no other spell either."""
    u = rng.random(len(spells["kind"]))
    z515_only, both, _ = PALLIATIVE_CODE_SPLIT
    palliative = spells["palliative"]
    return palliative & (u < z515_only + both), palliative & (u >= z515_only)


def _treatment_specialty(rng, world: World, spells: dict, episodes: _Episodes, age_at_admission, palliative):
    """TRETSPEF index of each episode: 315 on the last episode of the spells ``palliative`` says."""
    n = len(spells["kind"])
    age = age_at_admission
    maternity = world.maternity[spells["group"]]
    by_spell = np.where(age < 1, np.where(spells["birth"], 7, 6), np.where(age < 16, 6, np.where(maternity, 8, np.where(
        spells["admimeth"] == 0, _pick(rng, n, [1, 2, 11, 12, 13, 9, 10], [3, 3, 2, 2, 1, 1, 1]),
        np.where(age > 75, _pick(rng, n, [5, 0, 2, 3], [4, 4, 1, 1]),
                 _pick(rng, n, [0, 1, 2, 3, 4, 17, 18, 19], [5, 3, 2, 2, 2, 1, 1, 1]))))))
    specialty = by_spell[episodes.spell]
    specialty = np.where(~episodes.first & (rng.random(episodes.n) < 0.3),
                         _pick(rng, episodes.n, [0, 1, 5, 3, 4], [3, 2, 2, 1, 1]), specialty)
    return np.where(episodes.last & palliative[episodes.spell], _TRETSPEF_PALLIATIVE, specialty)


def _primary_diagnoses(rng, world: World, voc: Vocabularies, spells: dict, episodes: _Episodes):
    """Primary diagnosis of each episode; later episodes' primary: the same code, another code of the
    group, or (symptom groups) a code of a different group.  Also the symptom-group spells."""
    n = len(spells["kind"])
    group = spells["group"]
    codes = voc.group_codes
    u = rng.random(n)
    primary = codes.at(group, np.minimum((u * u * codes.length[group]).astype(np.int64), codes.length[group] - 1))
    primary = np.where(spells["kind"] == STILLBIRTH, voc.p95, primary)
    u = rng.random(n)
    other = codes.at(group, np.minimum((u * codes.length[group]).astype(np.int64), codes.length[group] - 1))
    symptom = voc.symptom[group] & (episodes.per_spell > 1) & (rng.random(n) < 0.6)
    n_groups = len(world.group_ids)
    different = rng.integers(1, n_groups, n)
    different = np.where(voc.symptom[different], 1 + (different % (n_groups - 1)), different)
    different_code = codes.at(different, (rng.random(n) * codes.length[different]).astype(np.int64))
    later = np.where(symptom, different_code, np.where(rng.random(n) < 0.7, primary, other))
    return np.where(episodes.first, primary[episodes.spell], later[episodes.spell]), symptom


def _secondary_diagnoses(rng, voc: Vocabularies, spells: dict, age_at_admission, z515):
    """Secondaries of each spell's first episode (spells, 19): Charlson codes, Z51.5 (the spells ``z515``
    says), fillers, shuffled.

    Returns the codes, how many there are and the spells with a second code of a
    condition.  At most 19 codes: no code is ever dropped.
    """
    n = len(spells["kind"])
    conditions = spells["conditions"]
    codes = voc.condition_codes
    has = conditions >= 0
    condition = np.maximum(conditions, 0)
    charlson = np.where(has, codes.at(condition, (rng.random(conditions.shape) * codes.length[condition])
                                      .astype(np.int64)), -1)
    # each condition once: sometimes a second code of the same condition
    second = has[:, 0] & (rng.random(n) < 0.08)
    first_condition = np.maximum(conditions[:, 0], 0)
    second_code = np.where(second, codes.at(first_condition, (rng.random(n) * codes.length[first_condition])
                                            .astype(np.int64)), -1)
    age = age_at_admission
    n_filler = np.minimum(rng.poisson(0.6 + 3.6 * np.clip(age / 85.0, 0, 1.1)), 14)  # 3 + 1 + 1 + 14 = 19
    filler = voc.filler[rng.integers(0, len(voc.filler), (n, 19))]
    filler = np.where(np.arange(19)[None, :] < n_filler[:, None], filler, -1)
    secondary = np.concatenate([charlson, second_code[:, None], np.where(z515, voc.z515, -1)[:, None], filler],
                               axis=1)
    # compact left (stable), keep 19, then shuffle the occupied positions
    key = np.where(secondary >= 0, rng.random(secondary.shape), 2.0)
    order = np.argsort(key, axis=1, kind="stable")
    secondary = np.take_along_axis(secondary, order, axis=1)[:, :19]
    return secondary, (secondary >= 0).sum(1), second


def _diagnoses(rng, world: World, voc: Vocabularies, spells: dict, episodes: _Episodes, age_at_admission, z515):
    """DIAG_4_01..20 code indices of each episode (dirty spellings planted), and counts for ``info``."""
    primary, symptom = _primary_diagnoses(rng, world, voc, spells, episodes)
    diagnoses = np.full((episodes.n, 20), -1, np.int64)
    diagnoses[:, 0] = primary
    secondary, n_secondary, second = _secondary_diagnoses(rng, voc, spells, age_at_admission, z515)
    # later episodes repeat part of the first episode's secondaries (plus, sometimes, a new Charlson code)
    diagnoses[:, 1:] = secondary[episodes.spell]
    keep = np.where(episodes.first, 19, rng.integers(0, 19, episodes.n))
    kept = np.minimum(keep, n_secondary[episodes.spell])
    diagnoses[:, 1:] = np.where(np.arange(19)[None, :] < kept[:, None], diagnoses[:, 1:], -1)
    extra = ~episodes.first & (rng.random(episodes.n) < 0.08)
    if extra.any():
        codes = voc.condition_codes
        condition = rng.integers(0, len(codes.length), episodes.n)
        code = codes.at(condition, (rng.random(episodes.n) * codes.length[condition]).astype(np.int64))
        slot = np.minimum(kept, 18) + 1
        rows = np.nonzero(extra)[0]
        diagnoses[rows, slot[rows]] = code[rows]
    diagnoses = dirty_codes(rng, diagnoses, voc.n_clean)
    return diagnoses, {"n_secondary": n_secondary, "symptom": symptom, "z515": z515, "second": second}


def _malform(rng, voc: Vocabularies, junk, dates: dict, procode):
    """The malformed values of junk rows (single-episode spells), one kind per row (in place)."""
    if not (junk > 0).any():
        return
    kind = {k: i + 1 for i, k in enumerate(JUNK_KINDS)}
    n = len(junk)
    hit = junk == kind["impossible_date"]
    bad = np.array([voc.bad_date[d] for d in IMPOSSIBLE_DATES])[rng.integers(0, 3, n)]
    dates["EPISTART"] = np.where(hit, bad, dates["EPISTART"])
    dates["ADMIDATE"] = np.where(hit, bad, dates["ADMIDATE"])
    hit = junk == kind["unparseable_date"]
    bad = np.array([voc.bad_date[d] for d in UNPARSEABLE_DATES])[rng.integers(0, 3, n)]
    dates["EPIEND"] = np.where(hit, bad, dates["EPIEND"])
    dates["DISDATE"] = np.where(hit, bad, dates["DISDATE"])
    hit = junk == kind["end_before_start"]
    dates["EPIEND"] = np.where(hit, dates["EPISTART"] - 3, dates["EPIEND"])
    dates["DISDATE"] = np.where(hit, dates["EPISTART"] - 3, dates["DISDATE"])
    hit = junk == kind["discharge_before_admission"]
    dates["DISDATE"] = np.where(hit, dates["ADMIDATE"] - 2, dates["DISDATE"])
    hit = junk == kind["unknown_procode"]
    procode[:] = np.where(hit, voc.unknown_procode, procode)


def _plant_invalid_codes(rng, chunk: int, spells: dict, episodes: _Episodes, fields: dict, junk) -> dict:
    """Invalid covariate codes (METHOD.md §2: the covariate's unknown level), written in place in ``fields``.

    Only on rows of analysis spells whose truth already is that unknown level
    (CLASSPAT: an ordinary admission), never on junk rows: every one is on an
    accepted row.  Returns ``{FIELD: {VALUE: rows}}`` of the values written.
    """
    spell = episodes.spell
    analysis = spells["kind"][spell] == ANALYSIS
    candidates = {"SEX": np.nonzero(analysis & (spells["sex"][spell] == 2))[0],
                  "ADMIMETH": np.nonzero(analysis & (spells["admimeth"][spell] == 2))[0],
                  "STARTAGE": np.nonzero(analysis & spells["age_unknown"][spell])[0],
                  "CLASSPAT": np.nonzero(analysis & (fields["CLASSPAT"] == 0))[0]}
    for field, (rows, k) in plant_invalid_codes(rng, chunk, spells["n_analysis"], candidates).items():
        fields[field][rows] = np.array([FIELD_INDEX[field][v] for v in INVALID_CODES[field]], np.int64)[k]
    invalid = {}
    for field, values in INVALID_CODES.items():
        accepted = fields[field][junk == 0]
        invalid[field] = {v: int((accepted == FIELD_INDEX[field][v]).sum()) for v in values
                          if (accepted == FIELD_INDEX[field][v]).any()}
    return invalid


def build_episodes(world: World, voc: Vocabularies, spells: dict, rng: np.random.Generator):
    """Return (table of distinct episodes, partition FY per output row, info incl. ``rows``: output row → episode).

    ``rows`` lists, in output order, the episode of each row written: every
    episode once, and a few analysis episodes twice (exact duplicate rows).
    """
    n_spells = len(spells["kind"])
    chunk = spells["chunk"]
    per_spell = spells["n_episodes"].astype(np.int64)
    order = position_in_segment(per_spell)
    spell = np.repeat(np.arange(n_spells), per_spell)
    episodes = _Episodes(spell, order, order == 0, order == per_spell[spell] - 1, per_spell)
    dates = _dates(rng, voc, spells, episodes, world.last_day)
    startage = _startage(rng, spells, episodes, dates["epistart_day"])
    sex = _sex(rng, spells)[spell]
    admimeth, admisorc, old = _admission(rng, world, spells)
    dismeth, disdest = _discharge(rng, spells, episodes, dates["still_open"], dates["open_end"], old)
    classpat = spells["classpat"][spell]
    imd_decile = _imd_decile(rng, spells)[spell]
    grams = spells["grams"]
    birweit = np.where(grams >= 350, (np.clip(grams, 350, 6200) - 350) // 5, -1)
    birweit = np.where(episodes.first, birweit[spell], -1)
    age_at_admission = (spells["adm_day"] - spells["dob_day"]) / 365.25
    z515, palliative = _palliative_codes(rng, spells)
    specialty = _treatment_specialty(rng, world, spells, episodes, age_at_admission, palliative)
    diagnoses, counts = _diagnoses(rng, world, voc, spells, episodes, age_at_admission, z515)
    junk = spells["junk"][spell]
    procode = spells["trust"][spell].copy()
    _malform(rng, voc, junk, dates, procode)
    fields = {"SEX": sex, "ADMIMETH": admimeth[spell].copy(), "STARTAGE": startage, "CLASSPAT": classpat}
    invalid = _plant_invalid_codes(rng, chunk, spells, episodes, fields, junk)
    field_arr = voc.field_arr
    columns = {
        "HESID": hes_ids(np.int64(chunk), spells["person"][spell]),
        "EPIKEY": dec_ids(np.int64(chunk) * 10**8 + np.arange(episodes.n), 12),
        "PROCODE3": _take(voc.procode_arr, procode),
        "PROVSPNOPS": dec_ids(np.int64(chunk) * 10**7 + spells["spell_no"][spell], 11),
        "EPIORDER": _take(field_arr["EPIORDER"], np.minimum(order, 29)),
        "EPISTAT": _take(field_arr["EPISTAT"], dates["EPISTAT"]),
        **{name: _take(voc.date_arr, dates[name]) for name in ("ADMIDATE", "EPISTART", "EPIEND", "DISDATE")},
        "ADMIMETH": _take(field_arr["ADMIMETH"], fields["ADMIMETH"]),
        "ADMISORC": _take(field_arr["ADMISORC"], admisorc[spell]),
        "DISDEST": _take(field_arr["DISDEST"], disdest), "DISMETH": _take(field_arr["DISMETH"], dismeth),
        "CLASSPAT": _take(field_arr["CLASSPAT"], classpat), "STARTAGE": _take(field_arr["STARTAGE"], startage),
        "SEX": _take(field_arr["SEX"], sex),
    }
    for i in range(20):
        columns[f"DIAG_4_{i + 1:02d}"] = _take(voc.code_arr, diagnoses[:, i])
    columns["BIRWEIT_1"] = _take(field_arr["BIRWEIT_1"], birweit)
    columns["IMD04_DECILE"] = _take(field_arr["IMD04_DECILE"], imd_decile)
    columns["TRETSPEF"] = _take(field_arr["TRETSPEF"], specialty)
    # exact duplicate rows (duplicate EPIKEY) of a few real analysis episodes
    n_duplicates = per_kind(chunk, spells["n_analysis"])
    analysis_episodes = np.nonzero(spells["kind"][spell] == ANALYSIS)[0]
    duplicates = (np.sort(rng.choice(analysis_episodes, min(n_duplicates, len(analysis_episodes)), replace=False))
                  if len(analysis_episodes) else np.zeros(0, np.int64))
    rows = np.sort(np.concatenate([np.arange(episodes.n), duplicates]), kind="stable")
    fy = np.asarray(voc.calendar.fy_of_clipped(dates["fy_day"]))[rows]
    analysis_spell = spells["kind"] == ANALYSIS
    info = {"episodes": episodes.n, "duplicate_epikey": int(len(duplicates)),
            "secondary_mean_first": float(counts["n_secondary"][analysis_spell].mean()) if n_spells else 0.0,
            "symptom_first_episode": int((counts["symptom"] & analysis_spell).sum()),
            "palliative_z515": int((counts["z515"] & analysis_spell).sum()),
            "palliative_tretspef315": int((palliative & analysis_spell).sum()),
            "charlson_duplicate_condition_codes": int((counts["second"] & analysis_spell).sum()),
            "dirty_code_values": int((diagnoses >= voc.n_clean).sum()), "invalid_codes": invalid,
            "rows": rows}
    return pa.table(columns), fy, info
