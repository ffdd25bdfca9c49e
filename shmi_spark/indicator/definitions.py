"""What an indicator counts: deaths, unit, diagnosis groups and case mix, as settings of one engine.

The SHMI (METHOD.md) and the HSMR (README "SHMI and HSMR") differ in four
settings of the same computation; every other step — covariate cells, the
per-group models, scoring, rescaling — is shared
(:func:`shmi_spark.indicator.compute.fit_and_score`).  A :class:`Definition`
names the four:

* ``deaths``: ``within_30_days`` (METHOD.md §3: in hospital or within 30
  days of discharge) or ``in_hospital`` (the spell's outcome is a death in
  hospital, ``DEATH_IN_HOSPITAL`` = 1: discharged dead or the date of death
  on or before discharge);
* ``unit``: ``provider_spell`` (the spell table) or ``superspell``
  (continuous inpatient spells: provider spells linked across transfers,
  :mod:`shmi_spark.hes.superspells`);
* ``covered_groups_only``: all diagnosis groups, or only the HSMR's groups
  (:func:`covered_groups`);
* ``case_mix``: ``shmi`` (METHOD.md §4) or ``hsmr``: the SHMI's terms but
  birth weight, with the Charlson score as a number (one slope,
  ``CHARLSON_INDEX``) instead of the SHMI's three bands, plus source of
  admission, deprivation fifth, palliative care and the patient's emergency
  admissions in the year before (0, 1, 2, 3+).

:data:`BRIDGE` walks from the SHMI to the HSMR one setting at a time; the
step with the largest change in a trust's ratio names the cause of a
disagreement between its two indicators.

:func:`indicator_table` gives the table an indicator is computed from: the
spell (or superspell) table with ``DIED`` as the definition counts it, its
groups, and every model term of :data:`shmi_spark.model.cells.COVARIATES`
(``n/a`` for the terms its case mix does not use, which then have no
parameter).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shmi_spark.errors import InputError
from shmi_spark.model.cells import HSMR_COVARIATES, NA_LEVEL

__all__ = ["Definition", "SHMI", "HSMR", "BRIDGE", "DEATHS", "UNITS", "CASE_MIXES", "indicator_table",
           "covered_groups", "COVERAGE_COLUMNS", "read_group_list"]

DEATHS = ("within_30_days", "in_hospital")
UNITS = ("provider_spell", "superspell")
CASE_MIXES = ("shmi", "hsmr")


@dataclass(frozen=True)
class Definition:
    """One indicator's definition: the four settings that tell the SHMI from the HSMR (module doc)."""

    name: str
    deaths: str = "within_30_days"
    unit: str = "provider_spell"
    covered_groups_only: bool = False
    case_mix: str = "shmi"

    def __post_init__(self) -> None:
        for value, allowed, what in ((self.deaths, DEATHS, "deaths"), (self.unit, UNITS, "unit"),
                                     (self.case_mix, CASE_MIXES, "case_mix")):
            if value not in allowed:
                raise ValueError(f"definition {self.name!r}: {what} must be one of {', '.join(allowed)}, "
                                 f"not {value!r}")

    def but(self, name: str, **changes) -> Definition:
        """This definition with ``changes``, named ``name``."""
        return dataclasses.replace(self, name=name, **changes)


SHMI = Definition("SHMI")
_STEP2 = SHMI.but("deaths in hospital only", deaths="in_hospital")
_STEP3 = _STEP2.but("the HSMR's diagnosis groups", covered_groups_only=True)
_STEP4 = _STEP3.but("superspells", unit="superspell")
HSMR = _STEP4.but("HSMR", case_mix="hsmr")

#: (step, name, definition): from the SHMI (1) to the HSMR (5), one setting changed at each step.
BRIDGE: tuple[tuple[int, str, Definition], ...] = (
    (1, "SHMI", SHMI),
    (2, "deaths in hospital only", _STEP2),
    (3, "the HSMR's diagnosis groups", _STEP3),
    (4, "superspells instead of provider spells", _STEP4),
    (5, "the HSMR's case mix (palliative care, prior emergency admissions, source, deprivation, "
        "Charlson score)", HSMR),
)


def _hsmr_terms() -> dict[str, object]:
    """The HSMR's own terms from the spell table's columns (docs/tables.md)."""
    return {
        "ADMISSION_SOURCE": F.col("ADMISORC_CAT"),
        "DEPRIVATION_FIFTH": F.col("IMD_FIFTH"),
        "PALLIATIVE_CARE": F.when(F.col("PALLIATIVE") == 1, F.lit("palliative")).otherwise(F.lit("not palliative")),
        "PRIOR_EMERGENCY_ADMISSIONS": F.col("PRIOR_EMERGENCY_BAND"),
        "CHARLSON_INDEX": F.col("CHARLSON_SCORE"),
    }


