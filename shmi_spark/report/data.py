"""A run's output folder read back for the report (README "Outputs", docs/tables.md).

The report reads only the run's own files: ``summary.json``, the trust,
diagnosis-group, area, contextual and model-quality tables, ``trust_areas``,
``diag_groups``, ``model_calibration`` and each period's
``model/<period>/diagnostics.csv``; and, when the run computed the HSMR
(``hsmr.enabled``; README "SHMI and HSMR"), ``hsmr_trust``, ``shmi_vs_hsmr``
(the bridge), ``hsmr_groups``, ``hsmr_trust_diag_group`` and, with baskets,
``basket_trust`` — a run
without them (the HSMR off, or a run from before it) has a report without
the HSMR.  In a publication run (``--publication``) the tables that carry
counts are read from ``publication/``, so the report suppresses small counts
exactly as the publication files do (METHOD.md §9).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from shmi_spark.errors import InputError

__all__ = ["RunTables", "read_run", "read_history", "period_slug", "count_value", "flag", "REQUIRED_FILES",
           "HSMR_FILES"]

#: What a run folder must hold for a report (a run stopped at ``--stage spells`` has none of them).
REQUIRED_FILES = ("summary.json", "shmi_trust.csv", "shmi_trust_diag_group.csv", "contextual.csv",
                  "shmi_area.csv", "model_quality.csv")
_PUBLISHED = ("shmi_trust", "shmi_trust_diag_group", "contextual", "shmi_area")
#: The HSMR's files the report reads, when the run has them (all but ``hsmr_groups`` have a publication copy).
HSMR_FILES = ("hsmr_trust", "shmi_vs_hsmr", "hsmr_groups", "hsmr_trust_diag_group", "basket_trust")
_HSMR_PUBLISHED = ("hsmr_trust", "shmi_vs_hsmr", "hsmr_trust_diag_group", "basket_trust")
_TEXT_COLUMNS = {"PERIOD": str, "PROVIDER_CODE": str, "REGION": str, "BASKET": str, "INDICATOR": str,
                 "STEP_NAME": str}


def period_slug(label: str) -> str:
    """A period label as a file-name part: ``2005/06`` → ``2005-06``, ``2009/10..2010/09`` → ``2009-10_2010-09``."""
    return str(label).replace("/", "-").replace("..", "_")


def flag(values: pd.Series) -> pd.Series:
    """A boolean column as read back from CSV (``True``/``False``, 1/0, empty) as booleans."""
    return values.astype(str).str.strip().str.lower().isin(["true", "1", "1.0"])


def count_value(value) -> float | None:
    """A count as published: a number, or ``None`` where it is suppressed (``*``) or empty."""
    number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    return None if pd.isna(number) else float(number)


@dataclass(frozen=True)
class RunTables:
    """A run's tables for the report; ``periods`` in the run's order, ``trend_periods`` those a trend spans."""

    folder: Path
    summary: dict
    trusts: pd.DataFrame
    groups: pd.DataFrame
    contextual: pd.DataFrame
    areas: pd.DataFrame
    trust_areas: pd.DataFrame
    diag_groups: pd.DataFrame
    quality: pd.DataFrame
    calibration: pd.DataFrame
    diagnostics: dict[str, pd.DataFrame]
    periods: list[str]
    trend_periods: list[str]
    publication: bool
    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    hsmr: pd.DataFrame = field(default_factory=pd.DataFrame)
    bridge: pd.DataFrame = field(default_factory=pd.DataFrame)
    hsmr_groups: pd.DataFrame = field(default_factory=pd.DataFrame)
    hsmr_by_group: pd.DataFrame = field(default_factory=pd.DataFrame)
    baskets: pd.DataFrame = field(default_factory=pd.DataFrame)
    _merged: dict[str, pd.DataFrame] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def has_hsmr(self) -> bool:
        """Whether the run computed the HSMR (its ``hsmr_trust`` table is there)."""
        return not self.hsmr.empty

    def shmi_hsmr(self, period: str) -> pd.DataFrame:
        """One row per trust of ``period`` with both indicators: the SHMI's and the HSMR's trust rows side by side.

        Columns ``PROVIDER_CODE, PROVIDER_NAME, SHMI, SHMI_BANDING,
        SHMI_BANDING_LABEL, HSMR, HSMR_LL95, HSMR_UL95, HSMR_BANDING,
        HSMR_BANDING_LABEL, HSMR_OBSERVED, HSMR_EXPECTED, IN_SHMI, IN_HSMR`` and
        the trust's largest bridge step ``LARGEST_STEP, LARGEST_STEP_NAME,
        LARGEST_STEP_CHANGE`` (empty without one); a trust in one table only
        has the other's columns empty.  Sorted by code.  Computed once per period (the
        pages of every trust read it); do not change the frame returned.
        """
        if period not in self._merged:
            self._merged[period] = self._shmi_hsmr(period)
        return self._merged[period]

    def _shmi_hsmr(self, period: str) -> pd.DataFrame:
        shmi = self.trusts.loc[self.trusts["PERIOD"] == period,
                               ["PROVIDER_CODE", "PROVIDER_NAME", "SHMI", "BANDING", "BANDING_LABEL"]]
        shmi = shmi.rename(columns={"BANDING": "SHMI_BANDING", "BANDING_LABEL": "SHMI_BANDING_LABEL"})
        hsmr = self.hsmr.loc[self.hsmr["PERIOD"] == period] if self.has_hsmr else self.hsmr
        cols = {"PROVIDER_NAME": "HSMR_NAME", "LL95": "HSMR_LL95", "UL95": "HSMR_UL95", "BANDING": "HSMR_BANDING",
                "BANDING_LABEL": "HSMR_BANDING_LABEL", "OBSERVED": "HSMR_OBSERVED", "EXPECTED": "HSMR_EXPECTED"}
        hsmr = hsmr.reindex(columns=["PROVIDER_CODE", "HSMR", *cols]).rename(columns=cols)
        out = shmi.assign(IN_SHMI=True).merge(hsmr.assign(IN_HSMR=True), on="PROVIDER_CODE", how="outer")
        out["IN_SHMI"] = out["IN_SHMI"].astype("boolean").fillna(False).astype(bool)
        out["IN_HSMR"] = out["IN_HSMR"].astype("boolean").fillna(False).astype(bool)
        out["PROVIDER_NAME"] = out["PROVIDER_NAME"].fillna(out["HSMR_NAME"]).fillna("")
        bridge = self.bridge
        if not bridge.empty:
            bridge = bridge[(bridge["PERIOD"] == period) & flag(bridge["LARGEST_CHANGE"])]
            largest = bridge.drop_duplicates("PROVIDER_CODE").set_index("PROVIDER_CODE")
            out["LARGEST_STEP"] = out["PROVIDER_CODE"].map(pd.to_numeric(largest["STEP"], errors="coerce"))
            out["LARGEST_STEP_NAME"] = out["PROVIDER_CODE"].map(largest["STEP_NAME"])
            out["LARGEST_STEP_CHANGE"] = out["PROVIDER_CODE"].map(pd.to_numeric(largest["CHANGE"], errors="coerce"))
        else:
            out = out.assign(LARGEST_STEP=float("nan"), LARGEST_STEP_NAME=None, LARGEST_STEP_CHANGE=float("nan"))
        return out.drop(columns="HSMR_NAME").sort_values("PROVIDER_CODE", kind="stable").reset_index(drop=True)

    def bridge_rows(self, code: str, period: str) -> pd.DataFrame:
        """One trust's rows of the bridge (``shmi_vs_hsmr``) in ``period``, by step; empty without the HSMR."""
        if self.bridge.empty:
            return self.bridge
        rows = self.bridge[(self.bridge["PROVIDER_CODE"] == code) & (self.bridge["PERIOD"] == period)]
        return rows.sort_values("STEP", kind="stable").reset_index(drop=True)

    def with_history(self, history: pd.DataFrame) -> RunTables:
        """The run with earlier runs' trust rows (:func:`read_history`): its trends then span them too."""
        if history.empty:
            return self
        earlier = [p for p in dict.fromkeys(history["PERIOD"]) if p not in self.periods]
        return replace(self, history=history[history["PERIOD"].isin(earlier)],
                       trend_periods=[*earlier, *self.trend_periods])

    def trend_rows(self, code: str) -> pd.DataFrame:
        """One trust's rows over ``trend_periods``, in that order (a period it has no row in left out)."""
        rows = pd.concat([self.history, self.trusts], ignore_index=True) if len(self.history) else self.trusts
        rows = rows[(rows["PROVIDER_CODE"] == code) & rows["PERIOD"].isin(self.trend_periods)]
        return rows.set_index("PERIOD").reindex(self.trend_periods).dropna(how="all").reset_index()

    @property
    def main_period(self) -> str:
        """The period the report opens on: the run's last (the pooled five years, or the 12 months)."""
        return self.periods[-1]

    def period_summary(self, period: str) -> dict:
        return next(p for p in self.summary.get("periods", []) if p["period"] == period)


