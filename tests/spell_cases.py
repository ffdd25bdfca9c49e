"""Builders for small hand-made HES cases used by the rule tests."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shmi_spark.config import MethodConfig
from shmi_spark.hes.diagnosis import lookup_tables
from shmi_spark.hes.linkage import linkage_counts
from shmi_spark.hes.spell_table import SPELL_COLUMNS, spell_table
from shmi_spark.hes.spells import build_spells
from shmi_spark.hes.validate import validate_deaths, validate_episodes
from shmi_spark.io.contract import DEATH_CONTRACT, EPISODE_CONTRACT, EPISODE_FIELDS
from shmi_spark.io.ingest import conform_frame

ACUTE = ["RA1", "RB2"]
TRUST_CODES = ["RA1", "RB2", "SP1"]

#: A tiny lookup: AMI, pneumonia, stroke, a perinatal group, symptoms.
LOOKUP = pd.DataFrame({
    "CODE": ["I21", "I22", "J18", "I63", "P07", "R06", "R69X", "A09X", "J181"],
    "DIAG_GROUP": [57, 57, 73, 66, 117, 140, 140, 83, 74],
})
PERINATAL = [117]

#: Charlson conditions used by the tests (weights as METHOD.md §4).
CHARLSON = pd.DataFrame([
    ("ami", "AMI", 5, "I21"), ("ami", "AMI", 5, "I252"),
    ("chf", "CHF", 13, "I50"), ("diab", "Diabetes", 3, "E109"), ("diab", "Diabetes", 3, "E119"),
    ("diabwc", "Diabetes complications", -1, "E102"), ("diabwc", "Diabetes complications", -1, "E112"),
    ("canc", "Cancer", 8, "C34"), ("metacanc", "Metastatic cancer", 14, "C78"),
    ("mld", "Mild liver", 8, "K703"), ("msld", "Severe liver", 18, "K721"),
    ("hp", "Paraplegia", 1, "G81"),
], columns=["CONDITION", "LABEL", "WEIGHT", "PREFIX"])


def episode(**fields) -> dict:
    """One raw episode row (all strings), with sensible defaults."""
    row = {c: None for c in EPISODE_FIELDS}
    row.update({
        "HESID": "P1", "EPIKEY": "E1", "PROCODE3": "RA1", "PROVSPNOPS": "S1", "EPIORDER": "1",
        "EPISTAT": "3", "ADMIDATE": "2008-01-10", "EPISTART": "2008-01-10", "EPIEND": "2008-01-15",
        "DISDATE": "2008-01-15", "ADMIMETH": "21", "DISMETH": "1", "CLASSPAT": "1",
        "STARTAGE": "70", "SEX": "1", "DIAG_4_01": "I219",
    })
    row.update(fields)
    return row


#: The spell table's schema (docs/tables.md, "spells"), in ``SPELL_COLUMNS`` order.
SPELL_TABLE_SCHEMA = (
    "HESID string, SPELL_ID string, PROCODE3 string, ADMIDATE date, DISDATE date, DIS_FYEAR int, "
    "DIAG_PRIMARY string, DIAG_GROUP int, CHARLSON_SCORE int, CHARLSON_BAND string, AGE_BAND string, "
    "SEX_CAT string, ADMIMETH_CAT string, ADM_MONTH int, BIRWEIT_BAND string, DIED int, "
    "DEATH_IN_HOSPITAL int, DOD date, PALLIATIVE int, IMD_FIFTH string, N_SECONDARY int, "
    "ADMIMETH string, ADMISORC string, DISDEST string, ADMISORC_CAT string, EMERGENCY int, "
    "PRIOR_EMERGENCY int, PRIOR_EMERGENCY_BAND string")


def spell_row(**fields) -> dict:
    """One spell-table row with sensible defaults (dates as ``yyyy-mm-dd`` text or dates)."""
    row = {
        "HESID": "P1", "SPELL_ID": "RA1:S1", "PROCODE3": "RA1", "ADMIDATE": "2008-01-10", "DISDATE": "2008-01-15",
        "DIS_FYEAR": 2007, "DIAG_PRIMARY": "I219", "DIAG_GROUP": 57, "CHARLSON_SCORE": 0, "CHARLSON_BAND": "0",
        "AGE_BAND": "70-74", "SEX_CAT": "male", "ADMIMETH_CAT": "non-elective", "ADM_MONTH": 1,
        "BIRWEIT_BAND": "n/a", "DIED": 0, "DEATH_IN_HOSPITAL": None, "DOD": None, "PALLIATIVE": 0,
        "IMD_FIFTH": "unknown", "N_SECONDARY": 0, "ADMIMETH": "21", "ADMISORC": "19", "DISDEST": "19",
        "ADMISORC_CAT": "home", "EMERGENCY": 1, "PRIOR_EMERGENCY": 0, "PRIOR_EMERGENCY_BAND": "0",
    }
    row.update(fields)
    for c in ("ADMIDATE", "DISDATE", "DOD"):
        if isinstance(row[c], str):
            row[c] = dt.date.fromisoformat(row[c])
    return row


def spell_frame(spark, rows: list[dict]) -> DataFrame:
    """Spell-table rows (:func:`spell_row`) as a DataFrame of the spell table's schema."""
    return spark.createDataFrame([tuple(r[c] for c in SPELL_COLUMNS) for r in rows], schema=SPELL_TABLE_SCHEMA)


