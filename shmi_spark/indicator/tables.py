"""The indicator: SHMI per trust, rescaling, funnel limits and banding (METHOD.md §6).

Works on the small trust-level table (one row per trust) collected from
:func:`shmi_spark.model.scoring.expected_by_trust`; the statistics are those of
:mod:`shmi_spark.indicator.funnel` via :func:`shmi_spark.indicator.banding.band_table`, the same
code that ``shmi band`` runs.

Small trusts and zero deaths (the rule of :mod:`shmi_spark.indicator.banding`, with
``min_expected`` from the config key ``method.min_expected_deaths``, default 1):

* a trust whose expected deaths after the rescaling are below ``min_expected``
  is reported (``OBSERVED``, ``EXPECTED``, ``SHMI = O/E`` and its limits) but
  not banded: ``BANDING`` and ``OUTLIER_998`` are empty and ``BANDING_LABEL``
  reads "Not banded: fewer than 1 expected death"; it takes no part in the
  trim ranking, ``φ`` or ``τ²``;
* a trust with no deaths and at least ``min_expected`` expected deaths is
  banded by comparing ``SHMI = 0`` with its limits; its ``Z`` (``ln 0``) is
  empty;
* no output value is ever ``±inf``: a value that is not finite (``Z`` of a
  zero-death trust, the 99.8% upper limit of a tiny ``E``, a ratio over
  ``E = 0``) is written empty (``NaN``: an empty CSV cell, a parquet null).

The diagnosis-group breakdown applies the same rule to each trust × group
cell: a cell with fewer than ``min_expected`` expected deaths is not banded,
and a group is banded only when at least ``min_trusts`` cells can be.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from shmi_spark.indicator.banding import DEFAULT_MIN_EXPECTED, TooFewTrustsError, band_table, printed
from shmi_spark.indicator.periods import Period
from shmi_spark.model.scoring import rescale_factor

__all__ = [
    "TRUST_COLUMNS", "trust_indicator", "group_breakdown", "trust_areas", "area_summaries", "outlier_persistence",
    "shmi_panel",
]

TRUST_COLUMNS = (
    "PROVIDER_CODE", "PROVIDER_NAME", "PERIOD", "PERIOD_START", "PERIOD_END", "SPELLS", "OBSERVED",
    "EXPECTED", "SHMI", "OD95_LL", "OD95_UL", "OD998_LL", "OD998_UL", "PO998_LL", "PO998_UL",
    "BANDING", "BANDING_LABEL", "OUTLIER_998", "Z",
)


def trust_indicator(by_trust: pd.DataFrame, trusts: pd.DataFrame, period: Period, *,
                    rescale: bool, trim_fraction: float,
                    min_expected: float = DEFAULT_MIN_EXPECTED) -> tuple[pd.DataFrame, dict]:
    """One row per trust of the period with SHMI, limits and banding, and a summary.

    ``by_trust``: ``PROCODE3, SPELLS, OBSERVED, EXPECTED`` (unscaled).  When
    ``rescale`` (**[choice]**, METHOD.md §6), expected deaths are multiplied by
    ``ΣO/ΣE`` so that the national SHMI is 1; the factor is in the summary.
    A trust with fewer than ``min_expected`` expected deaths (after the
    rescaling) is not banded (module docstring); the summary counts such
    trusts in ``n_not_banded_small``.
    """
    factor = rescale_factor(by_trust["OBSERVED"].sum(), by_trust["EXPECTED"].sum()) if rescale else 1.0
    names = trusts.set_index("PROCODE3")["NAME"]
    df = pd.DataFrame({
        "PROVIDER_CODE": by_trust["PROCODE3"].astype(str).to_numpy(),
        "SPELLS": by_trust["SPELLS"].astype("int64").to_numpy(),
        "OBSERVED": by_trust["OBSERVED"].astype("int64").to_numpy(),
        "EXPECTED": (by_trust["EXPECTED"].astype(float) * factor).to_numpy(),
    }).sort_values("PROVIDER_CODE", kind="mergesort").reset_index(drop=True)
    banded, stats = band_table(df, "PROVIDER_CODE", "OBSERVED", "EXPECTED", trim_fraction=trim_fraction,
                               min_expected=min_expected)
    banded["PROVIDER_NAME"] = banded["PROVIDER_CODE"].map(names).fillna("")
    banded["PERIOD"] = period.label
    banded["PERIOD_START"] = period.start.isoformat()
    banded["PERIOD_END"] = period.end.isoformat()
    banded["EXPECTED"] = banded["EXPECTED"].round(4)
    summary = {"rescale_factor": factor, **stats}
    return banded[list(TRUST_COLUMNS)], summary


def group_breakdown(by_trust_group: pd.DataFrame, period: Period, *, factor: float,
                    trim_fraction: float, min_trusts: int = 10,
                    min_expected: float = DEFAULT_MIN_EXPECTED) -> pd.DataFrame:
    """Per trust × diagnosis group: spells, O, E (rescaled), O/E, and banding where big enough.

    A trust × group cell is banded when its expected deaths are at least
    ``min_expected`` and its group has at least ``min_trusts`` such cells (with
    enough deaths among them to estimate ``φ`` and ``τ²``); otherwise its
    ``BANDING`` is empty.  Cells below ``min_expected`` take no part in the
    group's trim, ``φ`` or ``τ²``.  ``RATIO`` is O/E, empty when ``E = 0``.
    """
    out = by_trust_group.rename(columns={"PROCODE3": "PROVIDER_CODE"}).copy()
    out["EXPECTED"] = out["EXPECTED"].astype(float) * factor
    with np.errstate(over="ignore"):              # O / a subnormal E: inf, written empty below
        out["RATIO"] = out["OBSERVED"].astype(float) / out["EXPECTED"].where(out["EXPECTED"] > 0)
    out["BANDING"] = pd.array([pd.NA] * len(out), dtype="Int64")
    for _, rows in out.groupby("DIAG_GROUP", sort=True):
        usable = rows[rows["EXPECTED"] > 0]
        if (usable["EXPECTED"] >= min_expected).sum() < min_trusts:
            continue
        try:
            banded, _ = band_table(usable[["PROVIDER_CODE", "OBSERVED", "EXPECTED"]].reset_index(drop=True),
                                   "PROVIDER_CODE", "OBSERVED", "EXPECTED", trim_fraction=trim_fraction,
                                   min_expected=min_expected, min_trusts=min_trusts)
        except TooFewTrustsError:       # e.g. too few cells with deaths to estimate φ
            continue
        out.loc[usable.index, "BANDING"] = banded["BANDING"].to_numpy()
    out["PERIOD"] = period.label
    out["EXPECTED"] = out["EXPECTED"].round(4)
    out["RATIO"] = printed(out["RATIO"])
    return out[["PROVIDER_CODE", "PERIOD", "DIAG_GROUP", "SPELLS", "OBSERVED", "EXPECTED", "RATIO", "BANDING"]]


def trust_areas(trust_rows: pd.DataFrame, trusts: pd.DataFrame) -> pd.DataFrame:
    """Each trust's region and peer group per period: ``PROVIDER_CODE, PERIOD, REGION, PEER_GROUP``.

    The peer group is the trust's third by spells in the period (``small``,
    ``medium``, ``large``; ties by table order); the region is the trust
    reference's ``REGION`` (empty where the reference has none).
    """
    df = trust_rows[["PROVIDER_CODE", "PERIOD", "SPELLS"]].merge(
        trusts[["PROCODE3", "REGION"]], left_on="PROVIDER_CODE", right_on="PROCODE3", how="left")
    ranks = df.groupby("PERIOD")["SPELLS"].rank(method="first", pct=True)
    df["PEER_GROUP"] = np.select([ranks <= 1 / 3, ranks <= 2 / 3], ["small", "medium"], "large")
    return df[["PROVIDER_CODE", "PERIOD", "REGION", "PEER_GROUP"]]


def area_summaries(trust_rows: pd.DataFrame, trusts: pd.DataFrame) -> pd.DataFrame:
    """National, regional and peer-group (trust size third by spells, :func:`trust_areas`) O, E and ratio."""
    areas = trust_areas(trust_rows, trusts)
    df = trust_rows.assign(REGION=areas["REGION"].to_numpy(), PEER_GROUP=areas["PEER_GROUP"].to_numpy())
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
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        ratio = out["OBSERVED"].astype(float) / out["EXPECTED"].astype(float)
    out["RATIO"] = printed(ratio)
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
