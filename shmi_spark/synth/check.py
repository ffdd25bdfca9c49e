"""Tables 2 and 3 of the paper, from spell counts, beside the published figures (``shmi synth --check``).

:func:`calibration_tables` takes spell-table counts (columns AGE_BAND, SEX_CAT,
ADMIMETH_CAT, IMD_FIFTH, CHARLSON_BAND, SPELLS, DEATHS; levels as in
docs/tables.md) so that it can be fed from the generator's truth or from the
pipeline's spell table alike.
"""

from __future__ import annotations

import pandas as pd

from shmi_spark.synth.paper import TABLE2_BAND_OF_AGE_LEVEL, calibration_targets

__all__ = ["TABLE3_ADMISSION_TYPE", "TABLE3_IMD_FIFTH", "REQUIRED", "calibration_tables", "format_calibration"]

#: docs/tables.md ADMIMETH_CAT, IMD_FIFTH → Table 3 level
TABLE3_ADMISSION_TYPE = {"non-elective": "emergency", "elective": "elective", "unknown": "missing"}
TABLE3_IMD_FIFTH = {"1": "1 least deprived", "2": "2", "3": "3", "4": "4", "5": "5 most deprived",
                    "unknown": "missing"}
REQUIRED = ["AGE_BAND", "SEX_CAT", "ADMIMETH_CAT", "IMD_FIFTH", "CHARLSON_BAND", "SPELLS", "DEATHS"]


def calibration_tables(counts: pd.DataFrame) -> pd.DataFrame:
    """One row per cell of Tables 2-3: paper vs world % dying and % of admissions.

    Columns: table, variable, level, sex, paper_pct_died, world_pct_died, diff_pct_died,
    paper_pct_adm, world_pct_adm, diff_pct_adm, world_spells, world_deaths.
    """
    missing = [c for c in REQUIRED if c not in counts.columns]
    if missing:
        raise ValueError(f"calibration counts lack columns {missing}")
    cells = counts.copy()
    cells["SPELLS"] = cells.SPELLS.astype("int64")
    cells["DEATHS"] = cells.DEATHS.astype("int64")
    total = cells.SPELLS.sum()
    targets = calibration_targets()
    paper_total = targets[(targets.table == "T3") & (targets.variable == "total")].admissions.iloc[0]
    rows = []

    def add(table, variable, level, sex, selected, paper):
        spells, deaths = int(selected.SPELLS.sum()), int(selected.DEATHS.sum())
        world_died = 100.0 * deaths / spells if spells else float("nan")
        world_adm = 100.0 * spells / total if total else float("nan")
        paper_died = 100.0 * paper.deaths / paper.admissions
        paper_adm = 100.0 * paper.admissions / paper_total
        rows.append((table, variable, level, sex, paper_died, world_died, world_died - paper_died, paper_adm,
                     world_adm, world_adm - paper_adm, spells, deaths))

    cells["T2"] = cells.AGE_BAND.map(TABLE2_BAND_OF_AGE_LEVEL)
    cells["SEX"] = cells.SEX_CAT.map({"male": "M", "female": "F"})
    for row in targets[targets.table == "T2"].itertuples():
        if row.level == "total":
            selected = cells[cells.SEX == row.sex]
        else:
            selected = cells[(cells.T2 == row.level) & (cells.SEX == row.sex)]
        add("T2", "age", row.level, row.sex, selected, row)
    for row in targets[targets.table == "T3"].itertuples():
        if row.variable == "admission_type":
            selected = cells[cells.ADMIMETH_CAT.map(TABLE3_ADMISSION_TYPE) == row.level]
        elif row.variable == "imd_fifth":
            selected = cells[cells.IMD_FIFTH.astype(str).map(TABLE3_IMD_FIFTH) == row.level]
        elif row.variable == "charlson":
            selected = cells[cells.CHARLSON_BAND.astype(str) == row.level]
        else:
            selected = cells
        add("T3", row.variable, row.level, row.sex, selected, row)
    return pd.DataFrame(rows, columns=["table", "variable", "level", "sex", "paper_pct_died", "world_pct_died",
                                       "diff_pct_died", "paper_pct_adm", "world_pct_adm", "diff_pct_adm",
                                       "world_spells", "world_deaths"])


def format_calibration(table: pd.DataFrame) -> str:
    """Plain-text rendering of :func:`calibration_tables`."""
    out = []
    head = f"{'':28s} {'% died':>23s}   {'% of admissions':>23s}   {'world':>18s}"
    sub = (f"{'cell':28s} {'paper':>7s} {'world':>7s} {'diff':>7s}   {'paper':>7s} {'world':>7s} {'diff':>7s}   "
           f"{'spells':>9s} {'deaths':>8s}")
    for name, title in (("T2", "Table 2: age x sex"), ("T3", "Table 3: admission type, IMD fifth, Charlson")):
        out += [title, head, sub]
        for r in table[table.table == name].itertuples():
            label = f"{r.variable} {r.level}" + (f" {r.sex}" if r.sex != "all" else "")
            out.append(f"{label:28s} {r.paper_pct_died:7.2f} {r.world_pct_died:7.2f} {r.diff_pct_died:+7.2f}   "
                       f"{r.paper_pct_adm:7.2f} {r.world_pct_adm:7.2f} {r.diff_pct_adm:+7.2f}   "
                       f"{r.world_spells:9d} {r.world_deaths:8d}")
        out.append("")
    return "\n".join(out)
