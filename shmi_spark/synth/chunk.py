"""One chunk of the world: its analysis spells, the excluded kinds and the junk, as one spell table.

:func:`build_chunk` draws a chunk's analysis admissions and outcomes
(:mod:`.patients`), gives them the fields the model does not use (Charlson
condition sets, deprivation fifth, CLASSPAT, DISMETH, number of episodes, ONS
registration), then adds the spells that METHOD.md §2 excludes (day cases,
regular attenders, spells at non-acute trusts, stillbirths, spells still in
hospital, unfinished episodes), the trap of §3 (a day case between a discharge
and the death) and the junk spells of :mod:`.dirty`.  Every array of the
returned spell table (:mod:`.spells`) has one element per provider spell, the
analysis spells first.  People never cross chunks, so each chunk's death
linkage is self-contained.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shmi_spark.synth.dates import Calendar
from shmi_spark.synth.dirty import junk_block
from shmi_spark.synth.numeric import inverse_cdf, position_in_segment, seed_sequence
from shmi_spark.synth.patients import analysis_spells, plant_outcomes
from shmi_spark.synth.spells import (
    DAY_CASE,
    IN_HOSPITAL,
    NO_DATE,
    NON_ACUTE,
    REGULAR,
    STILLBIRTH,
    TRAP_DAYCASE,
    UNFINISHED,
    blank_spells,
)
from shmi_spark.synth.world import AGE_UNKNOWN, World, deprivation_p

__all__ = ["EXTRA_RATES", "ANALYSIS_ONLY", "build_chunk"]

#: spells of the excluded kinds, per analysis admission
EXTRA_RATES = {DAY_CASE: 0.055, REGULAR: 0.022, NON_ACUTE: 0.04, STILLBIRTH: 0.0008,
               IN_HOSPITAL: 0.004, UNFINISHED: 0.0006}
#: columns of the analysis spells only (the first ``n_analysis`` rows of the table)
ANALYSIS_ONLY = ("p_death", "p_casemix", "late_death", "readmitted_30d", "charlson", "age_band", "imd_fifth",
                 "prior_emergency", "post_discharge_excess")
#: CLASSPAT vocabulary indices (see episodes.FIELD_VALUES): "2" day case, "5" mother and baby
_CLASSPAT_DAY_CASE, _CLASSPAT_MOTHER_BABY = 1, 4


def _draw_conditions(world: World, rng, charlson_band):
    """Condition indices (spells, 3) consistent with each spell's Charlson band."""
    combos = world.charlson_combos
    out = np.full((len(charlson_band), 3), -1, np.int64)
    for band in range(3):
        spells = np.nonzero(charlson_band == band)[0]
        members, cumulative = combos.members[band], combos.cumulative[band]
        if band == 0:
            # band 0: nothing, or (1%) a lone "diabetes complications" code (score -1 → 0)
            if len(members):
                lone = spells[rng.random(len(spells)) < 0.01]
                out[lone] = combos.conditions[members[inverse_cdf(cumulative, rng.random(len(lone)))]]
            continue
        out[spells] = combos.conditions[members[inverse_cdf(cumulative, rng.random(len(spells)))]]
    return out


def _deprivation_fifth(world: World, rng, age_years, position):
    """Deprivation fifth index (0-4; 5 unknown) of each patient, by age and (acute position ``position``)
    the home trust's deprivation tilt (the model of :mod:`.calibrate`)."""
    p_fifth = deprivation_p(world, age_years, world.profiles.deprivation[position])
    cumulative = np.cumsum(p_fifth, 1)
    uniforms = rng.random(len(age_years))
    return np.minimum((cumulative < uniforms[:, None]).sum(1), 5)


def _n_episodes(rng, n, los):
    """Episodes of each spell: 1-4, more often 2 when the stay is longer than 10 days."""
    u = rng.random(n)
    n_episodes = 1 + (u < 0.22).astype(np.int64) + (u < 0.06) + (u < 0.012)
    return n_episodes + ((los > 10) & (rng.random(n) < 0.3))


