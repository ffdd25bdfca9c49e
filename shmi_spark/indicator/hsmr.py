"""The HSMR's tables, the bridge from the SHMI, and ratio limits for counts (no Spark, no I/O).

README "SHMI and HSMR".  From the trust sums of an indicator's run
(``PROCODE3, SPELLS, OBSERVED, EXPECTED``, :func:`shmi_spark.model.scoring.expected_by_trust`):

* :func:`hsmr_trust`: ``HSMR = 100 · O / E`` per trust, ``E`` rescaled so that
  the national HSMR is 100; the 95% and 99.8% limits are the exact Poisson
  limits of a count whose expectation is ``E`` (METHOD.md §6 step 6, the
  SHMI's Poisson limits, at both levels), times 100; banding on the 95%
  limits: 1 "Higher than expected" above the upper, 3 "Lower than expected"
  below the lower, else 2; a trust with fewer than ``min_expected`` expected
  deaths is not banded (as for the SHMI).
* :func:`bridge_table`: one row per trust, period and step of
  :data:`shmi_spark.indicator.definitions.BRIDGE`, each step's ``O``, ``E``
  (rescaled nationally, as its indicator is) and ``RATIO = O / E``;
  ``CHANGE`` is the step's ratio minus the previous step's, and
  ``LARGEST_CHANGE`` marks the step (2–5) with the largest absolute change: the
  setting that moves the trust most from its SHMI to its HSMR.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from shmi_spark.indicator.banding import BANDING_LABELS, not_banded_label
from shmi_spark.indicator.funnel import poisson_limits
from shmi_spark.indicator.periods import Period
from shmi_spark.model.scoring import rescale_factor

__all__ = ["HSMR_COLUMNS", "HSMR_GROUP_COLUMNS", "BRIDGE_COLUMNS", "observed_ratio", "ratio_limits", "poisson_banding",
           "hsmr_trust", "hsmr_group_breakdown", "bridge_table"]

HSMR_COLUMNS = ["PERIOD", "PROVIDER_CODE", "PROVIDER_NAME", "SPELLS", "OBSERVED", "EXPECTED", "HSMR",
                "LL95", "UL95", "LL998", "UL998", "BANDING", "BANDING_LABEL"]
HSMR_GROUP_COLUMNS = ["PERIOD", "PROVIDER_CODE", "DIAG_GROUP", "SPELLS", "OBSERVED", "EXPECTED", "HSMR"]
BRIDGE_COLUMNS = ["PERIOD", "PROVIDER_CODE", "STEP", "STEP_NAME", "OBSERVED", "EXPECTED", "RATIO", "CHANGE",
                  "LARGEST_CHANGE", "SHMI", "SHMI_BANDING", "HSMR", "HSMR_BANDING"]


def observed_ratio(observed, expected) -> np.ndarray:
    """``O / E`` for each pair, empty (NaN) where ``E`` is 0."""
    o, e = np.asarray(observed, dtype=float), np.asarray(expected, dtype=float)
    return np.divide(o, e, out=np.full(e.shape, np.nan), where=e > 0)


def ratio_limits(expected, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact Poisson limits of ``O / E`` at ``level`` for each ``E`` (empty, NaN, where ``E`` is 0)."""
    e = np.asarray(expected, dtype=float)
    lower, upper = np.full(e.shape, np.nan), np.full(e.shape, np.nan)
    positive = e > 0
    if positive.any():
        lower[positive], upper[positive] = poisson_limits(e[positive], level)
    return lower, np.where(np.isfinite(upper), upper, np.nan)


def poisson_banding(ratio, lower, upper, expected, *, min_expected: float) -> pd.Series:
    """1 above ``upper``, 3 below ``lower``, else 2; empty where ``E < min_expected`` or ``E`` is 0."""
    r, lo, up, e = (np.asarray(v, dtype=float) for v in (ratio, lower, upper, expected))
    banding = np.where(r > up, 1, np.where(r < lo, 3, 2))
    banded = (e >= min_expected) & (e > 0)
    return pd.Series(pd.array(np.where(banded, banding, 0), dtype="Int64")).mask(~banded)


