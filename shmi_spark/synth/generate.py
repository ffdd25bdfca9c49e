"""Orchestration of ``shmi synth``: world → chunks (optionally in worker processes) → files.

:func:`generate` builds and calibrates the world (:mod:`.calibrate`), makes
each chunk's spells (:mod:`.chunk`), episode rows (:mod:`.episodes`, written
by :mod:`.write` under ``hes_apc/FYEAR=xxyy/``), ONS rows and truth
(:mod:`.truth`), then writes ``ons_deaths/``, ``reference/`` and ``truth/``.
A chunk's numbers depend only on the seed and the chunk's index, so the files
are the same whatever the number of workers.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import shutil
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from shmi_spark.hes.levels import AGE_LEVELS
from shmi_spark.synth import truth
from shmi_spark.synth.calibrate import build_world
from shmi_spark.synth.chunk import EXTRA_RATES, build_chunk
from shmi_spark.synth.dates import DATE_PAD
from shmi_spark.synth.dirty import INVALID_CODES, JUNK_KINDS, per_kind
from shmi_spark.synth.episodes import Vocabularies, build_episodes, hes_ids
from shmi_spark.synth.hsmr import rules as hsmr_rules
from shmi_spark.synth.numeric import seed_sequence
from shmi_spark.synth.spells import (
    DAY_CASE,
    IN_HOSPITAL,
    KIND_NAMES,
    NON_ACUTE,
    REGULAR,
    STILLBIRTH,
    TRAP_DAYCASE,
    UNFINISHED,
)
from shmi_spark.synth.world import DEFAULT_CHARLSON, DEFAULT_DIAG, World
from shmi_spark.synth.write import write_parquet, write_partitions

__all__ = ["CHUNK_ADMISSIONS", "DEFAULT_DIAG", "DEFAULT_CHARLSON", "pilot_size", "chunk_sizes", "generate"]

#: analysis admissions per chunk (the unit of work of a worker)
CHUNK_ADMISSIONS = 500_000
#: the world, calendar, vocabularies and output folder of this process (set by _init)
_STATE: dict = {}


def pilot_size(n: int) -> int:
    """Calibration pilot: 100k-300k analysis admissions (a function of N only)."""
    return int(min(max(n, 100_000), 300_000))


def chunk_sizes(n: int) -> list[int]:
    """``n`` admissions split into chunks of at most :data:`CHUNK_ADMISSIONS`, as even as can be."""
    n_chunks = max(1, math.ceil(n / CHUNK_ADMISSIONS))
    base, rest = divmod(n, n_chunks)
    return [base + (1 if i < rest else 0) for i in range(n_chunks)]


def _init(world: World, out: str):
    calendar = world.calendar()
    _STATE.update(world=world, calendar=calendar, vocabularies=Vocabularies(world, calendar), out=Path(out))


def _chunk_counts(world: World, spells: dict, info: dict, link: dict) -> dict:
    """The chunk's contribution to truth/summary.json (summed over chunks)."""
    kind = spells["kind"]
    analysis = slice(0, spells["n_analysis"])
    included, died = link["included"], link["died"]
    return {
        "spells_by_kind": np.bincount(kind, minlength=len(KIND_NAMES)),
        "episodes": info["episodes"], "episode_rows": int(len(info["rows"])),
        "duplicate_epikey": info["duplicate_epikey"],
        "deaths_in_hospital_no_ons": int((spells["died"][analysis] & spells["in_hospital"][analysis]
                                          & ~spells["ons"][analysis]).sum()),
        "analysis_deaths": int(died.sum()), "analysis_deaths_in_hospital": int(link["in_hospital"].sum()),
        "analysis_deaths_dismeth4": int((spells["dismeth_last"][included][died] == 4).sum()),
        "transfers": int(spells["transfer_out"][analysis].sum()),
        "readmissions_30d": int(spells["readmitted_30d"][analysis].sum()),
        "deaths_after_readmission": link["deaths_after_readmission"],
        "deaths_on_day_30": link["deaths_on_day_30"],
        "survivors_death_on_day_31": link["survivors_death_on_day_31"],
        "survivors_death_after_30_days": link["survivors_death_after_30_days"],
        "non_acute_deaths": int(spells["died"][kind == NON_ACUTE].sum()),
        "mismatch_included": link["mismatch_included"], "mismatch_died": link["mismatch_died"],
        "malformed": {k: int((spells["junk"] == i + 1).sum()) for i, k in enumerate(JUNK_KINDS)},
        "invalid_codes": info["invalid_codes"],
        "symptom_first_episode": info["symptom_first_episode"], "palliative_z515": info["palliative_z515"],
        "palliative_tretspef315": info["palliative_tretspef315"],
        "charlson_duplicate_condition_codes": info["charlson_duplicate_condition_codes"],
        "dirty_code_values": info["dirty_code_values"], "people": int(spells["n_people"]),
        "secondary_sum": float(info["secondary_mean_first"] * spells["n_analysis"]),
        "classpat5_analysis": int((spells["classpat"][analysis] == 4).sum()),
        "maternity_analysis": int(world.maternity[spells["group"][analysis]].sum()),
        "invalid_primary_analysis": int((spells["group"][analysis] == 0).sum()),
        "hsmr": truth.hsmr_counts(spells),
    }


