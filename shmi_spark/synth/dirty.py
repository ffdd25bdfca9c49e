"""Planted data problems: dirty code spellings and malformed rows.

Malformed rows sit only on junk patients (single-episode spells, no deaths),
except exact duplicate EPIKEY rows, which repeat a real episode row — so the
truth counts are the same whether or not a pipeline rejects them (it must).
"""

from __future__ import annotations

import numpy as np

from . import patients as P

#: junk kinds (the ``junk`` field of a spell; 0 = a clean spell)
JUNK_KINDS = ["impossible_date", "unparseable_date", "unknown_code", "end_before_start",
              "discharge_before_admission", "unknown_procode"]
#: the duplicate rows are made at episode level
DUPLICATE = "duplicate_epikey"
IMPOSSIBLE_DATES = ["2007-02-30", "2009-04-31", "2006-06-31"]
UNPARSEABLE_DATES = ["31/13/2007", "abc", "2007/05/12"]
UNKNOWN_CODES = [("CLASSPAT", "7"), ("SEX", "Q"), ("ADMIMETH", "X9")]
UNKNOWN_PROCODE = "ZZ9"
#: malformed rows of each kind per analysis admission (about 0.01% of rows in all)
RATE_PER_KIND = 0.000015
MIN_PER_KIND_FIRST_CHUNK = 3
#: share of diagnosis values written in a dirty spelling (dots, lower case, no X filler)
DIRTY_CODE_RATE = 0.01


def per_kind(chunk: int, n: int) -> int:
    m = int(round(RATE_PER_KIND * n))
    return max(m, MIN_PER_KIND_FIRST_CHUNK) if chunk == 0 else m


def junk_block(world, rng, chunk, n, new_people, rand_acute, A) -> dict:
    from .chunk import _blank
    m_kind = per_kind(chunk, n)
    m = m_kind * len(JUNK_KINDS)
    src = rng.integers(0, len(A["g"]), m)
    day = rng.integers(10, world.W - 30, m)
    los = rng.integers(1, 8, m)
    jb = _blank(m, kind=np.full(m, P.JUNK, np.int8), person=new_people(m), trust=rand_acute(m),
                adm_day=day, dis=day + los, junk=np.repeat(np.arange(1, len(JUNK_KINDS) + 1), m_kind))
    for key in ("sex", "g", "conds", "imd", "adm"):
        jb[key] = A[key][src].copy()
    jb["dob"] = day - (A["adm_day"][src] - A["dob"][src])
    jb["age_unknown"] = np.zeros(m, bool)
    return jb


def code_variants(clean: list[str]) -> list[str]:
    """Vocabulary: clean codes, then 3 dirty spellings of each (same order).

    Block 1: lower case with a dot (``i21.9``); block 2: upper case with a dot
    (``I21.9``); block 3: 3-character form without the X filler (``A09``) for
    X-filled codes, else lower case without a dot (``i219``).
    """
    out = list(clean)
    out += [(c[:3] + "." + c[3]).lower() for c in clean]
    out += [c[:3] + "." + c[3] for c in clean]
    out += [c[:3] if c.endswith("X") else c.lower() for c in clean]
    return out


def dirty_codes(rng, idx: np.ndarray, n_clean: int) -> np.ndarray:
    """Replace ~DIRTY_CODE_RATE of the non-null code indices by a dirty spelling (in place)."""
    flat = idx.reshape(-1)
    nonnull = np.flatnonzero(flat >= 0)
    hit = nonnull[rng.random(len(nonnull)) < DIRTY_CODE_RATE]
    flat[hit] += rng.integers(1, 4, len(hit)) * n_clean
    return idx
