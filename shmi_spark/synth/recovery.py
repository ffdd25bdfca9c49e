"""Do the fitted per-group models recover the synthetic world's planted coefficients?

The generator plants, per diagnosis group, a logistic model (``truth/coefficients.csv``:
``DIAG_GROUP, TERM, LEVEL, ESTIMATE`` with the year effect under ``DIS_FYEAR``).  A
fitted model (``model/<period>/coefficients.csv``) uses its own reference level per
term, so the comparison is on contrasts: for a fitted non-reference level ``l`` of a
term with fitted reference ``r``, the true contrast is ``truth(l) − truth(r)``, and
``z = (estimate − true contrast) / std_error``.  The issue's criterion: in groups with
at least 500 deaths, at least 95% of coefficients within 3 standard errors.

    python -m shmi_spark.synth.recovery RUN_DIR/model/PERIOD WORLD_DIR [--first-year 2005]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

__all__ = ["COMPARED_TERMS", "coefficient_recovery", "main"]

COMPARED_TERMS = ("AGE_BAND", "SEX_CAT", "ADMIMETH_CAT", "ADM_MONTH", "CHARLSON_BAND", "BIRWEIT_BAND",
                  "YEAR_INDEX")


def coefficient_recovery(fitted: pd.DataFrame, diagnostics: pd.DataFrame, truth: pd.DataFrame, *,
                         first_year: int, min_deaths: int = 500) -> pd.DataFrame:
    """One row per compared coefficient: group, term, level, estimate, truth contrast, SE, z."""
    truth = truth.assign(LEVEL=truth["LEVEL"].fillna("").astype(str))
    year_rows = truth[truth["TERM"] == "DIS_FYEAR"].copy()
    year_rows["TERM"] = "YEAR_INDEX"
    year_rows["LEVEL"] = (year_rows["LEVEL"].astype(int) - first_year + 1).astype(str)
    truth = pd.concat([truth[truth["TERM"] != "DIS_FYEAR"], year_rows], ignore_index=True)
    true_value = {(int(g), t, lv): float(e) for g, t, lv, e in
                  truth[["DIAG_GROUP", "TERM", "LEVEL", "ESTIMATE"]].itertuples(index=False)}
    big = set(diagnostics.loc[(diagnostics["DEATHS"] >= min_deaths) & diagnostics["RULE"].isin(["mle", "mle_limit"]),
                              "DIAG_GROUP"].astype(int))
    fit = fitted.assign(LEVEL=fitted["LEVEL"].fillna("").astype(str))
    fit = fit[fit["DIAG_GROUP"].astype(int).isin(big) & fit["TERM"].isin(COMPARED_TERMS)]
    rows = []
    for (group, term), block in fit.groupby(["DIAG_GROUP", "TERM"]):
        ref = block.loc[block["REFERENCE"].astype(bool), "LEVEL"]
        if ref.empty:
            continue
        ref_value = true_value.get((int(group), term, ref.iloc[0]))
        for r in block[~block["REFERENCE"].astype(bool)].itertuples(index=False):
            lv_value = true_value.get((int(group), term, r.LEVEL))
            if ref_value is None or lv_value is None or pd.isna(r.STD_ERROR) or r.STD_ERROR <= 0:
                continue
            contrast = lv_value - ref_value
            rows.append((int(group), term, r.LEVEL, float(r.ESTIMATE), contrast, float(r.STD_ERROR),
                         (float(r.ESTIMATE) - contrast) / float(r.STD_ERROR)))
    return pd.DataFrame(rows, columns=["DIAG_GROUP", "TERM", "LEVEL", "ESTIMATE", "TRUE_CONTRAST",
                                       "STD_ERROR", "Z"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("world_dir")
    parser.add_argument("--first-year", type=int, default=2005, help="financial year of YEAR_INDEX 1")
    parser.add_argument("--min-deaths", type=int, default=500)
    args = parser.parse_args(argv)
    model, world = Path(args.model_dir), Path(args.world_dir)
    detail = coefficient_recovery(pd.read_csv(model / "coefficients.csv"), pd.read_csv(model / "diagnostics.csv"),
                                  pd.read_csv(world / "truth" / "coefficients.csv"), first_year=args.first_year,
                                  min_deaths=args.min_deaths)
    if detail.empty:
        print("no coefficients to compare (no mle group with enough deaths)")
        return 1
    within = (detail["Z"].abs() <= 3).mean()
    print(f"groups compared: {detail['DIAG_GROUP'].nunique()}, coefficients: {len(detail)}, "
          f"within 3 SE: {100 * within:.1f}%  (|z| mean {detail['Z'].abs().mean():.2f})")
    print(detail.assign(ABS_Z=detail["Z"].abs()).groupby("TERM")["ABS_Z"]
          .agg(n="size", within3=lambda z: round(100 * (z <= 3).mean(), 1)).to_string())
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