def _analysis_block(world: World, rng, admissions: dict) -> dict:
    """The spell-table columns of the analysis admissions (after :func:`plant_outcomes`)."""
    n = len(admissions["group"])
    conditions = _draw_conditions(world, rng, admissions["charlson"])
    first_spells = np.nonzero(admissions["nth"] == 0)[0]
    imd = _deprivation_fifth(world, rng, admissions["age_years"][first_spells],
                             admissions["acute_position"][first_spells])[admissions["patient"]]
    group = admissions["group"]
    mother_or_baby = (world.perinatal[group] & admissions["birth"]) | world.maternity[group]
    classpat = np.where(mother_or_baby, np.where(rng.random(n) < 0.35, _CLASSPAT_MOTHER_BABY, 0), 0)
    in_hospital = admissions["in_hospital"]
    ons = admissions["died"] & ~(in_hospital & (rng.random(n) < 0.03)) | admissions["late_death"]
    analysis = {
        "kind": np.zeros(n, np.int8), "person": admissions["person"], "trust": admissions["trust"],
        "adm_day": admissions["adm_day"], "dis_day": admissions["dis_day"], "dob_day": admissions["dob_day"],
        "age_unknown": admissions["age_band"] == AGE_UNKNOWN, "sex": admissions["sex"],
        "admimeth": admissions["admimeth"], "group": group, "conditions": conditions, "grams": admissions["grams"],
        "imd": imd, "died": admissions["died"], "in_hospital": in_hospital, "dod_day": admissions["dod_day"],
        "classpat": classpat, "dismeth_last": np.where(in_hospital, 4, np.where(rng.random(n) < 0.025, 2, 1)),
        "n_episodes": _n_episodes(rng, n, admissions["dis_day"] - admissions["adm_day"]),
        "last_epistat": np.full(n, 3), "transfer_in": admissions["transfer_in"],
        "transfer_out": admissions["transfer_out"], "birth": admissions["birth"], "junk": np.zeros(n, np.int64),
        "ons": ons}
    for key in ("emergency", "admimeth_transfer", "admisorc_transfer", "disdest_transfer", "palliative"):
        analysis[key] = admissions[key]
    for key in ("p_death", "p_casemix", "late_death", "readmitted_30d", "charlson", "age_band", "prior_emergency",
                "post_discharge_excess"):
        analysis[key] = admissions[key]
    analysis["imd_fifth"] = imd
    return analysis


