"""Tables 2 and 3 of the paper, from spell counts, beside the published figures.

:func:`calibration_tables` takes spell-table counts (columns AGE_BAND, SEX_CAT,
ADMIMETH_CAT, IMD_FIFTH, CHARLSON_BAND, SPELLS, DEATHS; levels as in
docs/tables.md) so that it can be fed from the generator's truth or from the
pipeline's spell table alike.
"""

from __future__ import annotations

import pandas as pd

from shmi_spark.synth.world import calibration_targets

#: docs/tables.md AGE_BAND → Table 2 age band
T2_OF_BAND = {"<1": "<1", "1-4": "1-4", "5-9": "5-14", "10-14": "5-14", "15-19": "15-24", "20-24": "15-24",
              "25-29": "25-34", "30-34": "25-34", "35-39": "35-44", "40-44": "35-44", "45-49": "45-54",
              "50-54": "45-54", "55-59": "55-64", "60-64": "55-64", "65-69": "65-74", "70-74": "65-74",
              "75-79": "75-84", "80-84": "75-84", "85-89": "85+", "90+": "85+", "unknown": "missing"}
ADM_T3 = {"non-elective": "emergency", "elective": "elective", "unknown": "missing"}
IMD_T3 = {"1": "1 least deprived", "2": "2", "3": "3", "4": "4", "5": "5 most deprived", "unknown": "missing"}
REQUIRED = ["AGE_BAND", "SEX_CAT", "ADMIMETH_CAT", "IMD_FIFTH", "CHARLSON_BAND", "SPELLS", "DEATHS"]


def calibration_tables(counts: pd.DataFrame) -> pd.DataFrame:
    """One row per cell of Tables 2-3: paper vs world % dying and % of admissions.

    Columns: table, variable, level, sex, paper_pct_died, world_pct_died, diff_pct_died,
    paper_pct_adm, world_pct_adm, diff_pct_adm, world_spells, world_deaths.
    """
    missing = [c for c in REQUIRED if c not in counts.columns]
    if missing:
        raise ValueError(f"calibration counts lack columns {missing}")
    c = counts.copy()
    c["SPELLS"] = c.SPELLS.astype("int64")
    c["DEATHS"] = c.DEATHS.astype("int64")
    total = c.SPELLS.sum()
    tgt = calibration_targets()
    paper_total = tgt[(tgt.table == "T3") & (tgt.variable == "total")].admissions.iloc[0]
    rows = []

    def add(table, variable, level, sex, sub, paper):
        sp, de = int(sub.SPELLS.sum()), int(sub.DEATHS.sum())
        w_died = 100.0 * de / sp if sp else float("nan")
        w_adm = 100.0 * sp / total if total else float("nan")
        p_died = 100.0 * paper.deaths / paper.admissions
        p_adm = 100.0 * paper.admissions / paper_total
        rows.append((table, variable, level, sex, p_died, w_died, w_died - p_died, p_adm, w_adm,
                     w_adm - p_adm, sp, de))

    c["T2"] = c.AGE_BAND.map(T2_OF_BAND)
    c["SEX"] = c.SEX_CAT.map({"male": "M", "female": "F"})
    t2 = tgt[tgt.table == "T2"]
    for r in t2.itertuples():
        if r.level == "total":
            sub = c[c.SEX == r.sex]
        else:
            sub = c[(c.T2 == r.level) & (c.SEX == r.sex)]
        add("T2", "age", r.level, r.sex, sub, r)
    t3 = tgt[tgt.table == "T3"]
    for r in t3.itertuples():
        if r.variable == "admission_type":
            sub = c[c.ADMIMETH_CAT.map(ADM_T3) == r.level]
        elif r.variable == "imd_fifth":
            sub = c[c.IMD_FIFTH.astype(str).map(IMD_T3) == r.level]
        elif r.variable == "charlson":
            sub = c[c.CHARLSON_BAND.astype(str) == r.level]
        else:
            sub = c
        add("T3", r.variable, r.level, r.sex, sub, r)
    return pd.DataFrame(rows, columns=["table", "variable", "level", "sex", "paper_pct_died", "world_pct_died",
                                       "diff_pct_died", "paper_pct_adm", "world_pct_adm", "diff_pct_adm",
                                       "world_spells", "world_deaths"])


def format_calibration(table: pd.DataFrame) -> str:
    """Plain-text rendering of :func:`calibration_tables`."""
    out = []
    head = f"{'':28s} {'% died':>23s}   {'% of admissions':>23s}   {'world':>18s}"
    sub = f"{'cell':28s} {'paper':>7s} {'world':>7s} {'diff':>7s}   {'paper':>7s} {'world':>7s} {'diff':>7s}   {'spells':>9s} {'deaths':>8s}"
    for name, title in (("T2", "Table 2: age x sex"), ("T3", "Table 3: admission type, IMD fifth, Charlson")):
        out += [title, head, sub]
        for r in table[table.table == name].itertuples():
            label = f"{r.variable} {r.level}" + (f" {r.sex}" if r.sex != "all" else "")
            out.append(f"{label:28s} {r.paper_pct_died:7.2f} {r.world_pct_died:7.2f} {r.diff_pct_died:+7.2f}   "
                       f"{r.paper_pct_adm:7.2f} {r.world_pct_adm:7.2f} {r.diff_pct_adm:+7.2f}   "
                       f"{r.world_spells:9d} {r.world_deaths:8d}")
        out.append("")
    return "\n".join(out)
