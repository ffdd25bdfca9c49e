"""Spells → HES episode rows as a pyarrow table of strings (METHOD.md §1 field names).

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

import numpy as np
import pyarrow as pa

from shmi_spark.synth import dirty
from shmi_spark.synth import patients as P
from shmi_spark.synth.chunk import NO_DATE
from shmi_spark.synth.world import World

COLUMNS = (["HESID", "EPIKEY", "PROCODE3", "PROVSPNOPS", "EPIORDER", "EPISTAT", "ADMIDATE", "EPISTART",
            "EPIEND", "DISDATE", "ADMIMETH", "ADMISORC", "DISDEST", "DISMETH", "CLASSPAT", "STARTAGE",
            "SEX"] + [f"DIAG_4_{i:02d}" for i in range(1, 21)] + ["BIRWEIT_1", "IMD04_DECILE", "TRETSPEF"])

V = {
    "EPISTAT": ["3", "1", "9"],
    "ADMIMETH": ["11", "12", "13", "21", "22", "23", "24", "25", "2A", "2B", "2C", "2D", "28", "31", "32",
                 "81", "82", "83", "84", "89", "98", "99", ""] + dirty.INVALID_CODES["ADMIMETH"],
    "ADMISORC": ["19", "29", "39", "49", "50", "51", "52", "53", "54", "65", "66", "79", "85", "87", "88", "98", "99"],
    "DISDEST": ["19", "29", "49", "50", "51", "52", "53", "54", "65", "66", "79", "84", "87", "98", "99"],
    "DISMETH": ["1", "2", "3", "4", "5", "8", "9", ""],
    "CLASSPAT": ["1", "2", "3", "4", "5"] + dirty.INVALID_CODES["CLASSPAT"],
    "SEX": ["1", "2", "0", "9", ""] + dirty.INVALID_CODES["SEX"],
    "EPIORDER": [f"{i:02d}" for i in range(1, 31)],
    "STARTAGE": ([str(i) for i in range(121)] + [str(7000 + i) for i in range(1, 8)] + ["999", ""]
                 + dirty.INVALID_CODES["STARTAGE"]),
    "TRETSPEF": ["300", "100", "110", "320", "340", "430", "420", "424", "501", "370", "800", "130", "101",
                 "120", "301", "315", "560", "180", "330", "361"],
    "IMD04_DECILE": [str(i) for i in range(1, 11)],
    "BIRWEIT_1": [f"{g:04d}" for g in range(350, 6205, 5)],
}
IX = {k: {v: i for i, v in enumerate(vals)} for k, vals in V.items()}
BAD_DATES = ["1800-01-01", "1801-01-01"] + dirty.IMPOSSIBLE_DATES + dirty.UNPARSEABLE_DATES

_MIX = np.uint64(0x9E3779B97F4A7C15)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijection on 64-bit integers (opaque, collision-free ids)."""
    z = x.astype(np.uint64) * np.uint64(1) + _MIX
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def fixed_strings(chars: np.ndarray) -> pa.Array:
    """(n, L) uint8 ASCII matrix → pyarrow string array of width L (no copies per row)."""
    n, L = chars.shape
    offsets = np.arange(0, (n + 1) * L, L, dtype=np.int32)
    data = np.ascontiguousarray(chars, dtype=np.uint8)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


_HEX = np.frombuffer(b"0123456789ABCDEF", np.uint8)
_DIG = np.frombuffer(b"0123456789", np.uint8)


def hex_ids(x: np.ndarray, width: int = 16) -> pa.Array:
    v = x.astype(np.uint64)
    shifts = np.arange(width - 1, -1, -1, dtype=np.uint64) * np.uint64(4)
    nib = ((v[:, None] >> shifts[None, :]) & np.uint64(15)).astype(np.int64)
    return fixed_strings(_HEX[nib])