def raw_episodes(spark, rows: list[dict]):
    """Text episodes (as read from a delimited file) conformed by the input contract."""
    schema = ", ".join(f"{c} string" for c in EPISODE_FIELDS) + ", _CORRUPT string"
    data = [tuple(r.get(c) for c in EPISODE_FIELDS) + (r.get("_CORRUPT"),) for r in rows]
    return conform_frame(spark.createDataFrame(data, schema=schema), EPISODE_CONTRACT, corrupt="_CORRUPT",
                         source="test.parquet")


def raw_deaths(spark, rows: list[tuple]):
    df = spark.createDataFrame([(h, d) for h, d in rows], schema="HESID string, DOD string")
    return conform_frame(df, DEATH_CONTRACT, source="deaths.parquet")


def chain_spells(spark, episodes: list[dict], deaths: list[tuple] = ()):
    """Validate → spells, as the pipeline does: (all spells with ``EXCLUSION``, rejects, valid deaths)."""
    accepted, rejects = validate_episodes(raw_episodes(spark, episodes), TRUST_CODES)
    d_ok, _ = validate_deaths(raw_deaths(spark, list(deaths)))
    return build_spells(accepted, acute_trusts=ACUTE), rejects, d_ok


def chain_table(spark, spells, deaths, method: MethodConfig | None = None):
    """Included spells → lookup → Charlson → covariates → linkage: the linked spells (``spell_table``)."""
    l4, l3 = lookup_tables(spark, LOOKUP)
    return spell_table(spells.where(spells.EXCLUSION.isNull()), deaths, lookup4=l4, lookup3=l3,
                       charlson=CHARLSON, perinatal_groups=PERINATAL, method=method or MethodConfig())


# ---- batched cases: every rule case through the chain at once (the spell table once per MethodConfig) ------------

#: The fields that identify a patient, an episode and a spell: prefixed with the case's name.
CASE_ID_FIELDS = ("HESID", "EPIKEY", "PROVSPNOPS")


def own_ids(prefix: str, value: str | None) -> str | None:
    """``value`` under ``prefix`` (after any leading blank, so trimming is still tested); blank stays blank."""
    if value is None or not value.strip():
        return value
    lead = value[: len(value) - len(value.lstrip())]
    return lead + prefix + value[len(lead):]