def _process(task):
    """One chunk: spells, episode files, ONS rows, truth counts."""
    chunk, n = task
    world, calendar, out = _STATE["world"], _STATE["calendar"], _STATE["out"]
    spells = build_chunk(world, calendar, chunk, n)
    rng = np.random.default_rng(seed_sequence(world.seed, 20, chunk))
    table, fy, info = build_episodes(world, _STATE["vocabularies"], spells, rng)
    parts = write_partitions(table, info["rows"], fy, out, chunk)
    person, dod_day, n_duplicates = truth.ons_rows(spells, np.random.default_rng(seed_sequence(world.seed, 30, chunk)))
    link = truth.link_chunk(world, spells, person, dod_day)
    aggregates = truth.aggregate_chunk(world, calendar, spells, link)
    counts = _chunk_counts(world, spells, info, link)
    counts.update(partitions=parts, ons_rows=int(len(person)), ons_duplicates=n_duplicates)
    return chunk, aggregates, counts, (person, dod_day)


def _add(acc: dict, d: dict):
    """Add the counts ``d`` into ``acc`` (nested dicts key by key)."""
    for k, v in d.items():
        if isinstance(v, dict):
            _add(acc.setdefault(k, {}), v)
        elif k in acc:
            acc[k] = acc[k] + v
        else:
            acc[k] = v.copy() if isinstance(v, np.ndarray) else v


def _run_chunks(world: World, out: Path, sizes: list[int], workers: int, log, t0: float):
    """Every chunk, in worker processes when ``workers`` > 1; returns summed aggregates, counts, ONS rows."""
    tasks = list(enumerate(sizes))
    aggregates: dict = {}
    counts: dict = {}
    ons = []
    pool = None
    results: Iterator[tuple]
    if workers > 1 and len(tasks) > 1:
        pool = mp.get_context("fork").Pool(workers, initializer=_init, initargs=(world, str(out)))
        results = pool.imap(_process, tasks)
    else:
        _init(world, str(out))
        results = map(_process, tasks)
    try:
        done = 0
        for chunk, chunk_aggregates, chunk_counts, (person, dod_day) in results:
            _add(aggregates, chunk_aggregates)
            _add(counts, chunk_counts)
            ons.append((chunk, person, dod_day))
            done += 1
            if done % max(1, workers) == 0 or done == len(tasks):
                log(f"shmi synth: chunks {done}/{len(tasks)}, {sum(sizes[:done]):,} admissions, "
                    f"{time.time() - t0:.1f}s")
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return aggregates, counts, ons


def _write_ons(world: World, out: Path, ons: list) -> None:
    """ons_deaths/part-00000.parquet: HESID, DOD of every registration, chunk by chunk."""
    chunk = np.concatenate([np.full(len(person), c, np.int64) for c, person, _ in ons])
    person = np.concatenate([person for _, person, _ in ons])
    dod_day = np.concatenate([dod_day for _, _, dod_day in ons])
    dates = pa.array(list(world.calendar().strings), pa.string())
    table = pa.table({"HESID": hes_ids(chunk, person),
                      "DOD": dates.take(pa.array((dod_day + DATE_PAD).astype(np.int32)))})
    write_parquet(table, out / "ons_deaths" / "part-00000.parquet")


def _write_reference(world: World, out: Path) -> None:
    """reference/: the world's trusts and the project's default lookup and Charlson list."""
    folder = out / "reference"
    folder.mkdir(parents=True, exist_ok=True)
    world.trusts[["PROCODE3", "NAME", "TYPE", "REGION"]].to_csv(folder / "trusts.csv", index=False,
                                                                lineterminator="\n")
    shutil.copyfile(DEFAULT_DIAG, folder / "diag_groups.csv")
    shutil.copyfile(DEFAULT_CHARLSON, folder / "charlson.csv")