def _read(folder: Path, name: str, *, required: bool = True) -> pd.DataFrame:
    path = folder / f"{name}.csv"
    if not path.is_file():
        if required:
            raise InputError(f"{folder} has no {name}.csv: not the output folder of a complete `shmi run`")
        return pd.DataFrame()
    return pd.read_csv(path, dtype=_TEXT_COLUMNS, keep_default_na=True)


def read_history(folders: Sequence[str | Path]) -> pd.DataFrame:
    """Earlier runs' trust rows (each folder's ``shmi_trust.csv``, or its publication copy), oldest first.

    For the trend over monthly refreshes: ``shmi refresh`` passes the periods
    it published before (``ROOT/periods/``).  A folder without the table is
    left out.
    """
    parts = []
    for folder in folders:
        root = Path(folder)
        for path in (root / "publication" / "shmi_trust.csv", root / "shmi_trust.csv"):
            if path.is_file():
                parts.append(pd.read_csv(path, dtype={"PERIOD": str, "PROVIDER_CODE": str}))
                break
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def read_run(folder: str | Path) -> RunTables:
    """Read a run's output folder (local) for the report; :class:`InputError` naming what is missing."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"no run output folder at {root}")
    missing = [n for n in REQUIRED_FILES if not (root / n).is_file()]
    if missing:
        raise InputError(f"{root} is not the output folder of a complete `shmi run` (no {', '.join(missing)})")
    try:
        summary = json.loads((root / "summary.json").read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{root / 'summary.json'} is not valid JSON: {exc}") from None
    periods = [p["period"] for p in summary.get("periods", [])]
    if not periods:
        raise InputError(f"{root / 'summary.json'} lists no period: the run stopped before the indicator")
    config = summary.get("config", {})
    publication = bool(config.get("output", {}).get("publication"))
    source = root / "publication" if publication else root
    tables = {name: _read(source, name) for name in _PUBLISHED}
    hsmr = {name: _read(source if name in _HSMR_PUBLISHED else root, name, required=False) for name in HSMR_FILES}
    five_year = bool(config.get("method", {}).get("five_year")) and len(periods) > 1
    diagnostics = {}
    for p in periods:
        path = root / "model" / period_slug(p) / "diagnostics.csv"
        diagnostics[p] = pd.read_csv(path) if path.is_file() else pd.DataFrame()
    return RunTables(
        folder=root, summary=summary, trusts=tables["shmi_trust"], groups=tables["shmi_trust_diag_group"],
        contextual=tables["contextual"], areas=tables["shmi_area"],
        trust_areas=_read(root, "trust_areas", required=False), diag_groups=_read(root, "diag_groups", required=False),
        quality=_read(root, "model_quality"), calibration=_read(root, "model_calibration", required=False),
        diagnostics=diagnostics, periods=periods, trend_periods=periods[:-1] if five_year else periods,
        publication=publication, hsmr=hsmr["hsmr_trust"], bridge=hsmr["shmi_vs_hsmr"],
        hsmr_groups=hsmr["hsmr_groups"], hsmr_by_group=hsmr["hsmr_trust_diag_group"], baskets=hsmr["basket_trust"])
