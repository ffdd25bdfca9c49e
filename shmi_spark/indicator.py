"""The indicator: SHMI per trust, rescaling, funnel limits and banding (METHOD.md §6).

Works on the small trust-level table (one row per trust) collected from
:func:`shmi_spark.expected.expected_by_trust`; the statistics are those of
:mod:`shmi_spark.funnel` via :func:`shmi_spark.banding.band_table`, the same
code that ``shmi band`` runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .banding import band_table
from .errors import InputError
from .expected import rescale_factor
from .periods import Period

TRUST_COLUMNS = (
    "PROVIDER_CODE", "PROVIDER_NAME", "PERIOD", "PERIOD_START", "PERIOD_END", "SPELLS", "OBSERVED",
    "EXPECTED", "SHMI", "OD95_LL", "OD95_UL", "OD998_LL", "OD998_UL", "PO998_LL", "PO998_UL",
    "BANDING", "BANDING_LABEL", "OUTLIER_998", "Z",
)


def trust_indicator(by_trust: pd.DataFrame, trusts: pd.DataFrame, period: Period, *,
                    rescale: bool, trim_fraction: float) -> tuple[pd.DataFrame, dict]:
    """One row per trust of the period with SHMI, limits and banding, and a summary.

    ``by_trust``: ``PROCODE3, SPELLS, OBSERVED, EXPECTED`` (unscaled).  When
    ``rescale`` (**[choice]**, METHOD.md §6), expected deaths are multiplied by
    ``ΣO/ΣE`` so that the national SHMI is 1; the factor is in the summary.
    """
    factor = rescale_factor(by_trust["OBSERVED"].sum(), by_trust["EXPECTED"].sum()) if rescale else 1.0
    names = trusts.set_index("PROCODE3")["NAME"]
    df = pd.DataFrame({
        "PROVIDER_CODE": by_trust["PROCODE3"].astype(str).to_numpy(),
        "SPELLS": by_trust["SPELLS"].astype("int64").to_numpy(),
        "OBSERVED": by_trust["OBSERVED"].astype("int64").to_numpy(),
        "EXPECTED": (by_trust["EXPECTED"].astype(float) * factor).to_numpy(),
    }).sort_values("PROVIDER_CODE", kind="mergesort").reset_index(drop=True)
    banded, stats = band_table(df, "PROVIDER_CODE", "OBSERVED", "EXPECTED", trim_fraction=trim_fraction)
    banded["PROVIDER_NAME"] = banded["PROVIDER_CODE"].map(names).fillna("")
    banded["PERIOD"] = period.label
    banded["PERIOD_START"] = period.start.isoformat()
    banded["PERIOD_END"] = period.end.isoformat()
    banded["EXPECTED"] = banded["EXPECTED"].round(4)
    summary = {"rescale_factor": factor, **stats}
    return banded[list(TRUST_COLUMNS)], summary


def group_breakdown(by_trust_group: pd.DataFrame, period: Period, *, factor: float,
                    trim_fraction: float, min_trusts: int = 10) -> pd.DataFrame:
    """Per trust × diagnosis group: spells, O, E (rescaled), O/E, and banding where big enough.

    A group is banded when at least ``min_trusts`` trusts have expected deaths
    above zero in it; otherwise its banding is left empty.
    """
    out = by_trust_group.rename(columns={"PROCODE3": "PROVIDER_CODE"}).copy()
    out["EXPECTED"] = out["EXPECTED"].astype(float) * factor
    out["RATIO"] = np.where(out["EXPECTED"] > 0, out["OBSERVED"] / out["EXPECTED"].where(out["EXPECTED"] > 0), np.nan)
    out["BANDING"] = pd.array([pd.NA] * len(out), dtype="Int64")
    for group, rows in out.groupby("DIAG_GROUP", sort=True):
        usable = rows[rows["EXPECTED"] > 0]
        if len(usable) < min_trusts:
            continue
        try:
            banded, _ = band_table(usable[["PROVIDER_CODE", "OBSERVED", "EXPECTED"]].reset_index(drop=True),
                                   "PROVIDER_CODE", "OBSERVED", "EXPECTED", trim_fraction=trim_fraction)
        except InputError:
            continue
        out.loc[usable.index, "BANDING"] = banded["BANDING"].to_numpy()
    out["PERIOD"] = period.label
    out["EXPECTED"] = out["EXPECTED"].round(4)
    out["RATIO"] = out["RATIO"].round(4)
    return out[["PROVIDER_CODE", "PERIOD", "DIAG_GROUP", "SPELLS", "OBSERVED", "EXPECTED", "RATIO", "BANDING"]]


def area_summaries(trust_rows: pd.DataFrame, trusts: pd.DataFrame) -> pd.DataFrame:
    """National, regional and peer-group (trust size third by spells) O, E and ratio."""
    df = trust_rows.merge(trusts[["PROCODE3", "REGION"]], left_on="PROVIDER_CODE", right_on="PROCODE3",
                          how="left")
    ranks = df.groupby("PERIOD")["SPELLS"].rank(method="first", pct=True)
    df["PEER_GROUP"] = np.select([ranks <= 1 / 3, ranks <= 2 / 3], ["small", "medium"], "large")
    parts = []
    for level, key in (("national", None), ("region", "REGION"), ("peer_group", "PEER_GROUP")):
        keys = ["PERIOD"] + ([key] if key else [])
        agg = df.groupby(keys, dropna=False).agg(
            TRUSTS=("PROVIDER_CODE", "count"), SPELLS=("SPELLS", "sum"), OBSERVED=("OBSERVED", "sum"),
            EXPECTED=("EXPECTED", "sum"), HIGHER=("BANDING", lambda b: int((b == 1).sum())),
            LOWER=("BANDING", lambda b: int((b == 3).sum()))).reset_index()
        agg.insert(0, "LEVEL", level)
        agg["AREA"] = agg[key].fillna("unknown") if key else "England"
        parts.append(agg.drop(columns=[key]) if key else agg)
    out = pd.concat(parts, ignore_index=True)
    out["RATIO"] = (out["OBSERVED"] / out["EXPECTED"]).round(4)
    out["EXPECTED"] = out["EXPECTED"].round(4)
    return out[["LEVEL", "AREA", "PERIOD", "TRUSTS", "SPELLS", "OBSERVED", "EXPECTED", "RATIO", "HIGHER", "LOWER"]]


def outlier_persistence(trust_rows: pd.DataFrame, yearly_periods: list[str]) -> pd.DataFrame:
    """The paper's Table 4: outlying trusts (above the 99.8% line) per year, and whether they persist.

    A trust persists when it is an outlier in more than one of ``yearly_periods``.
    """
    yearly = trust_rows[trust_rows["PERIOD"].isin(yearly_periods)]
    outliers = yearly[yearly["OUTLIER_998"].fillna(False).astype(bool)]
    years_by_trust = outliers.groupby("PROVIDER_CODE")["PERIOD"].apply(lambda s: sorted(s)).to_dict()
    out = outliers[["PERIOD", "PROVIDER_CODE", "PROVIDER_NAME", "OBSERVED", "EXPECTED", "SHMI", "OD998_UL"]].copy()
    out["YEARS_OUTLYING"] = out["PROVIDER_CODE"].map(lambda c: ";".join(years_by_trust[c]))
    out["PERSISTS"] = out["PROVIDER_CODE"].map(lambda c: len(years_by_trust[c]) > 1)
    return out.sort_values(["PERIOD", "PROVIDER_CODE"]).reset_index(drop=True)


def shmi_panel(trust_rows: pd.DataFrame, yearly_periods: list[str]) -> pd.DataFrame:
    """Trusts × years SHMI panel (the paper's Figure 2 data)."""
    yearly = trust_rows[trust_rows["PERIOD"].isin(yearly_periods)]
    panel = yearly.pivot(index="PROVIDER_CODE", columns="PERIOD", values="SHMI")
    return panel.reindex(columns=yearly_periods).reset_index()