@dataclass(frozen=True)
class Case:
    """Hand-made episodes and deaths of one rule test, run with all the other cases of its ``method``.

    Every ``HESID``, ``EPIKEY`` and ``PROVSPNOPS`` is prefixed with ``NAME.`` (upper case: the contract
    upper-cases ``HESID``), so no two cases share a patient, an episode or a spell; results are
    handed back with the prefix removed, so a test reads its rows under the ids it wrote.
    """

    name: str
    episodes: tuple[dict, ...]
    deaths: tuple[tuple[str, str | None], ...]
    method: MethodConfig

    @property
    def prefix(self) -> str:
        return f"{self.name.upper()}."

    def raw_episodes(self) -> list[dict]:
        return [{**e, **{f: own_ids(self.prefix, e.get(f)) for f in CASE_ID_FIELDS}} for e in self.episodes]

    def raw_deaths(self) -> list[tuple]:
        return [(own_ids(self.prefix, h), d) for h, d in self.deaths]

    def strip(self, value):
        return value.replace(self.prefix, "") if isinstance(value, str) else value

    def owns(self, row: dict) -> bool:
        return (row["HESID"] or "").startswith(self.prefix)

    def unprefixed(self, row: dict) -> dict:
        return {k: self.strip(v) if k in ("SPELL_ID", *CASE_ID_FIELDS) else v for k, v in row.items()}


#: Every case declared by the test modules (at import, so before any fixture runs).
CASES: dict[str, Case] = {}


def chain_case(name: str, episodes: list[dict], deaths: list[tuple] = (),
               method: MethodConfig | None = None) -> Case:
    """Declare a case of the batched chain run; ``name`` (letters, digits, ``_``) must be unique."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"case name {name!r}: letters, digits and _ only")
    case = Case(name, tuple(episodes), tuple(deaths), method or MethodConfig())
    if CASES.get(name, case) != case:
        raise ValueError(f"two different cases named {name!r}")
    CASES[name] = case
    return case


@dataclass
class ChainRun:
    """The spell table of the cases of one ``MethodConfig``: collected once, the DataFrame cached."""

    table: list[dict]       # the spell table (SPELL_COLUMNS), every included spell of these cases
    linked: DataFrame       # spell_table's output with the linkage flags (cached)


class Chain:
    """Every case through validation and spells at once (neither depends on the method), then the
    spell table once per ``MethodConfig`` over its cases.  Each accessor returns one case's part,
    ids unprefixed."""

    def __init__(self, spark, cases) -> None:
        cases = list(cases)
        spells, _, deaths = chain_spells(spark, [e for c in cases for e in c.raw_episodes()],
                                         [d for c in cases for d in c.raw_deaths()])
        # cached before use, so that the spell tables reuse the spells (validation runs once)
        self.spells_df, self.deaths = spells.cache(), deaths.cache()
        self.all_spells = [r.asDict() for r in self.spells_df.collect()]
        by_method: dict[MethodConfig, list[str]] = {}
        for case in cases:
            by_method.setdefault(case.method, []).append(case.name.upper())
        self.runs: dict[MethodConfig, ChainRun] = {}
        for method, names in by_method.items():
            own = self.spells_df.where(F.substring_index(F.col("HESID"), ".", 1).isin(*names))
            linked = chain_table(spark, own, self.deaths, method).cache()
            self.runs[method] = ChainRun(table=[r.asDict() for r in linked.select(*SPELL_COLUMNS).collect()],
                                         linked=linked)

    def rows(self, case: Case) -> dict[str, dict]:
        """The case's spell-table rows by ``SPELL_ID``."""
        return {r["SPELL_ID"]: r for r in map(case.unprefixed, filter(case.owns, self.runs[case.method].table))}

    def spells(self, case: Case) -> list[dict]:
        """Every spell of the case, excluded or not (``build_spells``' columns)."""
        return [case.unprefixed(r) for r in self.all_spells if case.owns(r)]

    def table(self, case: Case) -> DataFrame:
        """The case's rows of the spell table as a DataFrame (``SPELL_COLUMNS``), ids unprefixed."""
        run = self.runs[case.method]
        own = run.linked.where(F.col("HESID").startswith(case.prefix))
        unprefix = {c: F.replace(F.col(c), F.lit(case.prefix), F.lit("")) for c in ("HESID", "SPELL_ID")}
        return own.select(*SPELL_COLUMNS).withColumns(unprefix)

    def linkage_counts(self, case: Case) -> dict:
        """:func:`linkage_counts` of the case's linked spells and deaths."""
        mine = F.col("HESID").startswith(case.prefix)
        return linkage_counts(self.runs[case.method].linked.where(mine), self.deaths.where(mine))