def hsmr_trust(by_trust: pd.DataFrame, trusts: pd.DataFrame, period: Period, *,
               min_expected: float) -> tuple[pd.DataFrame, dict]:
    """One row per trust with its HSMR, limits and banding (:data:`HSMR_COLUMNS`), and a summary (module doc)."""
    factor = rescale_factor(by_trust["OBSERVED"].sum(), by_trust["EXPECTED"].sum())
    df = pd.DataFrame({
        "PROVIDER_CODE": by_trust["PROCODE3"].astype(str).to_numpy(),
        "SPELLS": by_trust["SPELLS"].astype("int64").to_numpy(),
        "OBSERVED": by_trust["OBSERVED"].astype("int64").to_numpy(),
        "EXPECTED": by_trust["EXPECTED"].astype(float).to_numpy() * factor,
    }).sort_values("PROVIDER_CODE", kind="mergesort").reset_index(drop=True)
    e = df["EXPECTED"].to_numpy()
    ratio = observed_ratio(df["OBSERVED"], e)
    ll95, ul95 = ratio_limits(e, 0.95)
    ll998, ul998 = ratio_limits(e, 0.998)
    banding = poisson_banding(ratio, ll95, ul95, e, min_expected=min_expected)
    df["HSMR"] = np.round(100 * ratio, 2)
    for name, values in (("LL95", ll95), ("UL95", ul95), ("LL998", ll998), ("UL998", ul998)):
        df[name] = np.round(100 * values, 2)
    df["BANDING"] = banding.to_numpy()
    df["BANDING_LABEL"] = [BANDING_LABELS[int(b)] if pd.notna(b) else not_banded_label(min_expected)
                           for b in df["BANDING"]]
    df["PROVIDER_NAME"] = df["PROVIDER_CODE"].map(trusts.set_index("PROCODE3")["NAME"]).fillna("")
    df["PERIOD"] = period.label
    df["EXPECTED"] = df["EXPECTED"].round(4)
    counts = df["BANDING"].value_counts()
    summary = {"rescale_factor": factor, "n_rows": len(df), "observed": int(df["OBSERVED"].sum()),
               "spells": int(df["SPELLS"].sum()),
               "n_higher": int(counts.get(1, 0)), "n_as_expected": int(counts.get(2, 0)),
               "n_lower": int(counts.get(3, 0))}
    return df[HSMR_COLUMNS], summary


def hsmr_group_breakdown(by_trust_group: pd.DataFrame, period: Period, *, factor: float) -> pd.DataFrame:
    """Per trust × covered diagnosis group: spells, O, E (rescaled as the HSMR's) and ``100 · O / E``."""
    out = by_trust_group.rename(columns={"PROCODE3": "PROVIDER_CODE"}).copy()
    out["EXPECTED"] = out["EXPECTED"].astype(float) * factor
    e = out["EXPECTED"].to_numpy()
    out["HSMR"] = np.round(100 * observed_ratio(out["OBSERVED"], e), 2)
    out["PERIOD"] = period.label
    out["EXPECTED"] = out["EXPECTED"].round(4)
    return out[HSMR_GROUP_COLUMNS]


def bridge_table(steps: list[tuple[int, str, pd.DataFrame]], period: Period, *, shmi: pd.DataFrame,
                 hsmr: pd.DataFrame) -> pd.DataFrame:
    """The bridge (module doc): ``steps`` are (step, name, trust sums) in order, the SHMI's first.

    Every trust of the SHMI's table has a row at every step; a trust with no
    spell in a step's population has ``O = E = 0`` and an empty ratio there.
    ``shmi`` and ``hsmr`` are the period's published trust tables, whose
    values and bandings each row repeats.
    """
    codes = sorted(shmi["PROVIDER_CODE"].astype(str))
    frames = []
    for step, name, by_trust in steps:
        factor = rescale_factor(by_trust["OBSERVED"].sum(), by_trust["EXPECTED"].sum())
        sums = by_trust.assign(PROVIDER_CODE=by_trust["PROCODE3"].astype(str)).set_index("PROVIDER_CODE")
        o = sums["OBSERVED"].reindex(codes).fillna(0).astype("int64").to_numpy()
        e = sums["EXPECTED"].reindex(codes).fillna(0.0).astype(float).to_numpy() * factor
        ratio = observed_ratio(o, e)
        frames.append(pd.DataFrame({"PROVIDER_CODE": codes, "STEP": step, "STEP_NAME": name, "OBSERVED": o,
                                    "EXPECTED": e, "RATIO": ratio}))
    out = pd.concat(frames, ignore_index=True).sort_values(["PROVIDER_CODE", "STEP"], kind="mergesort")
    out["CHANGE"] = out.groupby("PROVIDER_CODE", sort=False)["RATIO"].diff()
    size = out["CHANGE"].abs().fillna(-1.0)  # step 1, and a step without a ratio, never the largest
    first_largest = size.groupby(out["PROVIDER_CODE"], sort=False).idxmax()  # the earliest of equal changes
    out["LARGEST_CHANGE"] = out.index.isin(first_largest[size[first_largest].to_numpy() >= 0].to_numpy())
    s = shmi.assign(PROVIDER_CODE=shmi["PROVIDER_CODE"].astype(str)).set_index("PROVIDER_CODE")
    h = hsmr.assign(PROVIDER_CODE=hsmr["PROVIDER_CODE"].astype(str)).set_index("PROVIDER_CODE")
    out["SHMI"] = out["PROVIDER_CODE"].map(s["SHMI"])
    out["SHMI_BANDING"] = out["PROVIDER_CODE"].map(s["BANDING"]).astype("Int64")
    out["HSMR"] = out["PROVIDER_CODE"].map(h["HSMR"])
    out["HSMR_BANDING"] = out["PROVIDER_CODE"].map(h["BANDING"]).astype("Int64")
    out["PERIOD"] = period.label
    out["EXPECTED"] = out["EXPECTED"].round(4)
    out["RATIO"] = out["RATIO"].round(4)
    out["CHANGE"] = out["CHANGE"].round(4) + 0.0  # -0.0 prints as 0.0
    return out[BRIDGE_COLUMNS].reset_index(drop=True)
