"""Tables 2 and 3 of the paper, from spell counts, beside the published figures (``shmi synth --check``);
and the trusts' case-mix spread.

:func:`calibration_tables` takes spell-table counts (columns AGE_BAND, SEX_CAT,
ADMIMETH_CAT, IMD_FIFTH, CHARLSON_BAND, SPELLS, DEATHS; levels as in
docs/tables.md) so that it can be fed from the generator's truth or from the
pipeline's spell table alike.  :func:`casemix_fit` is the paper's check that
case mix explains the variation between hospitals: per financial year, the
ordinary least-squares regression across trusts of the crude death rate on the
expected death rate (the paper: R² = 0.81 in 2007/08), with the spread of the
trusts' sizes; fed from truth/trust_year_casemix.csv.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from shmi_spark.synth.paper import TABLE2_BAND_OF_AGE_LEVEL, calibration_targets

__all__ = ["TABLE3_ADMISSION_TYPE", "TABLE3_IMD_FIFTH", "REQUIRED", "CASEMIX_R2_TARGET", "calibration_tables",
           "format_calibration", "casemix_fit", "format_casemix"]

#: the range of R² of crude on expected death rate a world of 1M admissions should show in every year
#: (paper: 0.81 at full scale; larger worlds show more, their crude rates being less noisy)
CASEMIX_R2_TARGET = (0.7, 0.9)

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


def casemix_fit(trust_years: pd.DataFrame) -> pd.DataFrame:
    """Per financial year: OLS of the trusts' crude death rate on their expected death rate, and trust sizes.

    ``trust_years``: one row per trust and year, columns PROCODE3, DIS_FYEAR,
    SPELLS, DEATHS and EXPECTED (expected deaths from case mix alone).  Crude
    rate = DEATHS / SPELLS, expected rate = EXPECTED / SPELLS.  Returns one row
    per year: DIS_FYEAR, TRUSTS, R2, SLOPE, INTERCEPT, CRUDE_MEAN, EXPECTED_MEAN,
    EXPECTED_SD (rates as fractions) and the trusts' spells that year: SPELLS_MIN,
    SPELLS_Q1, SPELLS_MEDIAN, SPELLS_Q3, SPELLS_MAX.  R2 is NaN for a year with
    fewer than 3 trusts or no spread of expected rates.
    """
    missing = [c for c in ("DIS_FYEAR", "SPELLS", "DEATHS", "EXPECTED") if c not in trust_years.columns]
    if missing:
        raise ValueError(f"case-mix counts lack columns {missing}")
    rows = []
    for year, frame in trust_years[trust_years.SPELLS > 0].groupby("DIS_FYEAR", sort=True):
        spells = frame.SPELLS.to_numpy(float)
        crude = frame.DEATHS.to_numpy(float) / spells
        expected = frame.EXPECTED.to_numpy(float) / spells
        r2 = slope = intercept = float("nan")
        spread = expected - expected.mean()
        if len(frame) >= 3 and (spread ** 2).sum() > 0:
            slope = float((spread * (crude - crude.mean())).sum() / (spread ** 2).sum())
            intercept = float(crude.mean() - slope * expected.mean())
            residual = crude - intercept - slope * expected
            total = ((crude - crude.mean()) ** 2).sum()
            r2 = float(1.0 - (residual ** 2).sum() / total) if total > 0 else float("nan")
        q = np.percentile(spells, [0, 25, 50, 75, 100])
        rows.append((int(year), len(frame), r2, slope, intercept, float(crude.mean()), float(expected.mean()),
                     float(expected.std()), *(int(round(x)) for x in q)))
    return pd.DataFrame(rows, columns=["DIS_FYEAR", "TRUSTS", "R2", "SLOPE", "INTERCEPT", "CRUDE_MEAN",
                                       "EXPECTED_MEAN", "EXPECTED_SD", "SPELLS_MIN", "SPELLS_Q1", "SPELLS_MEDIAN",
                                       "SPELLS_Q3", "SPELLS_MAX"])


def format_casemix(fit: pd.DataFrame) -> str:
    """Plain-text rendering of :func:`casemix_fit`."""
    low, high = CASEMIX_R2_TARGET
    out = [f"Case mix: OLS across acute trusts of crude on expected death rate (paper 2007/08: R² 0.81; "
           f"target {low}-{high} in a world of 1M admissions,",
           "higher in larger worlds, where the crude rates carry less binomial noise)",
           f"{'year':9s} {'trusts':>6s} {'R²':>6s} {'slope':>6s} {'crude %':>8s} {'exp %':>6s} {'exp SD':>7s}   "
           f"{'spells per trust: min':>21s} {'Q1':>7s} {'median':>7s} {'Q3':>7s} {'max':>7s}"]
    for r in fit.itertuples():
        out.append(f"{r.DIS_FYEAR}/{(r.DIS_FYEAR + 1) % 100:02d}   {r.TRUSTS:6d} {r.R2:6.3f} {r.SLOPE:6.2f} "
                   f"{100 * r.CRUDE_MEAN:8.2f} {100 * r.EXPECTED_MEAN:6.2f} {100 * r.EXPECTED_SD:7.2f}   "
                   f"{r.SPELLS_MIN:21d} {r.SPELLS_Q1:7d} {r.SPELLS_MEDIAN:7d} {r.SPELLS_Q3:7d} "
                   f"{r.SPELLS_MAX:7d}")
    return "\n".join(out) + "\n"
