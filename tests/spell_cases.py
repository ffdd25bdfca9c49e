"""Builders for small hand-made HES cases used by the rule tests."""

from __future__ import annotations

import pandas as pd

from shmi_spark.config import MethodConfig
from shmi_spark.hes.diagnosis import lookup_tables
from shmi_spark.io.contract import DEATH_CONTRACT, EPISODE_CONTRACT
from shmi_spark.io.ingest import EPISODE_FIELDS, conform_frame
from shmi_spark.hes.spell_table import SPELL_COLUMNS, spell_table
from shmi_spark.hes.spells import build_spells
from shmi_spark.hes.validate import validate_deaths, validate_episodes

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


def raw_episodes(spark, rows: list[dict]):
    """Text episodes (as read from a delimited file) conformed by the input contract."""
    schema = ", ".join(f"{c} string" for c in EPISODE_FIELDS) + ", _CORRUPT string"
    data = [tuple(r.get(c) for c in EPISODE_FIELDS) + (r.get("_CORRUPT"),) for r in rows]
    return conform_frame(spark.createDataFrame(data, schema=schema), EPISODE_CONTRACT, corrupt="_CORRUPT",
                         source="test.parquet")


def raw_deaths(spark, rows: list[tuple]):
    df = spark.createDataFrame([(h, d) for h, d in rows], schema="HESID string, DOD string")
    return conform_frame(df, DEATH_CONTRACT, source="deaths.parquet")


def run_spells(spark, episodes: list[dict], deaths: list[tuple] = (), method: MethodConfig | None = None):
    """Validate → spells → spell table; returns (table rows by SPELL_ID, all spells, rejects, linked)."""
    method = method or MethodConfig()
    accepted, rejects = validate_episodes(raw_episodes(spark, episodes), TRUST_CODES)
    d_ok, _ = validate_deaths(raw_deaths(spark, list(deaths)))
    spells = build_spells(accepted, acute_trusts=ACUTE)
    included = spells.where(spells.EXCLUSION.isNull())
    l4, l3 = lookup_tables(spark, LOOKUP)
    linked = spell_table(included, d_ok, lookup4=l4, lookup3=l3, charlson=CHARLSON,
                         perinatal_groups=PERINATAL, method=method)
    table = linked.select(*SPELL_COLUMNS)
    rows = {r["SPELL_ID"]: r.asDict() for r in table.collect()}
    return rows, spells, rejects, linked