def indicator_table(spells: DataFrame, definition: Definition, *, superspells: DataFrame | None = None,
                    groups: list[int] | None = None) -> DataFrame:
    """The table ``definition`` is computed from (module doc): spells or superspells, its deaths, groups, terms.

    ``superspells`` (the superspell table, :func:`shmi_spark.hes.superspells.superspell_table`)
    is needed when ``definition.unit`` is ``superspell``; ``groups`` (the
    covered diagnosis groups) when ``covered_groups_only``.  Only ``DIED`` and
    the term columns change; every other column is the unit's table's.
    """
    if definition.unit == "superspell":
        if superspells is None:
            raise ValueError(f"definition {definition.name!r} counts superspells: pass the superspell table")
        table = superspells
    else:
        table = spells
    if definition.covered_groups_only:
        if groups is None:
            raise ValueError(f"definition {definition.name!r} covers some groups only: pass them")
        table = table.where(F.col("DIAG_GROUP").isin(*[int(g) for g in groups]))
    if definition.deaths == "in_hospital":
        in_hospital = (F.col("DIED") == 1) & (F.coalesce(F.col("DEATH_IN_HOSPITAL"), F.lit(0)) == 1)
        table = table.withColumn("DIED", in_hospital.cast("int"))
    if definition.case_mix == "hsmr":
        terms = _hsmr_terms() | {"BIRWEIT_BAND": F.lit(NA_LEVEL), "CHARLSON_BAND": F.lit(NA_LEVEL)}
    else:
        terms = {t: F.lit(NA_LEVEL) for t in HSMR_COVARIATES}
    return table.withColumns({name: F.coalesce(col, F.lit("unknown")).cast("string")  # type: ignore[arg-type]
                              for name, col in terms.items()})


COVERAGE_COLUMNS = ["DIAG_GROUP", "IN_HOSPITAL_DEATHS", "SHARE", "CUMULATIVE_SHARE", "COVERED"]


def covered_groups(spells: DataFrame, *, window_start: date, window_end: date, coverage: float,
                   invalid_group: int | None, listed: list[int] | None = None) -> pd.DataFrame:
    """The HSMR's diagnosis groups: the fewest with the most in-hospital deaths that reach ``coverage``.

    In-hospital deaths of the provider spells discharged in the modelling
    window, by group; the groups ranked by deaths (most first; ties by group
    number), taken in that order until their cumulative share of all
    in-hospital deaths is at least ``coverage`` (the group that crosses it is
    in).  The invalid-primary-diagnosis group is never covered (it is no
    diagnosis).  ``listed`` (``hsmr.groups_file``) replaces the ranking: exactly
    those groups are covered.  Returns :data:`COVERAGE_COLUMNS`, one row per
    group with spells in the window.
    """
    in_window = spells.where(F.col("DISDATE").between(F.lit(window_start), F.lit(window_end)))
    died = ((F.col("DIED") == 1) & (F.coalesce(F.col("DEATH_IN_HOSPITAL"), F.lit(0)) == 1)).cast("long")
    counts: pd.DataFrame = (in_window.groupBy(F.col("DIAG_GROUP").cast("int").alias("DIAG_GROUP"))
                            .agg(F.sum(died).alias("IN_HOSPITAL_DEATHS")).toPandas())
    counts["IN_HOSPITAL_DEATHS"] = counts["IN_HOSPITAL_DEATHS"].fillna(0).astype("int64")
    if invalid_group is not None:
        eligible = counts[counts["DIAG_GROUP"] != invalid_group]
    else:
        eligible = counts
    ranked = eligible.sort_values(["IN_HOSPITAL_DEATHS", "DIAG_GROUP"], ascending=[False, True], kind="mergesort")
    total = int(ranked["IN_HOSPITAL_DEATHS"].sum())
    ranked = ranked.assign(SHARE=ranked["IN_HOSPITAL_DEATHS"] / total if total else 0.0)
    ranked["CUMULATIVE_SHARE"] = ranked["SHARE"].cumsum()
    if listed is not None:
        ranked["COVERED"] = ranked["DIAG_GROUP"].isin([int(g) for g in listed])
    else:
        before = ranked["CUMULATIVE_SHARE"] - ranked["SHARE"]
        ranked["COVERED"] = (before < coverage - 1e-12) & (ranked["IN_HOSPITAL_DEATHS"] > 0)
    rest = counts[~counts["DIAG_GROUP"].isin(ranked["DIAG_GROUP"])].assign(SHARE=0.0, CUMULATIVE_SHARE=float("nan"),
                                                                         COVERED=False)
    out = pd.concat([ranked, rest], ignore_index=True) if len(rest) else ranked.reset_index(drop=True)
    return out[COVERAGE_COLUMNS].astype({"DIAG_GROUP": "int64", "COVERED": bool})


def read_group_list(path: str) -> list[int]:
    """The diagnosis groups of ``hsmr.groups_file``: a CSV with a ``DIAG_GROUP`` column of whole numbers."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"HSMR groups file {path}: cannot be read ({exc})") from None
    table.columns = [c.strip().upper() for c in table.columns]
    if "DIAG_GROUP" not in table.columns:
        raise InputError(f"HSMR groups file {path}: no column DIAG_GROUP")
    groups = []
    for line, value in enumerate(table["DIAG_GROUP"], start=2):
        text = str(value).strip()
        if not text.isdigit():
            raise InputError(f"HSMR groups file {path}, line {line}: field DIAG_GROUP {value!r} is not a group number")
        groups.append(int(text))
    if not groups:
        raise InputError(f"HSMR groups file {path}: no group")
    return sorted(set(groups))
