"""Orchestration: world → chunks (optionally in worker processes) → files."""

from __future__ import annotations

import math
import multiprocessing as mp
import shutil
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from shmi_spark.synth import patients as P
from shmi_spark.synth import truth as T
from shmi_spark.synth.chunk import build_chunk
from shmi_spark.synth.dirty import INVALID_CODES, JUNK_KINDS, per_kind
from shmi_spark.synth.episodes import Vocab, _mix64, build_episodes, hex_ids
from shmi_spark.synth.world import DEFAULT_CHARLSON, DEFAULT_DIAG, World, build_world, new_seedseq
from shmi_spark.synth.write import write_parquet, write_partitions

CHUNK_ADMISSIONS = 500_000
_STATE: dict = {}


def pilot_size(n: int) -> int:
    """Calibration pilot: 100k-300k analysis admissions (a function of N only)."""
    return int(min(max(n, 100_000), 300_000))


def chunk_sizes(n: int) -> list[int]:
    c = max(1, math.ceil(n / CHUNK_ADMISSIONS))
    base, rem = divmod(n, c)
    return [base + (1 if i < rem else 0) for i in range(c)]


def _init(world: World, out: str):
    cal = P.Calendar(world)
    world.params["_cal"] = cal
    _STATE.update(world=world, cal=cal, voc=Vocab(world, cal), out=Path(out))


def _process(task):
    chunk, n = task
    world, cal, voc, out = _STATE["world"], _STATE["cal"], _STATE["voc"], _STATE["out"]
    sp = build_chunk(world, cal, chunk, n)
    rng = np.random.default_rng(new_seedseq(world.seed, 20, chunk))
    table, fy, info = build_episodes(world, voc, sp, rng)
    parts = write_partitions(table, info["rows"], fy, out, chunk)
    person, dod, ndup = T.ons_rows(sp, np.random.default_rng(new_seedseq(world.seed, 30, chunk)))
    link = T.link_chunk(world, sp, person, dod)
    agg = T.aggregate_chunk(world, cal, sp, link)
    kind = sp["kind"]
    nA = sp["n_analysis"]
    A = slice(0, nA)
    inc = link["inc"]
    died_inc = link["died"]
    counts = {
        "spells_by_kind": np.bincount(kind, minlength=len(P.KIND_NAMES)),
        "episodes": info["episodes"], "episode_rows": int(len(info["rows"])), "partitions": parts,
        "duplicate_epikey": info["duplicate_epikey"], "ons_rows": int(len(person)),
        "ons_duplicates": ndup,
        "deaths_in_hospital_no_ons": int((sp["died"][A] & sp["inhosp"][A] & ~sp["ons"][A]).sum()),
        "analysis_deaths": int(died_inc.sum()), "analysis_deaths_in_hospital": int(link["in_hospital"].sum()),
        "analysis_deaths_dismeth4": int((sp["dismeth_last"][inc][died_inc] == 4).sum()),
        "transfers": int(sp["transfer_out"][A].sum()), "readmissions_30d": int(sp["readm30"][A].sum()),
        "deaths_after_readmission": link["deaths_after_readmission"],
        "deaths_on_day_30": link["deaths_on_day_30"],
        "survivors_death_on_day_31": link["survivors_death_on_day_31"],
        "survivors_death_after_30_days": link["survivors_death_after_30_days"],
        "non_acute_deaths": int(sp["died"][kind == P.NON_ACUTE].sum()),
        "mismatch_included": link["mismatch_included"], "mismatch_died": link["mismatch_died"],
        "malformed": {k: int((sp["junk"] == i + 1).sum()) for i, k in enumerate(JUNK_KINDS)},
        "invalid_codes": info["invalid_codes"],
        "symptom_first_episode": info["symptom_first_episode"], "palliative_z515": info["palliative_z515"],
        "palliative_tretspef315": info["palliative_tretspef315"],
        "charlson_duplicate_condition_codes": info["charlson_duplicate_condition_codes"],
        "dirty_code_values": info["dirty_code_values"], "people": int(sp["n_people"]),
        "secondary_sum": float(info["secondary_mean_first"] * nA),
        "classpat5_analysis": int((sp["classpat"][A] == 4).sum()),
        "maternity_analysis": int(_mat_count(world, sp["g"][A])),
        "invalid_primary_analysis": int((sp["g"][A] == 0).sum()),
    }
    return chunk, agg, counts, (person, dod)


def _mat_count(world, g):
    from shmi_spark.synth.chunk import _is_maternity
    return _is_maternity(world, g).sum()


def _add(acc: dict, d: dict):
    for k, v in d.items():
        if isinstance(v, dict):
            _add(acc.setdefault(k, {}), v)
        elif k in acc:
            acc[k] = acc[k] + v
        else:
            acc[k] = v.copy() if isinstance(v, np.ndarray) else v