class _ExtraSpells:
    """Builds the blocks of the other kinds of spell of a chunk, in the chunk's draw order."""

    def __init__(self, world: World, rng, n: int, analysis: dict):
        self.world, self.rng, self.n, self.analysis = world, rng, n, analysis
        self.last_day = world.last_day
        self.n_people = int(analysis["person"].max()) + 1 if len(analysis["group"]) else 0
        acute = world.acute_trusts()
        self.acute_rows, self.acute_cumulative = acute.rows, np.cumsum(acute.share)

    def count(self, kind: int) -> int:
        return int(round(EXTRA_RATES[kind] * self.n))

    def new_people(self, m: int) -> np.ndarray:
        out = np.arange(self.n_people, self.n_people + m)
        self.n_people += m
        return out

    def random_acute(self, m: int) -> np.ndarray:
        """``m`` acute trusts (rows of world.trusts), ∝ size."""
        return self.acute_rows[inverse_cdf(self.acute_cumulative, self.rng.random(m))]

    def sources(self, m: int) -> np.ndarray:
        """``m`` random analysis spells whose demographics the new spells copy."""
        return self.rng.integers(0, len(self.analysis["group"]), m)

    def same_age(self, sources, day):
        """Day of birth making a spell admitted on ``day`` as old as its source spell was."""
        return day - (self.analysis["adm_day"][sources] - self.analysis["dob_day"][sources])

    def copy(self, sources, m: int, **columns) -> dict:
        """A block copying the demographics of ``sources``, mostly elective, then ``columns`` set."""
        block = blank_spells(m)
        for key in ("dob_day", "sex", "group", "conditions", "imd", "age_unknown"):
            block[key] = self.analysis[key][sources].copy()
        block["admimeth"] = np.where(self.rng.random(m) < 0.9, 0, 1)
        block.update(columns)
        return block

    def day_cases(self) -> dict:
        """Day cases (CLASSPAT 2) at acute trusts."""
        rng, m = self.rng, self.count(DAY_CASE)
        sources = self.sources(m)
        day = rng.integers(0, self.last_day + 1, m)
        block = self.copy(sources, m, kind=np.full(m, DAY_CASE, np.int8), person=self.new_people(m),
                          trust=self.random_acute(m), adm_day=day, dis_day=day,
                          classpat=np.full(m, _CLASSPAT_DAY_CASE))
        block["dob_day"] = self.same_age(sources, day)
        return block

    def regular_attenders(self) -> dict | None:
        """Regular day/night attenders (CLASSPAT 3, 4): 4-12 sessions each, a week or two apart."""
        rng, n_spells = self.rng, self.count(REGULAR)
        sessions_of_patient = []
        total = 0
        while total < n_spells:
            count = min(int(rng.integers(4, 13)), n_spells - total)
            sessions_of_patient.append(count)
            total += count
        if not sessions_of_patient:
            return None
        sessions = np.array(sessions_of_patient, np.int64)
        n_patients = len(sessions)
        sources = np.repeat(self.sources(n_patients), sessions)
        who = np.repeat(self.new_people(n_patients), sessions)
        trust = np.repeat(self.random_acute(n_patients), sessions)
        start = np.repeat(rng.integers(0, max(self.last_day - 12 * 14, 1), n_patients), sessions)
        day = start + position_in_segment(sessions) * rng.integers(7, 15, total)
        block = self.copy(sources, total, kind=np.full(total, REGULAR, np.int8), person=who, trust=trust,
                          adm_day=day, dis_day=day, classpat=np.where(rng.random(total) < 0.8, 2, 3))
        block["admimeth"] = np.zeros(total, np.int64)
        block["dob_day"] = self.same_age(sources, day)
        return block

    def non_acute(self) -> dict:
        """Spells at non-acute trusts (specialist, mental health, community, independent)."""
        rng, m = self.rng, self.count(NON_ACUTE)
        types = self.world.trusts.TYPE.to_numpy()
        non_acute = np.nonzero(types != "acute")[0]
        weight = np.where(types[non_acute] == "specialist", 4.0, 1.0)
        trust = non_acute[inverse_cdf(np.cumsum(weight / weight.sum()), rng.random(m))]
        sources = self.sources(m)
        los = np.minimum(rng.geometric(0.2, m) - 1, 60)
        day = rng.integers(0, self.last_day - 60, m)
        died = (rng.random(m) < 0.015) & (types[trust] == "specialist")
        block = self.copy(sources, m, kind=np.full(m, NON_ACUTE, np.int8), person=self.new_people(m), trust=trust,
                          adm_day=day, dis_day=day + los, died=died, in_hospital=died,
                          dod_day=np.where(died, day + los, NO_DATE), ons=died & (rng.random(m) < 0.97),
                          dismeth_last=np.where(died, 4, 1), n_episodes=_n_episodes(rng, m, los))
        block["admimeth"] = self.analysis["admimeth"][sources]
        block["dob_day"] = self.same_age(sources, day)
        return block

    def stillbirths(self) -> dict:
        """Stillbirths (DISMETH 5) at acute trusts."""
        rng, m = self.rng, max(self.count(STILLBIRTH), 1)
        day = rng.integers(0, self.last_day + 1, m)
        perinatal = np.nonzero(self.world.perinatal)[0]
        return blank_spells(m, kind=np.full(m, STILLBIRTH, np.int8), person=self.new_people(m),
                            trust=self.random_acute(m), adm_day=day, dis_day=day, dob_day=day,
                            sex=rng.integers(0, 2, m), group=rng.choice(perinatal, m), dismeth_last=np.full(m, 5),
                            classpat=np.where(rng.random(m) < 0.5, _CLASSPAT_MOTHER_BABY, 0),
                            grams=np.clip(rng.normal(1500, 800, m), 350, 4500).round(-1).astype(np.int64),
                            birth=np.ones(m, bool))

    def in_hospital(self) -> dict:
        """Still in hospital at the end of the window (no discharge date; last episode unfinished)."""
        rng, m = self.rng, max(self.count(IN_HOSPITAL), 1)
        sources = self.sources(m)
        day = self.last_day - rng.integers(0, 150, m)
        block = self.copy(sources, m, kind=np.full(m, IN_HOSPITAL, np.int8), person=self.new_people(m),
                          trust=self.random_acute(m), adm_day=day, dis_day=np.full(m, -1),
                          n_episodes=np.where(rng.random(m) < 0.3, 2, 1), last_epistat=np.full(m, 1))
        block["admimeth"] = self.analysis["admimeth"][sources]
        block["dob_day"] = self.same_age(sources, day)
        return block

    def unfinished(self) -> dict:
        """Unfinished episodes (EPISTAT 1 or 9) with otherwise complete dates."""
        rng, m = self.rng, max(self.count(UNFINISHED), 1)
        sources = self.sources(m)
        day = rng.integers(0, self.last_day - 30, m)
        los = rng.integers(0, 20, m)
        block = self.copy(sources, m, kind=np.full(m, UNFINISHED, np.int8), person=self.new_people(m),
                          trust=self.random_acute(m), adm_day=day, dis_day=day + los,
                          last_epistat=np.where(rng.random(m) < 0.5, 1, 9))
        block["admimeth"] = self.analysis["admimeth"][sources]
        block["dob_day"] = self.same_age(sources, day)
        return block

    def traps(self, admissions: dict) -> dict:
        """A day case of the same person between an acute discharge and the death (≤ 30 days)."""
        days_to_death = admissions["dod_day"] - admissions["dis_day"]
        n = len(admissions["group"])
        spells = np.nonzero(admissions["died"] & ~admissions["in_hospital"] & (days_to_death >= 2)
                            & (self.rng.random(n) < 0.05))[0]
        day = admissions["dis_day"][spells] + days_to_death[spells] // 2
        spells, day = spells[day <= self.last_day], day[day <= self.last_day]
        m = len(spells)
        block = self.copy(spells, m, kind=np.full(m, TRAP_DAYCASE, np.int8), person=admissions["person"][spells],
                          trust=admissions["trust"][spells], adm_day=day, dis_day=day,
                          classpat=np.full(m, _CLASSPAT_DAY_CASE))
        block["imd"] = self.analysis["imd"][spells]
        return block