def _casemix_frame(world: World, aggregates: dict) -> pd.DataFrame:
    """Acute trust-years with spells: PROCODE3, DIS_FYEAR, SPELLS, DEATHS, EXPECTED (case-mix expected deaths:
    the planted model without the trust-year effect)."""
    acute = world.trusts[world.trusts.TYPE == "acute"].PROCODE3.to_numpy()
    frame = pd.DataFrame({"PROCODE3": np.repeat(acute, 6), "DIS_FYEAR": np.tile(np.arange(2005, 2011), len(acute)),
                          "SPELLS": aggregates["ty_spells"].astype(np.int64),
                          "DEATHS": aggregates["ty_deaths"].astype(np.int64),
                          "EXPECTED": np.round(aggregates["ty_expected"], 3)})
    return frame[frame.SPELLS > 0].sort_values(["PROCODE3", "DIS_FYEAR"]).reset_index(drop=True)


def _write_truth_tables(world: World, folder: Path, aggregates: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """truth/*.csv; returns the planted outliers and the calibration counts."""
    truth.coefficients(world).to_csv(folder / "coefficients.csv", index=False, lineterminator="\n")
    effects, outliers = truth.trust_effects(world)
    effects.to_csv(folder / "trust_effects.csv", index=False, lineterminator="\n")
    outliers.to_csv(folder / "planted_outliers.csv", index=False, lineterminator="\n")
    acute = world.trusts[world.trusts.TYPE == "acute"].PROCODE3.to_numpy()
    trust_years = pd.DataFrame({"PROCODE3": np.repeat(acute, 6),
                                "DIS_FYEAR": np.tile(np.arange(2005, 2011), len(acute)),
                                "SPELLS": aggregates["ty_spells"].astype(np.int64),
                                "DEATHS": aggregates["ty_deaths"].astype(np.int64)})
    trust_years = trust_years[trust_years.SPELLS > 0].sort_values(["PROCODE3", "DIS_FYEAR"]).reset_index(drop=True)
    trust_years.to_csv(folder / "trust_year_counts.csv", index=False, lineterminator="\n")
    casemix = _casemix_frame(world, aggregates)
    casemix.to_csv(folder / "trust_year_casemix.csv", index=False, lineterminator="\n")
    profiles = pd.DataFrame({"PROCODE3": acute, "SPELLS_PER_YEAR_FULL_SCALE": np.round(
        world.trusts.SIZE.to_numpy()[world.trusts.TYPE.to_numpy() == "acute"], 1),
        **world.profiles.as_frame_columns()})
    profiles.to_csv(folder / "trust_profiles.csv", index=False, lineterminator="\n")
    hsmr = _trust_year_hsmr(world, aggregates)
    hsmr.to_csv(folder / "trust_year_hsmr.csv", index=False, lineterminator="\n")
    planted = _planted_post_discharge(world, aggregates)
    planted.to_csv(folder / "planted_post_discharge.csv", index=False, lineterminator="\n")
    calibration = truth.calibration_frame(aggregates["cal_spells"], aggregates["cal_deaths"])
    calibration.to_csv(folder / "calibration_counts.csv", index=False, lineterminator="\n")
    groups = pd.DataFrame({"DIAG_GROUP": world.group_ids, "SPELLS": aggregates["g_spells"].astype(np.int64),
                           "DEATHS": aggregates["g_deaths"].astype(np.int64)})
    groups.to_csv(folder / "group_counts.csv", index=False, lineterminator="\n")
    return outliers, calibration


def _trust_year_hsmr(world: World, aggregates: dict) -> pd.DataFrame:
    """truth/trust_year_hsmr.csv: per acute trust-year with spells (by discharge), what :mod:`.hsmr` planted.

    SPELLS, DEATHS (METHOD.md §3), DEATHS_IN_HOSPITAL (of those, DISMETH 4 or the date of death on or
    before discharge), PALLIATIVE_SPELLS, TRANSFERS_OUT (spells continued by a transfer), TRANSFERS_IN
    (spells continuing one), CHAINS_FIRST (first spells of a transfer chain), POST_DISCHARGE_EXCESS (deaths
    the post-discharge trust's excess added).
    """
    acute = world.trusts[world.trusts.TYPE == "acute"].PROCODE3.to_numpy()
    frame = pd.DataFrame({"PROCODE3": np.repeat(acute, 6), "DIS_FYEAR": np.tile(np.arange(2005, 2011), len(acute)),
                          "SPELLS": aggregates["ty_spells"].astype(np.int64),
                          "DEATHS": aggregates["ty_deaths"].astype(np.int64),
                          "DEATHS_IN_HOSPITAL": aggregates["ty_in_hospital"],
                          "PALLIATIVE_SPELLS": aggregates["ty_palliative"],
                          "TRANSFERS_OUT": aggregates["ty_transfer_out"], "TRANSFERS_IN": aggregates["ty_transfer_in"],
                          "CHAINS_FIRST": aggregates["ty_chain_first"],
                          "POST_DISCHARGE_EXCESS": aggregates["ty_excess"]})
    return frame[frame.SPELLS > 0].sort_values(["PROCODE3", "DIS_FYEAR"]).reset_index(drop=True)


def _planted_post_discharge(world: World, aggregates: dict) -> pd.DataFrame:
    """truth/planted_post_discharge.csv: the post-discharge trust (:mod:`.hsmr` rule 4) in each year planted.

    PROCODE3, DIS_FYEAR, LOG_OR (the excess), SPELLS, DEATHS, DEATHS_IN_HOSPITAL, EXPECTED (case-mix expected
    deaths: the model without trust effects), EXCESS_DEATHS (the deaths the excess added, all 1-30 days after
    discharge).
    """
    acute = world.trusts[world.trusts.TYPE == "acute"].PROCODE3.to_numpy()
    at = world.post_discharge_position
    years = np.nonzero(world.post_discharge[at])[0]
    rows = at * 6 + years
    return pd.DataFrame({"PROCODE3": acute[at], "DIS_FYEAR": 2005 + years,
                         "LOG_OR": np.round(world.post_discharge[at, years], 6),
                         "SPELLS": aggregates["ty_spells"][rows].astype(np.int64),
                         "DEATHS": aggregates["ty_deaths"][rows].astype(np.int64),
                         "DEATHS_IN_HOSPITAL": aggregates["ty_in_hospital"][rows],
                         "EXPECTED": np.round(aggregates["ty_expected"][rows], 3),
                         "EXCESS_DEATHS": aggregates["ty_excess"][rows]})


def _summary(world: World, n: int, n_chunks: int, aggregates: dict, counts: dict) -> dict:
    """truth/summary.json: what the world holds, for the tests and the pipeline's checks."""
    by_kind = counts["spells_by_kind"]
    return {
        "admissions": int(n), "chunks": n_chunks, "episodes": counts["episodes"],
        "episode_rows_written": counts["episode_rows"], "episode_rows_by_fyear": counts["partitions"],
        "spells_by_kind": {KIND_NAMES[i]: int(by_kind[i]) for i in range(len(KIND_NAMES))},
        "exclusions": {"unfinished_episode": int(by_kind[UNFINISHED]),
                       "no_discharge_date": int(by_kind[IN_HOSPITAL]),
                       "day_case_or_regular_attender": int(by_kind[DAY_CASE] + by_kind[REGULAR]
                                                           + by_kind[TRAP_DAYCASE]),
                       "stillbirth": int(by_kind[STILLBIRTH]), "non_acute_trust": int(by_kind[NON_ACUTE])},
        "malformed_rows": dict(counts["malformed"], duplicate_epikey=counts["duplicate_epikey"]),
        # METHOD.md §2: invalid covariate codes on accepted rows, {FIELD: {VALUE: count}}
        "invalid_codes": {f: dict(v) for f, v in counts.get("invalid_codes", {}).items() if v},
        "duplicate_epikey_rows": counts["duplicate_epikey"],
        "people": counts["people"], "ons_rows": counts["ons_rows"],
        "ons_duplicate_registrations": counts["ons_duplicates"],
        "deaths_in_hospital_no_ons": counts["deaths_in_hospital_no_ons"],
        "analysis_deaths": counts["analysis_deaths"],
        "analysis_deaths_in_hospital": counts["analysis_deaths_in_hospital"],
        "analysis_deaths_dismeth4": counts["analysis_deaths_dismeth4"],
        "analysis_expected_deaths": round(aggregates["expected_deaths"], 3),
        "transfers": counts["transfers"], "readmissions_within_30_days": counts["readmissions_30d"],
        "deaths_after_readmission": counts["deaths_after_readmission"],
        "deaths_on_day_30": counts["deaths_on_day_30"],
        "survivors_death_on_day_31": counts["survivors_death_on_day_31"],
        "survivors_death_after_30_days": counts["survivors_death_after_30_days"],
        "deaths_at_non_acute_trusts": counts["non_acute_deaths"],
        "day_case_between_discharge_and_death": int(by_kind[TRAP_DAYCASE]),
        "symptom_primary_first_episode": counts["symptom_first_episode"],
        "palliative_z515_spells": counts["palliative_z515"],
        "palliative_tretspef315_spells": counts["palliative_tretspef315"],
        "charlson_duplicate_condition_codes": counts["charlson_duplicate_condition_codes"],
        "dirty_code_values": counts["dirty_code_values"],
        "classpat5_analysis_spells": counts["classpat5_analysis"],
        "maternity_analysis_spells": counts["maternity_analysis"],
        "invalid_primary_analysis_spells": counts["invalid_primary_analysis"],
        "mean_secondary_diagnoses": round(counts["secondary_sum"] / n, 3),
        "diag_groups": int(len(world.group_ids) - 1), "acute_trusts": world.n_acute,
        "rule_vs_plan_mismatches": {"included": counts["mismatch_included"], "died": counts["mismatch_died"]},
        # what synth/hsmr.py planted (its rules: params.json "hsmr")
        "hsmr": dict(counts["hsmr"], post_discharge_trust=world.params["post_discharge_trust"]),
    }


def _params(world: World, n: int, outliers: pd.DataFrame) -> dict:
    """truth/params.json: the world's parameters (seed, calibration, shared effects, planted rates)."""
    params = dict(world.params)
    params.update(admissions=n, workers_independent=True, chunk_admissions=CHUNK_ADMISSIONS,
                  shared_effects={k: np.round(v, 6) for k, v in world.shared.items()},
                  reference_levels=truth.REFERENCE_LEVELS, charlson_a=world.charlson_a, charlson_b=world.charlson_b,
                  imd_w=np.round(world.imd_w, 6), imd_theta=np.round(world.imd_theta, 6),
                  patient_cell_weights=np.round(world.patient_cell_w / world.patient_cell_w.sum(), 8),
                  extra_rates={KIND_NAMES[k]: v for k, v in EXTRA_RATES.items()},
                  malformed_rate_per_kind=per_kind(1, 1_000_000) / 1_000_000,
                  invalid_code_rate_per_field=per_kind(1, 1_000_000) / 1_000_000,
                  invalid_code_values=INVALID_CODES,
                  group_elective_share=dict(zip(map(int, world.group_ids), np.round(world.elective_p, 6),
                                                strict=True)),
                  outliers=outliers.to_dict("records"),
                  hsmr=hsmr_rules())
    params["hsmr"]["post_discharge"].update(params.pop("post_discharge", {}))
    params["hsmr"]["prior_emergency"]["p_by_age_band"] = dict(zip(AGE_LEVELS[:len(world.prior_p)],
                                                                  np.round(world.prior_p, 6), strict=True))
    return params


def generate(out: Path, n: int, seed: int, start: date, end: date, workers: int = 2,
             log=print) -> dict:
    """Write a world of ``n`` analysis admissions from ``seed`` into the new folder ``out``.

    Returns truth/summary.json's content, plus ``seconds``, ``_calibration``
    (the calibration counts) and ``_casemix`` (truth/trust_year_casemix.csv), for ``shmi synth --check``.
    """
    t0 = time.time()
    out = Path(out)
    taken = [sub for sub in ("hes_apc", "ons_deaths", "reference", "truth") if (out / sub).exists()]
    if taken:  # a world is written into a new folder (shmi synth's staging); nothing is ever replaced
        raise ValueError(f"generate(): {out / taken[0]} exists; write the world into a new folder")
    out.mkdir(parents=True, exist_ok=True)
    world = build_world(seed, n, start, end, pilot=pilot_size(n))
    log(f"shmi synth: world built ({len(world.group_ids) - 1} groups, {world.n_acute} acute trusts) "
        f"in {time.time() - t0:.1f}s")
    sizes = chunk_sizes(n)
    aggregates, counts, ons = _run_chunks(world, out, sizes, workers, log, t0)
    _write_ons(world, out, ons)
    _write_reference(world, out)
    folder = out / "truth"
    folder.mkdir(parents=True, exist_ok=True)
    outliers, calibration = _write_truth_tables(world, folder, aggregates)
    summary = _summary(world, n, len(sizes), aggregates, counts)
    truth.write_json(folder / "summary.json", summary)
    truth.write_json(folder / "params.json", _params(world, n, outliers))
    summary["seconds"] = round(time.time() - t0, 1)
    summary["_calibration"] = calibration
    summary["_casemix"] = pd.read_csv(folder / "trust_year_casemix.csv", dtype={"PROCODE3": str})
    return summary