def generate(out: Path, n: int, seed: int, start: date, end: date, workers: int = 2,
             log=print) -> dict:
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
    tasks = list(enumerate(sizes))
    aggs, counts = {}, {}
    ons = []
    group = max(1, workers)
    if workers > 1 and len(tasks) > 1:
        ctx = mp.get_context("fork")
        pool = ctx.Pool(workers, initializer=_init, initargs=(world, str(out)))
        it = pool.imap(_process, tasks)
    else:
        _init(world, str(out))
        pool = None
        it = map(_process, tasks)
    try:
        done = 0
        for chunk, agg, cnt, o in it:
            _add(aggs, agg)
            _add(counts, cnt)
            ons.append((chunk, o[0], o[1]))
            done += 1
            if done % group == 0 or done == len(tasks):
                log(f"shmi synth: chunks {done}/{len(tasks)}, {sum(sizes[:done]):,} admissions, "
                    f"{time.time() - t0:.1f}s")
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    cal = P.Calendar(world)
    # ---- ONS deaths
    ch = np.concatenate([np.full(len(p), c, np.int64) for c, p, _ in ons])
    per = np.concatenate([p for _, p, _ in ons])
    dod = np.concatenate([d for _, _, d in ons])
    voc_dates = pa.array(list(cal.strings), pa.string())
    ons_tab = pa.table({"HESID": hex_ids(_mix64((ch << 32) + per)),
                        "DOD": voc_dates.take(pa.array((dod + P.DATE_PAD).astype(np.int32)))})
    write_parquet(ons_tab, out / "ons_deaths" / "part-00000.parquet")
    # ---- reference
    ref = out / "reference"
    ref.mkdir(parents=True, exist_ok=True)
    world.trusts[["PROCODE3", "NAME", "TYPE", "REGION"]].to_csv(ref / "trusts.csv", index=False, lineterminator="\n")
    shutil.copyfile(DEFAULT_DIAG, ref / "diag_groups.csv")
    shutil.copyfile(DEFAULT_CHARLSON, ref / "charlson.csv")
    # ---- truth
    tdir = out / "truth"
    tdir.mkdir(parents=True, exist_ok=True)
    T.coefficients(world).to_csv(tdir / "coefficients.csv", index=False, lineterminator="\n")
    te, po = T.trust_effects(world)
    te.to_csv(tdir / "trust_effects.csv", index=False, lineterminator="\n")
    po.to_csv(tdir / "planted_outliers.csv", index=False, lineterminator="\n")
    acute = world.trusts[world.trusts.TYPE == "acute"].PROCODE3.to_numpy()
    ty = pd.DataFrame({"PROCODE3": np.repeat(acute, 6), "DIS_FYEAR": np.tile(np.arange(2005, 2011), len(acute)),
                       "SPELLS": aggs["ty_spells"].astype(np.int64), "DEATHS": aggs["ty_deaths"].astype(np.int64)})
    ty = ty[ty.SPELLS > 0].sort_values(["PROCODE3", "DIS_FYEAR"]).reset_index(drop=True)
    ty.to_csv(tdir / "trust_year_counts.csv", index=False, lineterminator="\n")
    calib = T.calibration_frame(aggs["cal_spells"], aggs["cal_deaths"])
    calib.to_csv(tdir / "calibration_counts.csv", index=False, lineterminator="\n")
    gdf = pd.DataFrame({"DIAG_GROUP": world.group_ids, "SPELLS": aggs["g_spells"].astype(np.int64),
                        "DEATHS": aggs["g_deaths"].astype(np.int64)})
    gdf.to_csv(tdir / "group_counts.csv", index=False, lineterminator="\n")
    sbk = counts["spells_by_kind"]
    summary = {
        "admissions": int(n), "chunks": len(sizes), "episodes": counts["episodes"],
        "episode_rows_written": counts["episode_rows"], "episode_rows_by_fyear": counts["partitions"],
        "spells_by_kind": {P.KIND_NAMES[i]: int(sbk[i]) for i in range(len(P.KIND_NAMES))},
        "exclusions": {"unfinished_episode": int(sbk[P.UNFINISHED]),
                       "no_discharge_date": int(sbk[P.IN_HOSPITAL]),
                       "day_case_or_regular_attender": int(sbk[P.DAY_CASE] + sbk[P.REGULAR] + sbk[P.TRAP_DAYCASE]),
                       "stillbirth": int(sbk[P.STILLBIRTH]), "non_acute_trust": int(sbk[P.NON_ACUTE])},
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
        "analysis_expected_deaths": round(aggs["expected_deaths"], 3),
        "transfers": counts["transfers"], "readmissions_within_30_days": counts["readmissions_30d"],
        "deaths_after_readmission": counts["deaths_after_readmission"],
        "deaths_on_day_30": counts["deaths_on_day_30"],
        "survivors_death_on_day_31": counts["survivors_death_on_day_31"],
        "survivors_death_after_30_days": counts["survivors_death_after_30_days"],
        "deaths_at_non_acute_trusts": counts["non_acute_deaths"],
        "day_case_between_discharge_and_death": int(sbk[P.TRAP_DAYCASE]),
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
    }
    T.write_json(tdir / "summary.json", summary)
    params = {k: v for k, v in world.params.items() if not k.startswith("_") and k != "charlson_combos"}
    params.update(admissions=n, workers_independent=True, chunk_admissions=CHUNK_ADMISSIONS,
                  shared_effects={k: np.round(v, 6) for k, v in world.shared.items()},
                  reference_levels=T.REF, charlson_a=world.charlson_a, charlson_b=world.charlson_b,
                  imd_w=np.round(world.imd_w, 6), imd_theta=np.round(world.imd_theta, 6),
                  patient_cell_weights=np.round(world.patient_cell_w / world.patient_cell_w.sum(), 8),
                  extra_rates={P.KIND_NAMES[k]: v for k, v in P.EXTRA_RATES.items()},
                  malformed_rate_per_kind=per_kind(1, 1_000_000) / 1_000_000,
                  invalid_code_rate_per_field=per_kind(1, 1_000_000) / 1_000_000,
                  invalid_code_values=INVALID_CODES,
                  group_elective_share=dict(zip(map(int, world.group_ids), np.round(world.elective_p, 6))),
                  outliers=po.to_dict("records"))
    T.write_json(tdir / "params.json", params)
    summary["seconds"] = round(time.time() - t0, 1)
    summary["_calibration"] = calib
    return summary