def dec_ids(x: np.ndarray, width: int) -> pa.Array:
    v = x.astype(np.int64)
    pw = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return fixed_strings(_DIG[(v[:, None] // pw[None, :]) % 10])


class Vocab:
    """World-level vocabularies as pyarrow arrays (built once per process)."""

    def __init__(self, world: World, cal: P.Calendar):
        self.dates = list(cal.strings) + BAD_DATES
        self.bad_date = {d: len(cal.strings) + i for i, d in enumerate(BAD_DATES)}
        self.date_arr = pa.array(self.dates, pa.string())
        codes = world.codes
        clean = sorted(set(c for v in codes["group_codes"].values() for c in v) | set(codes["filler"])
                       | set(c for v in codes["cond_codes"].values() for c in v) | set(codes["invalid"])
                       | {"Z515", "P95X"})
        self.n_clean = len(clean)
        self.code_index = {c: i for i, c in enumerate(clean)}
        self.code_arr = pa.array(dirty.code_variants(clean), pa.string())
        gc = codes["group_codes"]
        G = len(world.group_ids)
        lists = [[self.code_index[c] for c in codes["invalid"]]] + \
                [[self.code_index[c] for c in gc[int(g)]] for g in world.group_ids[1:]]
        self.g_len = np.array([len(x) for x in lists])
        self.g_off = np.concatenate([[0], np.cumsum(self.g_len)[:-1]])
        self.g_codes = np.concatenate([np.array(x, np.int64) for x in lists])
        # symptom groups: most codes in chapter R
        self.symptom = np.array([False] + [np.mean([c.startswith("R") for c in gc[int(g)]]) > 0.5
                                           for g in world.group_ids[1:]])
        cl = [[self.code_index[c] for c in codes["cond_codes"][k]] for k in codes["conditions"]]
        self.c_len = np.array([len(x) for x in cl])
        self.c_off = np.concatenate([[0], np.cumsum(self.c_len)[:-1]])
        self.c_codes = np.concatenate([np.array(x, np.int64) for x in cl])
        self.filler = np.array([self.code_index[c] for c in codes["filler"]], np.int64)
        self.z515 = self.code_index["Z515"]
        self.p95 = self.code_index["P95X"]
        t = world.trusts.PROCODE3.tolist() + [dirty.UNKNOWN_PROCODE]
        self.procode_arr = pa.array(t, pa.string())
        self.unknown_procode = len(t) - 1
        self.arr = {k: pa.array(v, pa.string()) for k, v in V.items()}


def _take(arr: pa.Array, idx: np.ndarray) -> pa.Array:
    idx = np.asarray(idx)
    mask = idx < 0
    ind = pa.array(np.where(mask, 0, idx).astype(np.int32), mask=mask if mask.any() else None)
    return arr.take(ind)


def _pick(rng, n, options, p):
    p = np.asarray(p, float)
    return np.asarray(options)[np.minimum(np.searchsorted(np.cumsum(p / p.sum()), rng.random(n), side="right"),
                                          len(options) - 1)]


def build_episodes(world: World, voc: Vocab, sp: dict, rng: np.random.Generator):
    """Return (table of distinct episodes, partition FY per output row, info incl. ``rows``: output row → episode)."""
    S = len(sp["kind"])
    W = world.W
    chunk = sp["chunk"]
    ne = sp["n_epi"].astype(np.int64)
    sid = np.repeat(np.arange(S), ne)
    E = len(sid)
    order = P._within(ne)
    first = order == 0
    lastep = order == ne[sid] - 1
    # ---------------- episode dates: cut the spell at sorted fractions
    adm = sp["adm_day"]
    dis = sp["dis"]
    open_ = dis < 0
    dis_eff = np.where(open_, np.maximum(W, adm) + 0, dis)
    x = rng.exponential(1.0, E)
    cs = np.cumsum(x)
    starts = P._segment_starts(ne)
    tot = np.add.reduceat(x, starts)
    before = np.repeat(cs[starts] - x[starts], ne)
    frac = (cs - before) / np.repeat(tot, ne)
    frac[lastep] = 1.0
    a_e = adm[sid]
    span = dis_eff[sid] - a_e
    epiend = a_e + np.floor(span * frac).astype(np.int64)
    epistart = np.empty(E, np.int64)
    epistart[0:1] = a_e[0:1]
    epistart[1:] = np.where(first[1:], a_e[1:], epiend[:-1])
    epiend = np.maximum(epiend, epistart)
    # still in hospital: the last episode has no end; unfinished episodes (EPISTAT 1/9) keep dates
    epistat = np.where(lastep, np.where(sp["last_epistat"][sid] == 3, 0, np.where(sp["last_epistat"][sid] == 1, 1, 2)), 0)
    epiend_null = lastep & open_[sid]
    # ---------------- dates → vocabulary indices
    def di(day):
        return day + P.DATE_PAD

    ADMIDATE = di(a_e)
    EPISTART = di(epistart)
    EPIEND = np.where(epiend_null, -1, di(epiend))
    # a few HES placeholder null dates on still-open episodes
    ph = epiend_null & (rng.random(E) < 0.2)
    EPIEND = np.where(ph, voc.bad_date["1801-01-01"], EPIEND)
    DISDATE = np.where(lastep & ~open_[sid], di(dis[sid]), -1)
    ph2 = ~lastep & (rng.random(E) < 0.05)
    DISDATE = np.where(ph2, voc.bad_date["1800-01-01"], DISDATE)
    fy_day = np.where(epiend_null, epistart, epiend)
    # ---------------- coded fields
    kind = sp["kind"][sid]
    age_days = epistart - sp["dob"][sid]
    age_years = np.floor(age_days / 365.25).astype(np.int64)
    under1 = np.searchsorted(np.array([1, 7, 29, 91, 182, 273]), age_days, side="right")  # 0..6
    STARTAGE = np.where(age_years < 1, 121 + np.clip(under1, 0, 6), np.clip(age_years, 0, 120))
    unk = sp["age_unknown"][sid]
    STARTAGE = np.where(unk, np.where(rng.random(E) < 0.75, 128, np.where(rng.random(E) < 0.6, 129, -1)), STARTAGE)
    sexv = sp["sex"]
    su = rng.random(S)
    SEXs = np.where(sexv == 0, 0, np.where(sexv == 1, 1, np.where(su < 0.4, 2, np.where(su < 0.8, 3, 4))))
    SEX = SEXs[sid]
    # admission method
    a = sp["adm"]
    el = _pick(rng, S, [0, 1, 2], [0.55, 0.25, 0.2])
    ne_ = _pick(rng, S, [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 18, 19, 20], [55, 18, 2, 3, 1, 3, 2, 1, 1, 8, 1, 1, 0.5])
    un = _pick(rng, S, [21, 22, -1], [0.5, 0.3, 0.2])
    AM = np.where(a == 0, el, np.where(a == 1, ne_, un))
    mat = _mat(world, sp["g"])
    AM = np.where((a == 1) & mat, np.where(rng.random(S) < 0.7, 13, 14), AM)
    AM = np.where((a == 1) & sp["birth"], np.where(rng.random(S) < 0.9, 16, 17), AM)
    AM = np.where((a == 1) & sp["transfer_in"], 15, AM)
    old = (adm - sp["dob"]) > 80 * 365
    AS = np.where(sp["transfer_in"], _pick(rng, S, [3, 4, 5, 6, 7], [1, 1, 6, 1, 1]),
                  np.where(sp["birth"], 11, np.where(old & (rng.random(S) < 0.12), 8, 0)))
    dmeth = sp["dismeth_last"]
    DM_last = np.select([dmeth == 1, dmeth == 2, dmeth == 4, dmeth == 5], [0, 1, 3, 4], 2)
    DM_mid = _pick(rng, E, [5, 6, -1, 7], [0.85, 0.05, 0.07, 0.03])
    DISMETH = np.where(lastep, DM_last[sid], DM_mid)
    DISMETH = np.where(epiend_null | (lastep & open_[sid]), 5, DISMETH)
    dd_last = np.where(sp["transfer_out"], _pick(rng, S, [2, 3, 4, 5, 6], [1, 1, 6, 1, 1]),
                       np.where(dmeth == 4, 10, np.where(dmeth == 5, 10,
                                np.where(old & (rng.random(S) < 0.1), 7, 0))))
    DISDEST = np.where(lastep & ~open_[sid], dd_last[sid], 13)
    CLASSPAT = sp["classpat"][sid]
    EPISTAT = epistat
    IMD = sp["imd"]
    # HES IMD04_DECILE: 1 = most deprived tenth, 10 = least; fifth index 0 = least deprived
    dec = np.where(IMD >= 5, -1, 2 * (4 - IMD) + (rng.random(S) < 0.5))
    IMD04 = dec[sid]
    BW = np.where(sp["grams"] >= 350, (np.clip(sp["grams"], 350, 6200) - 350) // 5, -1)
    BIRWEIT = np.where(first, BW[sid], -1)
    # treatment specialty
    ay = (adm - sp["dob"]) / 365.25
    tret_s = np.where(ay < 1, np.where(sp["birth"], 7, 6), np.where(ay < 16, 6, np.where(mat, 8, np.where(
        a == 0, _pick(rng, S, [1, 2, 11, 12, 13, 9, 10], [3, 3, 2, 2, 1, 1, 1]),
        np.where(ay > 75, _pick(rng, S, [5, 0, 2, 3], [4, 4, 1, 1]),
                 _pick(rng, S, [0, 1, 2, 3, 4, 17, 18, 19], [5, 3, 2, 2, 2, 1, 1, 1]))))))
    TRET = tret_s[sid]
    TRET = np.where(~first & (rng.random(E) < 0.3), _pick(rng, E, [0, 1, 5, 3, 4], [3, 2, 2, 1, 1]), TRET)
    pal = sp["died"] & (rng.random(S) < 0.06 + 0.10 * (ay > 75))
    pal |= ~sp["died"] & (rng.random(S) < 0.001)
    TRET = np.where(lastep & pal[sid], 15, TRET)
    # ---------------- diagnoses
    g = sp["g"]
    u = rng.random(S)
    prim = voc.g_codes[voc.g_off[g] + np.minimum((u * u * voc.g_len[g]).astype(np.int64), voc.g_len[g] - 1)]
    prim = np.where(sp["kind"] == P.STILLBIRTH, voc.p95, prim)
    # later episodes' primary: same code, another code of the group, or (symptom groups) a different group
    u2 = rng.random(S)
    other = voc.g_codes[voc.g_off[g] + np.minimum((u2 * voc.g_len[g]).astype(np.int64), voc.g_len[g] - 1)]
    sym = voc.symptom[g] & (ne > 1) & (rng.random(S) < 0.6)
    gd = rng.integers(1, len(world.group_ids), S)
    gd = np.where(voc.symptom[gd], 1 + (gd % (len(world.group_ids) - 1)), gd)
    diff = voc.g_codes[voc.g_off[gd] + (rng.random(S) * voc.g_len[gd]).astype(np.int64)]
    prim2 = np.where(sym, diff, np.where(rng.random(S) < 0.7, prim, other))
    D = np.full((E, 20), -1, np.int64)
    D[:, 0] = np.where(first, prim[sid], prim2[sid])
    # secondaries of the spell (first episode): Charlson codes, Z515, fillers
    conds = sp["conds"]
    has = conds >= 0
    cc = np.where(has, voc.c_codes[voc.c_off[np.maximum(conds, 0)] +
                                   (rng.random(conds.shape) * voc.c_len[np.maximum(conds, 0)]).astype(np.int64)], -1)
    # each condition once: sometimes a second code of the same condition
    dup = has[:, 0] & (rng.random(S) < 0.08)
    c0 = np.maximum(conds[:, 0], 0)
    cdup = np.where(dup, voc.c_codes[voc.c_off[c0] + (rng.random(S) * voc.c_len[c0]).astype(np.int64)], -1)
    zflag = np.where(sp["died"], rng.random(S) < 0.08 + 0.25 * (ay > 70), rng.random(S) < 0.002)
    nfill = rng.poisson(0.6 + 3.6 * np.clip(ay / 85.0, 0, 1.1))
    fill = voc.filler[rng.integers(0, len(voc.filler), (S, 19))]
    pos = np.arange(19)[None, :]
    fill = np.where(pos < nfill[:, None], fill, -1)
    sec = np.concatenate([cc, cdup[:, None], np.where(zflag, voc.z515, -1)[:, None], fill], axis=1)
    # compact left (stable), keep 19, then shuffle the occupied positions
    key = np.where(sec >= 0, rng.random(sec.shape), 2.0)
    o = np.argsort(key, axis=1, kind="stable")
    sec = np.take_along_axis(sec, o, axis=1)[:, :19]
    nsec = (sec >= 0).sum(1)
    # later episodes repeat part of the first episode's secondaries (plus, sometimes, a new Charlson code)
    D[:, 1:] = sec[sid]
    keep = np.where(first, 19, rng.integers(0, 19, E))
    D[:, 1:] = np.where(np.arange(19)[None, :] < np.minimum(keep, nsec[sid])[:, None], D[:, 1:], -1)
    extra = ~first & (rng.random(E) < 0.08)
    if extra.any():
        ci = rng.integers(0, len(voc.c_len), E)
        ec = voc.c_codes[voc.c_off[ci] + (rng.random(E) * voc.c_len[ci]).astype(np.int64)]
        slot = np.minimum(np.minimum(keep, nsec[sid]), 18) + 1
        rows = np.nonzero(extra)[0]
        D[rows, slot[rows]] = ec[rows]
    D = dirty.dirty_codes(rng, D, voc.n_clean)
    # ---------------- junk rows (single episode spells): malformed values
    jk = sp["junk"][sid]
    PROC = sp["trust"][sid].copy()
    if (jk > 0).any():
        J = {k: i + 1 for i, k in enumerate(dirty.JUNK_KINDS)}
        m = jk == J["impossible_date"]
        bad = np.array([voc.bad_date[d] for d in dirty.IMPOSSIBLE_DATES])[rng.integers(0, 3, E)]
        EPISTART = np.where(m, bad, EPISTART); ADMIDATE = np.where(m, bad, ADMIDATE)
        m = jk == J["unparseable_date"]
        bad = np.array([voc.bad_date[d] for d in dirty.UNPARSEABLE_DATES])[rng.integers(0, 3, E)]
        EPIEND = np.where(m, bad, EPIEND); DISDATE = np.where(m, bad, DISDATE)
        m = jk == J["end_before_start"]
        EPIEND = np.where(m, EPISTART - 3, EPIEND); DISDATE = np.where(m, EPISTART - 3, DISDATE)
        m = jk == J["discharge_before_admission"]
        DISDATE = np.where(m, ADMIDATE - 2, DISDATE)
        m = jk == J["unknown_procode"]
        PROC = np.where(m, voc.unknown_procode, PROC)
    # ---------------- invalid covariate codes (METHOD.md §2: the covariate's unknown level)
    # only on rows of analysis spells whose truth already is that unknown level (CLASSPAT:
    # an ordinary admission), never on junk rows: every one is on an accepted row
    AM_e = AM[sid].copy()
    fields = {"SEX": SEX, "ADMIMETH": AM_e, "STARTAGE": STARTAGE, "CLASSPAT": CLASSPAT}
    ana = kind == P.ANALYSIS
    cand = {"SEX": np.nonzero(ana & (sexv[sid] == 2))[0], "ADMIMETH": np.nonzero(ana & (a[sid] == 2))[0],
            "STARTAGE": np.nonzero(ana & unk)[0], "CLASSPAT": np.nonzero(ana & (CLASSPAT == 0))[0]}
    for f, (r, k) in dirty.plant_invalid_codes(rng, chunk, sp["n_analysis"], cand).items():
        fields[f][r] = np.array([IX[f][v] for v in dirty.INVALID_CODES[f]], np.int64)[k]
    invalid = {}
    for f, vals in dirty.INVALID_CODES.items():
        arr = fields[f][jk == 0]
        invalid[f] = {v: int((arr == IX[f][v]).sum()) for v in vals if (arr == IX[f][v]).any()}
    # ---------------- ids
    hes = hex_ids(_mix64((np.int64(chunk) << 32) + sp["person"][sid]))
    spell_global = (np.int64(chunk) << 28) + sp["spell_no"]
    epi_global = (np.int64(chunk) << 32) + np.arange(E)
    cols = {
        "HESID": hes,
        "EPIKEY": dec_ids(np.int64(chunk) * 10**8 + np.arange(E), 12),
        "PROCODE3": _take(voc.procode_arr, PROC),
        "PROVSPNOPS": dec_ids(np.int64(chunk) * 10**7 + sp["spell_no"][sid], 11),
        "EPIORDER": _take(voc.arr["EPIORDER"], np.minimum(order, 29)),
        "EPISTAT": _take(voc.arr["EPISTAT"], EPISTAT),
        "ADMIDATE": _take(voc.date_arr, ADMIDATE), "EPISTART": _take(voc.date_arr, EPISTART),
        "EPIEND": _take(voc.date_arr, EPIEND), "DISDATE": _take(voc.date_arr, DISDATE),
        "ADMIMETH": _take(voc.arr["ADMIMETH"], AM_e), "ADMISORC": _take(voc.arr["ADMISORC"], AS[sid]),
        "DISDEST": _take(voc.arr["DISDEST"], DISDEST), "DISMETH": _take(voc.arr["DISMETH"], DISMETH),
        "CLASSPAT": _take(voc.arr["CLASSPAT"], CLASSPAT), "STARTAGE": _take(voc.arr["STARTAGE"], STARTAGE),
        "SEX": _take(voc.arr["SEX"], SEX),
    }
    for i in range(20):
        cols[f"DIAG_4_{i + 1:02d}"] = _take(voc.code_arr, D[:, i])
    cols["BIRWEIT_1"] = _take(voc.arr["BIRWEIT_1"], BIRWEIT)
    cols["IMD04_DECILE"] = _take(voc.arr["IMD04_DECILE"], IMD04)
    cols["TRETSPEF"] = _take(voc.arr["TRETSPEF"], TRET)
    # exact duplicate rows (duplicate EPIKEY) of a few real analysis episodes
    ndup = dirty.per_kind(chunk, sp["n_analysis"])
    cand = np.nonzero(kind == P.ANALYSIS)[0]
    dup_rows = np.sort(rng.choice(cand, min(ndup, len(cand)), replace=False)) if len(cand) else np.zeros(0, np.int64)
    rows = np.sort(np.concatenate([np.arange(E), dup_rows]), kind="stable")
    fy = np.asarray(_fy(world, fy_day))[rows]
    table = pa.table(cols)
    info = {"episodes": E, "duplicate_epikey": int(len(dup_rows)), "secondary_mean_first": float(nsec[sp["kind"] == 0].mean()) if S else 0.0,
            "symptom_first_episode": int((sym & (sp["kind"] == 0)).sum()),
            "palliative_z515": int((zflag & (sp["kind"] == 0)).sum()),
            "palliative_tretspef315": int((pal & (sp["kind"] == 0)).sum()),
            "charlson_duplicate_condition_codes": int((dup & (sp["kind"] == 0)).sum()),
            "dirty_code_values": int((D >= voc.n_clean).sum()), "invalid_codes": invalid}
    info["rows"] = rows
    return table, fy, info


def _fy(world, day):
    cal = world.params.get("_cal")
    return cal.fy_of(np.clip(day, -P.DATE_PAD, world.W + P.DATE_AFTER))


def _mat(world, g):
    from shmi_spark.synth.chunk import _is_maternity
    return _is_maternity(world, g)
