"""One chunk of the world: analysis spells + excluded kinds + junk, as one spell table.

Every array in the returned ``spells`` dict has one element per provider spell.
People never cross chunks, so each chunk's death linkage is self-contained.
"""

from __future__ import annotations

import numpy as np

from shmi_spark.synth import patients as P
from shmi_spark.synth.world import AGE_UNKNOWN, World, _sigmoid, charlson_combos, new_seedseq

NO_DATE = -(1 << 40)


def _combo_tables(world: World):
    key = "_combo_tables"
    if key not in world.params:
        combos, w, score, band = world.params["charlson_combos"]
        conds = world.codes["conditions"]
        arr = np.full((len(combos), 3), -1, np.int64)
        for i, c in enumerate(combos):
            arr[i, :len(c)] = [conds.index(x) for x in c]
        cums = []
        members = []
        for b in range(3):
            m = np.nonzero(band == b)[0]
            if b == 0:
                # band 0: nothing (mostly) or a lone "diabetes complications" code (score -1 → 0)
                m = m if len(m) else np.zeros(0, np.int64)
            members.append(m)
            ww = w[m] if len(m) else np.zeros(0)
            cums.append(np.cumsum(ww) / ww.sum() if len(m) else np.zeros(0))
        world.params[key] = (arr, members, cums, score, band)
    return world.params[key]


def _draw_combo(world, rng, charl):
    """Condition indices (S, 3) consistent with each spell's Charlson band."""
    arr, members, cums, score, band = _combo_tables(world)
    out = np.full((len(charl), 3), -1, np.int64)
    for b in range(3):
        idx = np.nonzero(charl == b)[0]
        if b == 0:
            if len(members[0]):
                lone = idx[rng.random(len(idx)) < 0.01]
                pick = members[0][np.minimum(np.searchsorted(cums[0], rng.random(len(lone)), side="right"),
                                             len(members[0]) - 1)]
                out[lone] = arr[pick]
            continue
        pick = members[b][np.minimum(np.searchsorted(cums[b], rng.random(len(idx)), side="right"),
                                     len(members[b]) - 1)]
        out[idx] = arr[pick]
    return out


def _imd(world: World, rng, age_years):
    za = (np.clip(age_years, 0, 100) - 55.0) / 25.0
    lw = np.log(world.imd_w)[None, :] + world.imd_theta[None, :] * za[:, None]
    Pm = np.exp(lw - lw.max(1, keepdims=True))
    Pm /= Pm.sum(1, keepdims=True)
    c = np.cumsum(Pm, 1)
    u = rng.random(len(age_years))
    return np.minimum((c < u[:, None]).sum(1), 5)


EMPTY = object()


def _blank(n, **over):
    """An extra-spell block with defaults (filled by the kind builders)."""
    d = {"kind": np.zeros(n, np.int8), "person": np.zeros(n, np.int64), "trust": np.zeros(n, np.int64),
         "adm_day": np.zeros(n, np.int64), "dis": np.zeros(n, np.int64), "dob": np.zeros(n, np.int64),
         "age_unknown": np.zeros(n, bool), "sex": np.zeros(n, np.int64), "adm": np.ones(n, np.int64),
         "g": np.ones(n, np.int64), "conds": np.full((n, 3), -1, np.int64), "grams": np.full(n, -1, np.int64),
         "imd": np.full(n, 5, np.int64), "died": np.zeros(n, bool), "inhosp": np.zeros(n, bool),
         "dod": np.full(n, NO_DATE, np.int64), "classpat": np.zeros(n, np.int64),
         "dismeth_last": np.ones(n, np.int64), "n_epi": np.ones(n, np.int64),
         "last_epistat": np.full(n, 3, np.int64), "transfer_in": np.zeros(n, bool),
         "transfer_out": np.zeros(n, bool), "birth": np.zeros(n, bool), "junk": np.zeros(n, np.int64),
         "ons": np.zeros(n, bool)}
    d.update(over)
    return d


