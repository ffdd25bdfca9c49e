"""The spell table of a chunk: the kinds of spell and the columns every spell carries.

The generator's record of a chunk is one dict of equal-length numpy arrays, one
element per provider spell (built by :mod:`.chunk`, turned into episode rows by
:mod:`.episodes`, linked to deaths by :mod:`.truth`).  Every spell has a kind:
an analysis admission (one that survives METHOD.md §2), one of the excluded
kinds of §2 (day cases, regular attenders, spells at non-acute trusts,
stillbirths, spells still open or unfinished), a trap of §3 (a day case between
discharge and death), or a junk spell carrying one malformed field
(:mod:`.dirty`).  :func:`blank_spells` gives the columns and their defaults.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ANALYSIS", "DAY_CASE", "REGULAR", "NON_ACUTE", "STILLBIRTH", "IN_HOSPITAL", "UNFINISHED",
           "TRAP_DAYCASE", "JUNK", "KIND_NAMES", "NO_DATE", "blank_spells"]

# ----------------------------------------------------------------- kinds (the ``kind`` column)
ANALYSIS, DAY_CASE, REGULAR, NON_ACUTE, STILLBIRTH, IN_HOSPITAL, UNFINISHED, TRAP_DAYCASE, JUNK = range(9)
KIND_NAMES = ["analysis", "day_case", "regular_attender", "non_acute_trust", "stillbirth",
              "still_in_hospital", "unfinished_episode", "day_case_before_death", "junk"]

#: the day offset of "no date" (no death)
NO_DATE = -(1 << 40)


def blank_spells(n: int, **columns) -> dict:
    """A block of ``n`` spells with every column at its default, then ``columns`` set.

    Columns (day offsets from the window start; indices into the world's tables
    and the episode vocabularies of :mod:`.episodes`):

    ``kind``, ``person``, ``trust`` (row of ``world.trusts``), ``adm_day``,
    ``dis_day`` (-1: still in hospital), ``dob_day``, ``age_unknown``, ``sex``
    (0 male, 1 female, 2 unknown), ``admimeth`` (0 elective, 1 non-elective,
    2 unknown), ``group`` (generator group index, 0 = the invalid group),
    ``conditions`` (up to 3 Charlson condition indices, -1 none), ``grams``
    (birth weight, -1 none), ``imd`` (fifth index 0-4, 5 unknown), ``died``,
    ``in_hospital``, ``dod_day``, ``classpat`` (CLASSPAT vocabulary index),
    ``dismeth_last`` (DISMETH of the last episode), ``n_episodes``,
    ``last_epistat``, ``transfer_in``, ``transfer_out``, ``birth``, ``junk``
    (1 + index of :data:`shmi_spark.synth.dirty.JUNK_KINDS`, 0 clean), ``ons``
    (has an ONS registration); the codes of :mod:`.hsmr`: ``emergency`` (an
    emergency ADMIMETH, 21–28: analysis spells; the other kinds draw theirs in
    :mod:`.episodes`), ``admimeth_transfer`` (ADMIMETH 81), ``admisorc_transfer``
    (ADMISORC 49–53), ``disdest_transfer`` (DISDEST 49–53), ``palliative``
    (coded Z51.5 and/or TRETSPEF 315).
    """
    spells = {"kind": np.zeros(n, np.int8), "person": np.zeros(n, np.int64), "trust": np.zeros(n, np.int64),
              "adm_day": np.zeros(n, np.int64), "dis_day": np.zeros(n, np.int64), "dob_day": np.zeros(n, np.int64),
              "age_unknown": np.zeros(n, bool), "sex": np.zeros(n, np.int64), "admimeth": np.ones(n, np.int64),
              "group": np.ones(n, np.int64), "conditions": np.full((n, 3), -1, np.int64),
              "grams": np.full(n, -1, np.int64), "imd": np.full(n, 5, np.int64), "died": np.zeros(n, bool),
              "in_hospital": np.zeros(n, bool), "dod_day": np.full(n, NO_DATE, np.int64),
              "classpat": np.zeros(n, np.int64), "dismeth_last": np.ones(n, np.int64),
              "n_episodes": np.ones(n, np.int64), "last_epistat": np.full(n, 3, np.int64),
              "transfer_in": np.zeros(n, bool), "transfer_out": np.zeros(n, bool), "birth": np.zeros(n, bool),
              "junk": np.zeros(n, np.int64), "ons": np.zeros(n, bool), "emergency": np.zeros(n, bool),
              "admimeth_transfer": np.zeros(n, bool), "admisorc_transfer": np.zeros(n, bool),
              "disdest_transfer": np.zeros(n, bool), "palliative": np.zeros(n, bool)}
    spells.update(columns)
    return spells