def build_chunk(world: World, calendar: Calendar, chunk: int, n: int) -> dict:
    """The spell table of chunk ``chunk`` with ``n`` analysis admissions (stream 10, chunk).

    Besides the columns of :func:`.spells.blank_spells`: the analysis-only
    columns :data:`ANALYSIS_ONLY`, ``n_analysis``, ``n_people``, ``spell_no``
    (0.. in table order) and ``chunk``.
    """
    rng = np.random.default_rng(seed_sequence(world.seed, 10, chunk))
    admissions = analysis_spells(world, rng, n, calendar)
    plant_outcomes(world, rng, admissions)
    analysis = _analysis_block(world, rng, admissions)
    extra = _ExtraSpells(world, rng, n, analysis)
    blocks: list[dict | None] = [analysis, extra.day_cases(), extra.regular_attenders(), extra.non_acute(),
                                 extra.stillbirths(), extra.in_hospital(), extra.unfinished(),
                                 extra.traps(admissions)]
    # junk patients: single-episode spells carrying one malformed field each
    blocks.append(junk_block(world, rng, chunk, n, extra.new_people, extra.random_acute, analysis))
    present = [block for block in blocks if block is not None]
    spells: dict[str, Any] = {key: np.concatenate([block[key] for block in present]) for key in blank_spells(0)}
    for key in ANALYSIS_ONLY:
        spells[key] = analysis[key]
    spells["n_analysis"] = len(admissions["group"])
    spells["n_people"] = extra.n_people
    spells["spell_no"] = np.arange(len(spells["kind"]))
    spells["chunk"] = chunk
    return spells
