"""Planted data problems: dirty code spellings, invalid covariate codes, malformed rows.

Three kinds, each planted where the truth is the same whatever a pipeline does
with them as long as it follows METHOD.md §2:

* **Dirty spellings** of diagnosis codes (dots, lower case, no X filler): the same
  code, so the same group (:func:`dirty_codes`).
* **Invalid covariate codes** (:data:`INVALID_CODES`, :func:`plant_invalid_codes`):
  METHOD.md §2 says an invalid code in a covariate field is that covariate's
  ``unknown`` level, counted per field and value — never a rejected episode.  So
  they are written only on episode rows of *analysis* spells whose truth already is
  the unknown level: ``SEX`` 'Q'/'X'/'3' on spells of unknown sex (instead of
  0/9/blank), ``ADMIMETH`` 'X9'/'ZZ' on spells of unknown admission method (instead
  of 99/blank), ``STARTAGE`` '150'/'abc' on spells of unknown age (instead of
  999/blank), and ``CLASSPAT`` '7' on ordinary (CLASSPAT 1) spells, which stay
  ordinary admissions (an invalid CLASSPAT is "not known": not a day case).  The
  rows are accepted rows, so the truth's ``invalid_codes`` counts every planted
  value once (an exact duplicate of a planted row is rejected as a duplicate).
  About :data:`RATE_PER_KIND` rows per field per analysis admission (at least
  :data:`MIN_PER_KIND_FIRST_CHUNK` in the first chunk when there are candidates),
  far below the 0.5% of a field at which a run fails.
* **Malformed rows** (:data:`JUNK_KINDS`: impossible or unparseable dates, an
  episode ending before it starts, discharge before admission, an unknown
  provider) sit only on junk patients (single-episode spells, no deaths), and
  exact duplicate EPIKEY rows repeat a real episode row — so the truth counts are
  the same whether or not a pipeline rejects them (it must).
"""

from __future__ import annotations

import numpy as np

from shmi_spark.synth.spells import JUNK, blank_spells

__all__ = ["JUNK_KINDS", "DUPLICATE", "IMPOSSIBLE_DATES", "UNPARSEABLE_DATES", "INVALID_CODES", "UNKNOWN_PROCODE",
           "RATE_PER_KIND", "MIN_PER_KIND_FIRST_CHUNK", "DIRTY_CODE_RATE", "per_kind", "plant_invalid_codes",
           "junk_block", "code_variants", "dirty_codes"]

#: junk kinds (the ``junk`` field of a spell; 0 = a clean spell)
JUNK_KINDS = ["impossible_date", "unparseable_date", "end_before_start",
              "discharge_before_admission", "unknown_procode"]
#: the duplicate rows are made at episode level
DUPLICATE = "duplicate_epikey"
IMPOSSIBLE_DATES = ["2007-02-30", "2009-04-31", "2006-06-31"]
UNPARSEABLE_DATES = ["31/13/2007", "abc", "2007/05/12"]
#: invalid codes written on analysis spells whose covariate is already unknown (METHOD.md §2);
#: appended to the field vocabularies of episodes.FIELD_VALUES
INVALID_CODES = {"SEX": ["Q", "X", "3"], "ADMIMETH": ["X9", "ZZ"], "STARTAGE": ["150", "abc"],
                 "CLASSPAT": ["7"]}
UNKNOWN_PROCODE = "ZZ9"
#: malformed rows of each kind, and invalid-code rows of each field, per analysis admission
#: (about 0.01% of rows in all)
RATE_PER_KIND = 0.000015
MIN_PER_KIND_FIRST_CHUNK = 3
#: share of diagnosis values written in a dirty spelling (dots, lower case, no X filler)
DIRTY_CODE_RATE = 0.01


def per_kind(chunk: int, n: int) -> int:
    """Rows of each malformed kind (and of each field's invalid codes) in a chunk of ``n`` analysis admissions."""
    m = int(round(RATE_PER_KIND * n))
    return max(m, MIN_PER_KIND_FIRST_CHUNK) if chunk == 0 else m


def plant_invalid_codes(rng, chunk: int, n: int, candidates: dict) -> dict:
    """Rows and value indices of the invalid codes to write, per field.

    ``candidates[field]``: the episode rows that may carry an invalid value of the
    field (rows of analysis spells whose truth covariate is unknown, or CLASSPAT 1).
    Takes ``per_kind(chunk, n)`` of them (fewer if there are not so many), sorted,
    and gives them the field's invalid values in turn.  Returns
    ``{field: (rows, k)}`` with ``k`` the index into ``INVALID_CODES[field]``.
    """
    out = {}
    for field, values in INVALID_CODES.items():
        cand = candidates[field]
        m = min(per_kind(chunk, n), len(cand))
        rows = np.sort(rng.choice(cand, m, replace=False)) if m else np.zeros(0, np.int64)
        out[field] = (rows, np.arange(m) % len(values))
    return out


def junk_block(world, rng, chunk: int, n: int, new_people, random_acute, analysis: dict) -> dict:
    """The junk spells of a chunk: :func:`per_kind` of each of :data:`JUNK_KINDS`, single-episode spells
    of new people with the demographics of random analysis spells (``analysis``: the analysis block).

    ``new_people(m)`` gives ``m`` new person ids, ``random_acute(m)`` ``m`` acute trusts (rows of
    ``world.trusts``).  The malformed values themselves are written by :mod:`.episodes`.
    """
    m_kind = per_kind(chunk, n)
    m = m_kind * len(JUNK_KINDS)
    source = rng.integers(0, len(analysis["group"]), m)
    day = rng.integers(10, world.last_day - 30, m)
    los = rng.integers(1, 8, m)
    junk = blank_spells(m, kind=np.full(m, JUNK, np.int8), person=new_people(m), trust=random_acute(m),
                        adm_day=day, dis_day=day + los,
                        junk=np.repeat(np.arange(1, len(JUNK_KINDS) + 1), m_kind))
    for key in ("sex", "group", "conditions", "imd", "admimeth"):
        junk[key] = analysis[key][source].copy()
    junk["dob_day"] = day - (analysis["adm_day"][source] - analysis["dob_day"][source])
    junk["age_unknown"] = np.zeros(m, bool)
    return junk


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
