"""Check a run's models against an independent record-level fit (METHOD.md §5, issue 14).

For each period of a run, every diagnosis group's cells in its modelling window are
refitted here by plain record-level IRLS — one row per spell, least squares
by SVD, no separation handling and no shortcut, iterated until the deviance
stops falling (R's ``glm``'s rule, 100 times stricter) — and each cell's
fitted probability is compared with the one the run's coefficients give it;
the expected deaths per trust are compared too.  Where the data separate,
the iterations run on until a separated cell is within about 1e-10 of its
limit, so the comparison holds the run to the maximum-likelihood limit, not
to a rule of its own.

    python -m shmi_spark.model.limit_check RUN_DIR [--periods 2008/09 ...] [--spells DIR] [--hsmr]

With ``--hsmr`` it checks the HSMR's models (``model/<period>/hsmr``) instead,
on the HSMR's table rebuilt from the spells (superspells with the run's
attribution and gap, deaths in hospital, the run's covered groups of
``hsmr_groups.csv``) and over the HSMR's terms; its Charlson score enters as
one numeric column, as the HSMR's models have it.

It prints, per period, the largest absolute difference of a cell probability,
the largest relative difference of a trust's expected deaths (relative to
one death where a trust expects fewer), and the
diagnostics rows whose ``DETAIL`` names an exception; exit 1 when a cell
differs by more than 1e-6 or a trust by more than 1e-4.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit

from shmi_spark.model.cells import NUMERIC_TERMS
from shmi_spark.model.design import PER_UNIT

__all__ = ["long_run_probabilities", "check_period", "check_run_period", "trust_cells", "main"]

_TERMS = ["AGE_BAND", "SEX_CAT", "ADMIMETH_CAT", "ADM_MONTH", "YEAR_INDEX", "CHARLSON_BAND", "BIRWEIT_BAND"]
# the HSMR's terms; the Charlson score is one numeric column
_HSMR_TERMS = ["AGE_BAND", "SEX_CAT", "ADMIMETH_CAT", "ADM_MONTH", "YEAR_INDEX", "ADMISSION_SOURCE",
               "DEPRIVATION_FIFTH", "PALLIATIVE_CARE", "PRIOR_EMERGENCY_ADMISSIONS", "CHARLSON_INDEX"]


def long_run_probabilities(cells: pd.DataFrame, terms: list[str] | None = None, max_iter: int = 100,
                           tol: float = 1e-10) -> np.ndarray:
    """Per cell (``SPELLS``, ``DEATHS``, the terms' levels), the fitted probability of a record-level
    logistic regression with every term's levels as indicators, by plain IRLS.

    It stops as R's ``glm`` does, when the deviance changes by less than
    ``tol·(|deviance| + 0.1)`` (``glm``: 1e-8), or when no step, halved up
    to 30 times, lowers it any more (probabilities rounded to exactly 0 or 1
    end the arithmetic), keeping the lowest deviance's fit.
    """
    columns = [np.ones(len(cells))]
    for term in terms or _TERMS:
        values = cells[term].astype(str)
        if term in NUMERIC_TERMS:  # a number: one column (none when it takes one value)
            columns += [values.astype(float).to_numpy()] if values.nunique() > 1 else []
            continue
        columns += [(values == lv).to_numpy(float) for lv in sorted(values.unique())[1:]]
    x_cells = np.column_stack(columns)
    n, d = cells["SPELLS"].to_numpy(np.int64), cells["DEATHS"].to_numpy(np.int64)
    index = np.repeat(np.arange(len(cells)), n)
    died = np.concatenate([np.r_[np.ones(d[i]), np.zeros(n[i] - d[i])] for i in range(len(cells))])
    x = x_cells[index]

    def deviance(beta: np.ndarray) -> float:
        eta = x @ beta
        return float(2 * np.sum(np.logaddexp(0.0, eta) - died * eta))

    beta = np.zeros(x.shape[1])
    best = deviance(beta)
    for _ in range(max_iter):
        eta = x @ beta
        mu = expit(eta)
        root_weight = np.sqrt(mu * (1 - mu))
        # the working response times the root weight, (eta + (y - mu) / w) * sqrt(w), stably
        response = root_weight * eta + np.divide(died - mu, root_weight, out=np.zeros_like(mu),
                                                 where=root_weight > 0)
        step = np.linalg.lstsq(x * root_weight[:, None], response, rcond=None)[0]
        value = deviance(step)
        for _ in range(30):  # step halving where the arithmetic at 0 and 1 spoils a full step
            if value < best:
                break
            step = (beta + step) / 2
            value = deviance(step)
        if not value < best:
            break
        done = best - value < tol * (abs(value) + 0.1)
        beta, best = step, value
        if done:
            break
    return expit(x_cells @ beta)


def _probability(cells: pd.DataFrame, coefficients: pd.DataFrame, terms: list[str]) -> np.ndarray:
    """Each cell's probability under the run's coefficients (the rule of model/scoring.py)."""
    coefs = coefficients.assign(LEVEL=coefficients["LEVEL"].fillna("").astype(str))
    crude = coefs[coefs["TERM"] == "CRUDE_RATE"].set_index("DIAG_GROUP")["ESTIMATE"]
    intercept = coefs[coefs["TERM"] == "INTERCEPT"].set_index("DIAG_GROUP")["ESTIMATE"]
    eta = cells["DIAG_GROUP"].map(intercept).fillna(0.0).to_numpy(float)
    for term in terms:
        rows = coefs[coefs["TERM"] == term]
        if term in NUMERIC_TERMS:  # the slope times the cell's number
            slope = rows[rows["LEVEL"] == PER_UNIT].set_index("DIAG_GROUP")["ESTIMATE"]
            eta = eta + cells["DIAG_GROUP"].map(slope).fillna(0.0).to_numpy(float) * cells[term].astype(float)
            continue
        lookup = {(int(g), lv): e for g, lv, e in rows[["DIAG_GROUP", "LEVEL", "ESTIMATE"]].itertuples(index=False)}
        eta = eta + np.array([lookup.get((int(g), str(lv)), 0.0)
                              for g, lv in zip(cells["DIAG_GROUP"], cells[term], strict=True)])
    p = expit(eta)
    is_crude = cells["DIAG_GROUP"].isin(crude.index).to_numpy()
    p[is_crude] = cells.loc[is_crude, "DIAG_GROUP"].map(crude).to_numpy(float)
    return p


def check_period(trust_cells: pd.DataFrame, coefficients: pd.DataFrame, terms: list[str] | None = None) -> dict:
    """Differences between the run's and the record-level fit, from trust × group × covariate counts."""
    terms = terms or _TERMS
    cells = trust_cells.groupby(["DIAG_GROUP", *terms], as_index=False, dropna=False)[["SPELLS", "DEATHS"]].sum()
    reference = np.empty(len(cells))
    for _, rows in cells.groupby("DIAG_GROUP").groups.items():
        part = cells.loc[rows]
        reference[np.asarray(rows)] = long_run_probabilities(part, terms)
    cells["P_REFERENCE"] = reference
    cells["P_RUN"] = _probability(cells, coefficients, terms)
    merged = trust_cells.merge(cells[["DIAG_GROUP", *terms, "P_REFERENCE", "P_RUN"]],
                               on=["DIAG_GROUP", *terms], how="left", validate="many_to_one")
    by_trust = (merged.assign(E_REFERENCE=merged["SPELLS"] * merged["P_REFERENCE"],
                              E_RUN=merged["SPELLS"] * merged["P_RUN"])
                .groupby("PROCODE3")[["E_REFERENCE", "E_RUN"]].sum())
    # relative to the trust's expected deaths, or to one death where it expects fewer (a trust with a few
    # spells, all in cells near a limit of 0, expects almost none: a ratio of two tiny numbers says nothing)
    relative = (by_trust["E_RUN"] - by_trust["E_REFERENCE"]).abs() / by_trust["E_REFERENCE"].clip(lower=1.0)
    return {"cells": len(cells), "trusts": len(by_trust),
            "max_cell_difference": float(np.max(np.abs(cells["P_RUN"] - cells["P_REFERENCE"]))),
            "max_trust_relative_difference": float(relative.max())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--periods", nargs="*", help="period labels, as in summary.json (default: every period)")
    parser.add_argument("--spells", help="the spell table (default: RUN_DIR/spells)")
    parser.add_argument("--hsmr", action="store_true", help="check the HSMR's models (model/<period>/hsmr)")
    args = parser.parse_args(argv)

    from pyspark.sql import SparkSession

    run = Path(args.run_dir)
    periods = json.loads((run / "summary.json").read_text())["periods"]
    if args.periods:
        periods = [p for p in periods if p["period"] in set(args.periods)]
    spark = (SparkSession.builder.master("local[2]").appName("shmi limit check")
             .config("spark.ui.showConsoleProgress", "false").getOrCreate())
    spells = spark.read.parquet(args.spells or str(run / "spells"))
    failed = False
    for p in periods:
        result = check_run_period(spells, run, p["period"], date.fromisoformat(str(p["window_start"])),
                                  date.fromisoformat(str(p["window_end"])), hsmr=args.hsmr)
        which = " (HSMR)" if args.hsmr else ""
        print(f"{p['period']}{which}: {result['cells']} cells, {result['trusts']} trusts; largest cell difference "
              f"{result['max_cell_difference']:.2e}, largest trust relative difference "
              f"{result['max_trust_relative_difference']:.2e}; rules {result['rules']}; "
              f"rows naming an exception: {result['exceptions']}", flush=True)
        failed |= result["max_cell_difference"] > 1e-6 or result["max_trust_relative_difference"] > 1e-4
        failed |= result["exceptions"] > 0
    spark.stop()
    return 1 if failed else 0


def check_run_period(spells, run: Path, label: str, window_start: date, window_end: date, *,
                     hsmr: bool = False) -> dict:
    """:func:`check_period` for one period of a run (its models in ``run/model/<label>``, or with
    ``hsmr`` the HSMR's in ``run/model/<label>/hsmr`` on the HSMR's table), plus the rules used and
    the count of diagnostics rows whose ``DETAIL`` names an exception."""
    folder = run / "model" / label.replace("/", "-").replace("..", "_")
    terms = _TERMS
    if hsmr:
        folder, terms = folder / "hsmr", _HSMR_TERMS
        spells = _hsmr_table(spells, run, label)
    coefficients = pd.read_parquet(folder / "coefficients.parquet")
    diagnostics = pd.read_parquet(folder / "diagnostics.parquet")
    result = check_period(trust_cells(spells, window_start, window_end, terms).toPandas(), coefficients, terms)
    errors = diagnostics["DETAIL"].fillna("").str.contains("Error|Exception")
    return {**result, "rules": diagnostics["RULE"].value_counts().to_dict(), "exceptions": int(errors.sum())}


def _hsmr_table(spells, run: Path, label: str):
    """The HSMR's table of a run's period, rebuilt from its spells with the run's settings (summary.json)."""
    from shmi_spark.hes.superspells import superspell_table
    from shmi_spark.indicator.definitions import HSMR, indicator_table

    settings = json.loads((run / "summary.json").read_text())["config"]["hsmr"]
    groups = pd.read_csv(run / "hsmr_groups.csv", dtype={"PERIOD": str})
    covered = groups.loc[(groups["PERIOD"] == label) & groups["COVERED"].astype(bool), "DIAG_GROUP"]
    superspells = superspell_table(spells, attribution=settings["attribution"],
                                   max_gap_days=int(settings["transfer_gap_days"]))
    return indicator_table(spells, HSMR, superspells=superspells, groups=[int(g) for g in covered])


def trust_cells(spells, window_start: date, window_end: date, terms: list[str] | None = None):
    """Trust × group × covariate counts of the spells discharged in the window (the cells' rule)."""
    from pyspark.sql import functions as F

    from shmi_spark.config import MethodConfig
    from shmi_spark.model.cells import level_expr, window_years, year_index

    invalid = MethodConfig().invalid_diagnosis_group
    window = spells.where(F.col("DISDATE").between(F.lit(window_start), F.lit(window_end)))
    terms = terms or _TERMS
    window = window.withColumn("YEAR_INDEX", year_index("DISDATE", window_start,
                                                       window_years(window_start, window_end)))
    # the invalid-diagnosis group does not use the Charlson score (METHOD.md §4)
    window = window.withColumns({t: F.when(F.col("DIAG_GROUP") == invalid, F.lit("0")).otherwise(F.col(t))
                                 for t in ("CHARLSON_BAND", "CHARLSON_INDEX") if t in terms})
    levels = [level_expr(t).alias(t) for t in terms]
    return (window.select("PROCODE3", F.col("DIAG_GROUP").cast("int").alias("DIAG_GROUP"), *levels,
                          F.col("DIED").cast("long").alias("DIED"))
            .groupBy("PROCODE3", "DIAG_GROUP", *terms)
            .agg(F.count(F.lit(1)).alias("SPELLS"), F.sum("DIED").alias("DEATHS")))


if __name__ == "__main__":
    sys.exit(main())