def build_chunk(world: World, cal: P.Calendar, chunk: int, n: int) -> dict:
    rng = np.random.default_rng(new_seedseq(world.seed, 10, chunk))
    sp = P.analysis_spells(world, rng, n, cal)
    P.plant_outcomes(world, rng, sp)
    S = len(sp["g"])
    W = world.W
    # ---- analysis block
    conds = _draw_combo(world, rng, sp["charl"])
    first_idx = np.nonzero(sp["j"] == 0)[0]
    imd_pat = _imd(world, rng, sp["age_years"][first_idx])
    imd = imd_pat[sp["pid"]]
    classpat = np.where((world.perinatal[sp["g"]] & sp["birth"]) | _is_maternity(world, sp["g"]),
                        np.where(rng.random(S) < 0.35, 4, 0), 0)  # index 4 → CLASSPAT "5"
    ons = sp["died"] & ~(sp["inhosp"] & (rng.random(S) < 0.03)) | sp["late_death"]
    A = {"kind": np.zeros(S, np.int8), "person": sp["person"], "trust": sp["trust"],
         "adm_day": sp["adm_day"], "dis": sp["dis"], "dob": sp["dob"],
         "age_unknown": sp["age"] == AGE_UNKNOWN, "sex": sp["sex"], "adm": sp["adm"], "g": sp["g"],
         "conds": conds, "grams": sp["grams"], "imd": imd, "died": sp["died"], "inhosp": sp["inhosp"],
         "dod": sp["dod"], "classpat": classpat,
         "dismeth_last": np.where(sp["inhosp"], 4, np.where(rng.random(S) < 0.025, 2, 1)),
         "n_epi": _n_epi(rng, S, sp["dis"] - sp["adm_day"]), "last_epistat": np.full(S, 3),
         "transfer_in": sp["transfer_in"], "transfer_out": sp["transfer_out"], "birth": sp["birth"],
         "junk": np.zeros(S, np.int64), "ons": ons}
    A["p"] = sp["p"]; A["late_death"] = sp["late_death"]; A["readm30"] = sp["readm30"]
    A["charl"] = sp["charl"]; A["age_band"] = sp["age"]; A["imd_fifth"] = imd
    npers = int(sp["person"].max()) + 1 if S else 0
    blocks = [A]
    counts = {}

    def demog(m):
        """Copy demographics of m random analysis spells (age, sex, group, comorbidity)."""
        src = rng.integers(0, S, m)
        return src

    def new_people(m):
        nonlocal npers
        out = np.arange(npers, npers + m)
        npers += m
        return out

    acute, share, rid = P._acute_tables(world)
    acute_cum = np.cumsum(share)

    def rand_acute(m):
        return acute[np.minimum(np.searchsorted(acute_cum, rng.random(m), side="right"), len(acute) - 1)]

    def copy_block(src, m, **over):
        d = _blank(m)
        for key in ("dob", "sex", "g", "conds", "imd", "age_unknown"):
            d[key] = A[key][src].copy()
        d["adm"] = np.where(rng.random(m) < 0.9, 0, 1)
        d.update(over)
        return d

    # day cases (CLASSPAT 2) at acute trusts
    m = int(round(P.EXTRA_RATES[P.DAY_CASE] * n))
    src = demog(m)
    day = rng.integers(0, W + 1, m)
    dc = copy_block(src, m, kind=np.full(m, P.DAY_CASE, np.int8), person=new_people(m), trust=rand_acute(m),
                    adm_day=day, dis=day, classpat=np.full(m, 1))
    dc["dob"] = day - (A["adm_day"][src] - A["dob"][src])
    blocks.append(dc)
    # regular day/night attenders: 4-12 sessions each
    m_sp = int(round(P.EXTRA_RATES[P.REGULAR] * n))
    sessions = []
    tot = 0
    while tot < m_sp:
        s = int(rng.integers(4, 13))
        s = min(s, m_sp - tot)
        sessions.append(s)
        tot += s
    sessions = np.array(sessions, np.int64) if sessions else np.zeros(0, np.int64)
    if len(sessions):
        npat = len(sessions)
        src = np.repeat(demog(npat), sessions)
        who = np.repeat(new_people(npat), sessions)
        tr = np.repeat(rand_acute(npat), sessions)
        start = np.repeat(rng.integers(0, max(W - 12 * 14, 1), npat), sessions)
        day = start + P._within(sessions) * rng.integers(7, 15, tot)
        ra = copy_block(src, tot, kind=np.full(tot, P.REGULAR, np.int8), person=who, trust=tr,
                        adm_day=day, dis=day, classpat=np.where(rng.random(tot) < 0.8, 2, 3))
        ra["adm"] = np.zeros(tot, np.int64)
        ra["dob"] = day - (A["adm_day"][src] - A["dob"][src])
        blocks.append(ra)
    # spells at non-acute trusts (specialist, mental health, community, independent)
    m = int(round(P.EXTRA_RATES[P.NON_ACUTE] * n))
    types = world.trusts.TYPE.to_numpy()
    nonacute = np.nonzero(types != "acute")[0]
    wt = np.where(types[nonacute] == "specialist", 4.0, 1.0)
    tr = nonacute[np.minimum(np.searchsorted(np.cumsum(wt / wt.sum()), rng.random(m), side="right"), len(nonacute) - 1)]
    src = demog(m)
    los = np.minimum(rng.geometric(0.2, m) - 1, 60)
    day = rng.integers(0, W - 60, m)
    na_died = (rng.random(m) < 0.015) & (types[tr] == "specialist")
    na = copy_block(src, m, kind=np.full(m, P.NON_ACUTE, np.int8), person=new_people(m), trust=tr,
                    adm_day=day, dis=day + los, died=na_died, inhosp=na_died,
                    dod=np.where(na_died, day + los, NO_DATE), ons=na_died & (rng.random(m) < 0.97),
                    dismeth_last=np.where(na_died, 4, 1), n_epi=_n_epi(rng, m, los))
    na["adm"] = A["adm"][src]
    na["dob"] = day - (A["adm_day"][src] - A["dob"][src])
    blocks.append(na)
    # stillbirths (DISMETH 5) at acute trusts
    m = max(int(round(P.EXTRA_RATES[P.STILLBIRTH] * n)), 1)
    day = rng.integers(0, W + 1, m)
    peri = np.nonzero(world.perinatal)[0]
    sb = _blank(m, kind=np.full(m, P.STILLBIRTH, np.int8), person=new_people(m), trust=rand_acute(m),
                adm_day=day, dis=day, dob=day, sex=rng.integers(0, 2, m), g=rng.choice(peri, m),
                dismeth_last=np.full(m, 5), classpat=np.where(rng.random(m) < 0.5, 4, 0),
                grams=np.clip(rng.normal(1500, 800, m), 350, 4500).round(-1).astype(np.int64),
                birth=np.ones(m, bool))
    blocks.append(sb)
    # still in hospital at the end of the window (no discharge date; last episode unfinished)
    m = max(int(round(P.EXTRA_RATES[P.IN_HOSPITAL] * n)), 1)
    src = demog(m)
    day = W - rng.integers(0, 150, m)
    ih = copy_block(src, m, kind=np.full(m, P.IN_HOSPITAL, np.int8), person=new_people(m),
                    trust=rand_acute(m), adm_day=day, dis=np.full(m, -1),
                    n_epi=np.where(rng.random(m) < 0.3, 2, 1), last_epistat=np.full(m, 1))
    ih["adm"] = A["adm"][src]
    ih["dob"] = day - (A["adm_day"][src] - A["dob"][src])
    blocks.append(ih)
    # unfinished episodes (EPISTAT 1 or 9) with otherwise complete dates
    m = max(int(round(P.EXTRA_RATES[P.UNFINISHED] * n)), 1)
    src = demog(m)
    day = rng.integers(0, W - 30, m)
    los = rng.integers(0, 20, m)
    uf = copy_block(src, m, kind=np.full(m, P.UNFINISHED, np.int8), person=new_people(m),
                    trust=rand_acute(m), adm_day=day, dis=day + los,
                    last_epistat=np.where(rng.random(m) < 0.5, 1, 9))
    uf["adm"] = A["adm"][src]
    uf["dob"] = day - (A["adm_day"][src] - A["dob"][src])
    blocks.append(uf)
    # trap: a day case of the same person between an acute discharge and the death (≤ 30 days)
    d = sp["dod"] - sp["dis"]
    cand = np.nonzero(sp["died"] & ~sp["inhosp"] & (d >= 2) & (rng.random(S) < 0.05))[0]
    day = sp["dis"][cand] + d[cand] // 2
    cand, day = cand[day <= W], day[day <= W]
    m = len(cand)
    td = copy_block(cand, m, kind=np.full(m, P.TRAP_DAYCASE, np.int8), person=sp["person"][cand],
                    trust=sp["trust"][cand], adm_day=day, dis=day, classpat=np.full(m, 1))
    td["imd"] = A["imd"][cand]
    blocks.append(td)
    # junk patients: single-episode spells carrying one malformed field each
    from shmi_spark.synth.dirty import junk_block
    jb = junk_block(world, rng, chunk, n, lambda m: new_people(m), rand_acute, A)
    blocks.append(jb)
    # ---- concatenate
    keys = list(_blank(0).keys())
    spells = {k: np.concatenate([b[k] for b in blocks]) for k in keys}
    nA = S
    for k in ("p", "late_death", "readm30", "charl", "age_band", "imd_fifth"):
        spells[k] = A[k]  # analysis-only extras (first nA rows)
    spells["n_analysis"] = nA
    spells["n_people"] = npers
    spells["spell_no"] = np.arange(len(spells["kind"]))
    spells["chunk"] = chunk
    return spells


def _is_maternity(world: World, g):
    lab = world.params.get("_mat")
    if lab is None:
        gl = world.groups.set_index("DIAG_GROUP").PROFILE
        lab = np.array([False] + [gl.get(int(x)) == "maternity" for x in world.group_ids[1:]])
        world.params["_mat"] = lab
    return lab[g]


def _n_epi(rng, S, los):
    u = rng.random(S)
    ne = 1 + (u < 0.22).astype(np.int64) + (u < 0.06) + (u < 0.012)
    ne = ne + ((los > 10) & (rng.random(S) < 0.3))
    return ne
