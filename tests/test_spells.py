"""Rule tests for METHOD.md §1–4 on small hand-built cases, run through the whole chain at once.

Each test declares its case (episodes and deaths) with :func:`spell_cases.chain_case` beside
it; the session fixture ``chain`` runs every declared case through validation and spells at once,
then lookup → Charlson → covariates → linkage once for the default method and once for the cases
of :data:`ALT_METHOD`.  Each case has its own ids (``HESID``, ``EPIKEY`` and ``PROVSPNOPS``
prefixed with the case's name, so cases cannot link to each other), and each test gets its own
rows back with the prefix removed.  The column functions themselves are tested directly in
``test_columns.py``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F
from spell_cases import SPELL_TABLE_SCHEMA, chain_case, episode, spell_frame, spell_row

from shmi_spark.config import MethodConfig
from shmi_spark.errors import InputError
from shmi_spark.hes.prepare import SPELLS_MANIFEST, check_spell_table, read_spell_table, write_spell_table
from shmi_spark.hes.spell_table import HSMR_COLUMNS, SPELL_COLUMNS

D = dt.date.fromisoformat

#: The second run: three options at once.  Each case run with it is built so that only its own
#: option can change its result (no death for the Charlson and symptom cases, no comorbidity and
#: no symptom code for the death-window case).
ALT_METHOD = MethodConfig(death_window_days=31, charlson_hierarchy=True, symptom_second_episode=True)


MULTI_EPISODE = chain_case("multi_episode", [
    episode(EPIKEY="E2", EPIORDER="2", EPISTART="2008-01-12", EPIEND="2008-01-20", DISDATE="2008-01-20",
            DISMETH="1", DIAG_4_01="J189", STARTAGE="71", SEX="2", ADMIMETH="11",
            DIAG_4_02="I500"),
    episode(EPIKEY="E1", EPIORDER="1", EPISTART="2008-01-10", EPIEND="2008-01-12", DISDATE=None,
            DISMETH="8", DIAG_4_01="I219", STARTAGE="70", SEX="1", ADMIMETH="21",
            DIAG_4_02="E119"),
])


def test_multi_episode_spell_first_gives_case_mix_last_gives_discharge(chain):
    rows = chain.rows(MULTI_EPISODE)
    assert list(rows) == ["RA1:S1"]
    r = rows["RA1:S1"]
    assert (r["DIAG_PRIMARY"], r["DIAG_GROUP"], r["AGE_BAND"], r["SEX_CAT"], r["ADMIMETH_CAT"]) == \
        ("I219", 57, "70-74", "male", "non-elective")
    assert (r["ADMIDATE"], r["DISDATE"], r["DIS_FYEAR"]) == (D("2008-01-10"), D("2008-01-20"), 2007)
    assert (r["CHARLSON_SCORE"], r["CHARLSON_BAND"]) == (3, "1-5")  # diabetes from the first episode only
    assert r["DIED"] == 0 and r["DEATH_IN_HOSPITAL"] is None and r["DOD"] is None


SPELL_KEY = chain_case("spell_key", [
    episode(EPIKEY="E1", PROVSPNOPS=None, EPIORDER="1", EPIEND="2008-01-12", DISDATE=None, DISMETH="8"),
    episode(EPIKEY="E2", PROVSPNOPS=" ", EPIORDER="2", EPISTART="2008-01-12"),
    episode(EPIKEY="E3", PROVSPNOPS=None, ADMIDATE="2008-03-01", EPISTART="2008-03-01",
            EPIEND="2008-03-02", DISDATE="2008-03-02"),
])


def test_spell_key_without_provspnops(chain):
    """A missing or blank PROVSPNOPS: the episodes of one admission still make one spell (spell_key: test_columns)."""
    rows = chain.rows(SPELL_KEY)
    assert sorted(rows) == ["P1:RA1:2008-01-10", "P1:RA1:2008-03-01"]
    assert rows["P1:RA1:2008-01-10"]["DISDATE"] == D("2008-01-15")


TRANSFER = chain_case("transfer", [
    episode(EPIKEY="E1", PROCODE3="RA1", PROVSPNOPS="S1", ADMIDATE="2008-01-10", EPISTART="2008-01-10",
            EPIEND="2008-01-15", DISDATE="2008-01-15", DISDEST="51"),
    episode(EPIKEY="E2", PROCODE3="RB2", PROVSPNOPS="T1", ADMIDATE="2008-01-15", EPISTART="2008-01-15",
            EPIEND="2008-01-18", DISDATE="2008-01-18", DISMETH="4", ADMISORC="51"),
], deaths=[("P1", "2008-01-18")])


def test_transfer_then_death_goes_to_second_trust_only(chain):
    rows = chain.rows(TRANSFER)
    assert rows["RA1:S1"]["DIED"] == 0
    assert rows["RB2:T1"]["DIED"] == 1 and rows["RB2:T1"]["DEATH_IN_HOSPITAL"] == 1
    assert rows["RB2:T1"]["DOD"] == D("2008-01-18")


READMISSION = chain_case("readmission", [
    episode(EPIKEY="E1", PROVSPNOPS="S1", ADMIDATE="2008-01-01", EPISTART="2008-01-01",
            EPIEND="2008-01-05", DISDATE="2008-01-05"),
    episode(EPIKEY="E2", PROVSPNOPS="S2", ADMIDATE="2008-01-10", EPISTART="2008-01-10",
            EPIEND="2008-01-12", DISDATE="2008-01-12"),
], deaths=[("P1", "2008-01-20")])


def test_readmission_then_death_only_last_spell_dies(chain):
    rows = chain.rows(READMISSION)
    assert rows["RA1:S1"]["DIED"] == 0
    assert rows["RA1:S2"]["DIED"] == 1 and rows["RA1:S2"]["DEATH_IN_HOSPITAL"] == 0


_DAY_30_31 = dict(
    episodes=[episode(HESID="P30", EPIKEY="E1", PROVSPNOPS="A"), episode(HESID="P31", EPIKEY="E2", PROVSPNOPS="B")],
    deaths=[("P30", (D("2008-01-15") + dt.timedelta(days=30)).isoformat()),
            ("P31", (D("2008-01-15") + dt.timedelta(days=31)).isoformat())])
DAY_30_31 = chain_case("day_30_31", **_DAY_30_31)
DAY_30_31_WINDOW_31 = chain_case("day_30_31_window_31", **_DAY_30_31, method=ALT_METHOD)


def test_death_on_day_30_counts_and_day_31_does_not(chain):
    rows = chain.rows(DAY_30_31)
    assert rows["RA1:A"]["DIED"] == 1 and rows["RA1:A"]["DEATH_IN_HOSPITAL"] == 0
    assert rows["RA1:B"]["DIED"] == 0
    # the window is a setting
    rows = chain.rows(DAY_30_31_WINDOW_31)
    assert rows["RA1:B"]["DIED"] == 1


DISMETH_4 = chain_case("dismeth_4", [episode(DISMETH="4")])


def test_death_in_hospital_without_ons_record(chain):
    r = chain.rows(DISMETH_4)["RA1:S1"]
    assert (r["DIED"], r["DEATH_IN_HOSPITAL"], r["DOD"]) == (1, 1, D("2008-01-15"))


DISCHARGE_DAY = chain_case("discharge_day", [episode()], deaths=[("P1", "2008-01-15")])


def test_ons_death_on_discharge_day_is_in_hospital(chain):
    rows = chain.rows(DISCHARGE_DAY)
    assert rows["RA1:S1"]["DIED"] == 1 and rows["RA1:S1"]["DEATH_IN_HOSPITAL"] == 1


BEFORE_ADMISSION = chain_case("before_admission", [episode()], deaths=[("P1", "2007-12-01")])


def test_ons_death_before_admission_is_reported_not_linked(chain):
    assert chain.rows(BEFORE_ADMISSION)["RA1:S1"]["DIED"] == 0
    counts = chain.linkage_counts(BEFORE_ADMISSION)
    assert counts["deaths_before_first_admission"] == 1
    assert counts["deaths_linked"] == 0


DUPLICATE_DEATHS = chain_case("duplicate_deaths", [episode()],
                              deaths=[("P1", "2008-03-20"), ("P1", "2008-01-30"), ("P1", "2008-01-31")])


def test_duplicate_death_records_keep_earliest_and_are_counted(chain):
    rows = chain.rows(DUPLICATE_DEATHS)
    assert rows["RA1:S1"]["DOD"] == D("2008-01-30") and rows["RA1:S1"]["DIED"] == 1
    counts = chain.linkage_counts(DUPLICATE_DEATHS)
    assert (counts["death_records"], counts["duplicate_death_records"], counts["patients_with_ons_death"]) == (3, 2, 1)


EXCLUDED_LAST = chain_case("excluded_last", [
    episode(EPIKEY="E1", PROVSPNOPS="S1"),
    episode(EPIKEY="E2", PROVSPNOPS="S2", CLASSPAT="2", ADMIDATE="2008-01-20", EPISTART="2008-01-20",
            EPIEND="2008-01-20", DISDATE="2008-01-20"),
], deaths=[("P1", "2008-01-25")])


def test_excluded_spells_do_not_take_the_death(chain):
    """A day case after the last included spell is excluded first: the death goes to the ordinary spell."""
    rows = chain.rows(EXCLUDED_LAST)
    assert rows["RA1:S1"]["DIED"] == 1
    assert "RA1:S2" not in rows


EXCLUSIONS = chain_case("exclusions", [
    episode(HESID="A", EPIKEY="E1", PROVSPNOPS="1"),
    episode(HESID="B", EPIKEY="E2", PROVSPNOPS="2", CLASSPAT="2"),
    episode(HESID="C", EPIKEY="E3", PROVSPNOPS="3", CLASSPAT="3"),
    episode(HESID="D", EPIKEY="E4", PROVSPNOPS="4", CLASSPAT="4"),
    episode(HESID="E", EPIKEY="E5", PROVSPNOPS="5", DISMETH="5", STARTAGE="7001", DIAG_4_01="P070"),
    episode(HESID="F", EPIKEY="E6", PROVSPNOPS="6", PROCODE3="SP1"),
    episode(HESID="G", EPIKEY="E7", PROVSPNOPS="7", EPISTAT="1", EPIEND=None, DISDATE=None),
    episode(HESID="H", EPIKEY="E8", PROVSPNOPS="8", EPIORDER="1", EPIEND="2008-01-12", DISDATE=None,
            DISMETH="8"),
    episode(HESID="H", EPIKEY="E9", PROVSPNOPS="8", EPIORDER="2", EPISTAT="1", EPISTART="2008-01-12",
            EPIEND=None, DISDATE=None, DISMETH=None),
    episode(HESID="I", EPIKEY="E10", PROVSPNOPS="9", CLASSPAT="5"),
])


def test_exclusions_each_counted_by_reason(chain):
    spells = chain.spells(EXCLUSIONS)
    got = Counter(r["EXCLUSION"] for r in spells)
    assert got == {None: 2, "DAY_CASE_OR_REGULAR_ATTENDER": 3, "STILLBIRTH": 1, "NOT_ACUTE_TRUST": 1,
                   "NO_DISCHARGE_DATE": 1}
    # the unfinished single-episode spell G never becomes a spell
    assert [r for r in spells if r["HESID"] == "G"] == []


MISSING_LEVELS = chain_case("missing_levels", [
    episode(EPIKEY="E1", PROVSPNOPS="1", STARTAGE=None, SEX="9", ADMIMETH="99"),
    episode(EPIKEY="E2", PROVSPNOPS="2", STARTAGE="999", SEX="", ADMIMETH=None, HESID="Q"),
    episode(EPIKEY="E3", PROVSPNOPS="3", STARTAGE="7003", SEX="0", ADMIMETH="2A", HESID="R"),
])


def test_missing_age_sex_method_are_kept_as_unknown(chain):
    """Raw missing and HES null codes keep the spell and reach the unknown levels (the levels: test_columns)."""
    rows = chain.rows(MISSING_LEVELS)
    got = [(rows[k]["AGE_BAND"], rows[k]["SEX_CAT"], rows[k]["ADMIMETH_CAT"]) for k in ("RA1:1", "RA1:2", "RA1:3")]
    assert got == [
        ("unknown", "unknown", "unknown"), ("unknown", "unknown", "unknown"), ("<1", "unknown", "non-elective")]


CHARLSON_POSITIONS = chain_case("charlson_positions", [
    # cancer + metastatic + CHF in positions 02, 05 and 20: 8 + 14 + 13 = 35 (no hierarchy by default)
    episode(HESID="D", EPIKEY="4", PROVSPNOPS="4", DIAG_4_02="C349", DIAG_4_05="C787", DIAG_4_20="I500"),
    # the primary diagnosis is not a comorbidity
    episode(HESID="E", EPIKEY="5", PROVSPNOPS="5", DIAG_4_01="I500"),
])


def test_charlson_from_every_secondary_position_and_not_the_primary(chain):
    """The score's arithmetic (once per condition, floor at 0): test_columns; here, which codes reach it."""
    got = {k: (v["CHARLSON_SCORE"], v["CHARLSON_BAND"]) for k, v in chain.rows(CHARLSON_POSITIONS).items()}
    assert got == {"RA1:4": (35, ">5"), "RA1:5": (0, "0")}


_HIERARCHY = [episode(HESID="D", EPIKEY="4", PROVSPNOPS="4", DIAG_4_02="C349", DIAG_4_03="C787",
                      DIAG_4_04="K703", DIAG_4_05="K721")]
HIERARCHY_OFF = chain_case("hierarchy_off", _HIERARCHY)
HIERARCHY_ON = chain_case("hierarchy_on", _HIERARCHY, method=ALT_METHOD)


def test_charlson_hierarchy_option_reaches_the_spell_table(chain):
    """``method.charlson_hierarchy`` is applied by the chain (the rule itself: test_columns)."""
    assert chain.rows(HIERARCHY_OFF)["RA1:4"]["CHARLSON_SCORE"] == 8 + 14 + 8 + 18
    assert chain.rows(HIERARCHY_ON)["RA1:4"]["CHARLSON_SCORE"] == 14 + 18


MESSY_CODES = chain_case("messy_codes", [
    episode(HESID="A", EPIKEY="1", PROVSPNOPS="1", DIAG_4_01="i21.9", DIAG_4_02="e11.9"),
    episode(HESID="B", EPIKEY="2", PROVSPNOPS="2", DIAG_4_01="a09", DIAG_4_02=" c34-1 "),
    episode(HESID="C", EPIKEY="3", PROVSPNOPS="3", DIAG_4_01="J18.1"),
])


def test_lower_case_dotted_and_three_character_codes(chain):
    rows = chain.rows(MESSY_CODES)
    def got(key):
        return rows[key]["DIAG_PRIMARY"], rows[key]["DIAG_GROUP"], rows[key]["CHARLSON_SCORE"]

    assert got("RA1:1") == ("I219", 57, 3)
    assert got("RA1:2") == ("A09X", 83, 8)
    # a 4-character entry wins over its 3-character category
    assert rows["RA1:3"]["DIAG_GROUP"] == 74


INVALID_PRIMARY = chain_case("invalid_primary", [
    episode(HESID="A", EPIKEY="1", PROVSPNOPS="1", DIAG_4_01="ZZZZ", DIAG_4_02="I500"),
    episode(HESID="B", EPIKEY="2", PROVSPNOPS="2", DIAG_4_01="U071"),
    episode(HESID="C", EPIKEY="3", PROVSPNOPS="3", DIAG_4_01=None),
])


def test_invalid_and_unmapped_primary_go_to_invalid_group(chain):
    rows = chain.rows(INVALID_PRIMARY)
    # the spell keeps its Charlson score; the invalid group's model ignores it (test_cells)
    assert {k: (v["DIAG_GROUP"], v["CHARLSON_SCORE"]) for k, v in rows.items()} == {
        "RA1:1": (0, 13), "RA1:2": (0, 0), "RA1:3": (0, 0)}


_SYMPTOM = [
    episode(EPIKEY="E1", EPIORDER="1", EPIEND="2008-01-12", DISDATE=None, DISMETH="8", DIAG_4_01="R069"),
    episode(EPIKEY="E2", EPIORDER="2", EPISTART="2008-01-12", DIAG_4_01="J189"),
]
SYMPTOM_OFF = chain_case("symptom_off", _SYMPTOM)
SYMPTOM_ON = chain_case("symptom_on", _SYMPTOM, method=ALT_METHOD)


def test_symptom_code_second_episode_option(chain):
    r = chain.rows(SYMPTOM_OFF)["RA1:S1"]
    assert (r["DIAG_PRIMARY"], r["DIAG_GROUP"]) == ("R069", 140)
    r = chain.rows(SYMPTOM_ON)["RA1:S1"]
    assert (r["DIAG_PRIMARY"], r["DIAG_GROUP"]) == ("J189", 73)


BIRTH_WEIGHT = chain_case("birth_weight", [
    episode(HESID="A", EPIKEY="1", PROVSPNOPS="1", DIAG_4_01="P073", STARTAGE="7001", BIRWEIT_1="0850"),
    episode(HESID="B", EPIKEY="2", PROVSPNOPS="2", DIAG_4_01="P073", STARTAGE="7001", BIRWEIT_1="9999"),
    episode(HESID="C", EPIKEY="3", PROVSPNOPS="3", DIAG_4_01="P073", STARTAGE="7001", BIRWEIT_1="3200"),
    episode(HESID="D", EPIKEY="4", PROVSPNOPS="4", DIAG_4_01="J189", BIRWEIT_1="3200"),
])


def test_birth_weight_band_only_in_perinatal_groups(chain):
    rows = chain.rows(BIRTH_WEIGHT)
    assert [rows[f"RA1:{i}"]["BIRWEIT_BAND"] for i in "1234"] == ["<1000", "unknown", "2500-4499", "n/a"]


CONTEXTUAL = chain_case("contextual", [
    episode(HESID="A", EPIKEY="1", PROVSPNOPS="1", EPIORDER="1", EPIEND="2008-01-12", DISDATE=None,
            DISMETH="8", DIAG_4_02="I10X", DIAG_4_03="E119", IMD04_DECILE="1"),
    episode(HESID="A", EPIKEY="2", PROVSPNOPS="1", EPIORDER="2", EPISTART="2008-01-12", TRETSPEF="315"),
    episode(HESID="B", EPIKEY="3", PROVSPNOPS="2", DIAG_4_04="Z515", IMD04_DECILE="10"),
    episode(HESID="C", EPIKEY="4", PROVSPNOPS="3", IMD04_DECILE=None),
])


def test_contextual_fields(chain):
    got = {k: (v["PALLIATIVE"], v["N_SECONDARY"], v["IMD_FIFTH"]) for k, v in chain.rows(CONTEXTUAL).items()}
    assert got == {"RA1:1": (1, 2, "5"), "RA1:2": (1, 1, "1"), "RA1:3": (0, 0, "unknown")}


SCHEMA = chain_case("schema", [episode()])


def test_spell_table_schema_contract(chain, spark):
    """docs/tables.md's columns and types; ADMISORC and DISDEST absent from the episode: null and ``unknown``."""
    expected = spark.createDataFrame(
        [("P1", "RA1:S1", "RA1", D("2008-01-10"), D("2008-01-15"), 2007, "I219", 57, 0, "0", "70-74", "male",
          "non-elective", 1, "n/a", 0, None, None, 0, "unknown", 0, "21", None, None, "unknown", 1, 0, "0")],
        schema=SPELL_TABLE_SCHEMA)
    assert_df_equality(chain.table(SCHEMA), expected, ignore_nullable=True)


# ---- the HSMR's fields (issue 16) --------------------------------------------------------------------------------

#: (ADMISORC as written, ADMISORC_CAT), one spell each.
_SOURCES = [("19", "home"), ("29", "home"), ("49", "other_hospital"), ("51", "other_hospital"),
            ("53", "other_hospital"), ("87", "other_hospital"), ("54", "care_home"), ("65", "care_home"),
            ("85", "care_home"), ("88", "care_home"), ("79", "birth"), ("39", "other"), ("66", "other"),
            ("98", "unknown"), ("99", "unknown"), ("XX", "unknown"), (None, "unknown"), (" 51 ", "other_hospital")]
#: (ADMIMETH as written, normalised ADMIMETH, EMERGENCY).
_METHODS = [("21", "21", 1), ("25", "25", 1), ("2a", "2A", 1), ("2B", "2B", 1), ("2C", "2C", 1), ("2D", "2D", 1),
            ("28", "28", 1), ("11", "11", 0), ("31", "31", 0), ("81", "81", 0), ("99", "99", 0), (None, None, 0),
            ("X9", None, 0)]
HSMR_FIELDS = chain_case("hsmr_fields", [
    *[episode(HESID=f"S{i}", EPIKEY=f"S{i}", PROVSPNOPS=f"S{i}", ADMISORC=code)
      for i, (code, _) in enumerate(_SOURCES)],
    *[episode(HESID=f"M{i}", EPIKEY=f"M{i}", PROVSPNOPS=f"M{i}", ADMIMETH=code)
      for i, (code, _, _) in enumerate(_METHODS)],
    # two episodes: source and method from the first, destination from the last
    episode(HESID="T", EPIKEY="T1", PROVSPNOPS="T", EPIORDER="1", EPIEND="2008-01-12", DISDATE=None, DISMETH="8",
            ADMIMETH="2B", ADMISORC="51", DISDEST="98"),
    episode(HESID="T", EPIKEY="T2", PROVSPNOPS="T", EPIORDER="2", EPISTART="2008-01-12", ADMIMETH="21",
            ADMISORC="19", DISDEST="54"),
])


def test_admission_source_method_and_destination_reach_the_spell_table(chain):
    rows = chain.rows(HSMR_FIELDS)
    assert [(rows[f"RA1:S{i}"]["ADMISORC_CAT"]) for i in range(len(_SOURCES))] == [c for _, c in _SOURCES]
    assert rows["RA1:S17"]["ADMISORC"] == "51"  # trimmed by the input contract
    assert [(rows[f"RA1:M{i}"]["ADMIMETH"], rows[f"RA1:M{i}"]["EMERGENCY"]) for i in range(len(_METHODS))] == \
        [(m, e) for _, m, e in _METHODS]
    t = rows["RA1:T"]
    assert (t["ADMIMETH"], t["ADMISORC"], t["DISDEST"], t["ADMISORC_CAT"], t["EMERGENCY"]) == \
        ("2B", "51", "54", "other_hospital", 1)


PRIOR_CHAIN = chain_case("prior_chain", [
    # an emergency 365 days before S4 (2007 has 365 days), and its resubmitted copy (DUPLICATE_SPELL)
    episode(EPIKEY="E1", PROVSPNOPS="S1", ADMIDATE="2007-01-10", EPISTART="2007-01-10", EPIEND="2007-01-12",
            DISDATE="2007-01-12", ADMIMETH="21"),
    episode(EPIKEY="E1B", PROVSPNOPS="S1B", ADMIDATE="2007-01-10", EPISTART="2007-01-10", EPIEND="2007-01-12",
            DISDATE="2007-01-12", ADMIMETH="21"),
    # an emergency day case: excluded, so not counted
    episode(EPIKEY="E2", PROVSPNOPS="S2", ADMIDATE="2007-06-01", EPISTART="2007-06-01", EPIEND="2007-06-01",
            DISDATE="2007-06-01", ADMIMETH="22", CLASSPAT="2"),
    # an elective admission: not counted
    episode(EPIKEY="E3", PROVSPNOPS="S3", ADMIDATE="2007-09-01", EPISTART="2007-09-01", EPIEND="2007-09-03",
            DISDATE="2007-09-03", ADMIMETH="11"),
    episode(EPIKEY="E4", PROVSPNOPS="S4", ADMIDATE="2008-01-10", EPISTART="2008-01-10", EPIEND="2008-01-15",
            DISDATE="2008-01-15", ADMIMETH="21"),
])


def test_prior_emergency_admissions_count_included_spells_only(chain):
    """The window's boundaries: test_prior_admissions; here, the chain counts kept spells, after the exclusions."""
    rows = chain.rows(PRIOR_CHAIN)
    assert sorted(rows) == ["RA1:S1", "RA1:S3", "RA1:S4"]
    got = {k: (v["PRIOR_EMERGENCY"], v["PRIOR_EMERGENCY_BAND"]) for k, v in rows.items()}
    assert got == {"RA1:S1": (0, "0"), "RA1:S3": (1, "1"), "RA1:S4": (1, "1")}
    spells = {r["SPELL_ID"]: r for r in chain.spells(PRIOR_CHAIN)}
    assert (spells["RA1:S1B"]["EXCLUSION"], spells["RA1:S1B"]["PRIOR_EMERGENCY"]) == ("DUPLICATE_SPELL", None)
    assert (spells["RA1:S2"]["EXCLUSION"], spells["RA1:S2"]["PRIOR_EMERGENCY_BAND"]) == \
        ("DAY_CASE_OR_REGULAR_ATTENDER", None)


# ---- reusing a spell table (``shmi run --spells``) -------------------------------------------------------------------

def _old_spell_table(spark, path) -> None:
    """A spell table as written before the HSMR's columns, with its _SUCCESS and manifest."""
    old = [c for c in SPELL_COLUMNS if c not in HSMR_COLUMNS]
    write_spell_table(spark, spell_frame(spark, [spell_row()]).select(*old), str(path))


def test_a_spell_table_without_the_hsmr_columns_is_refused_with_how_to_rebuild(spark, tmp_path):
    _old_spell_table(spark, tmp_path / "spells")
    # before Spark: from the manifest's schema
    with pytest.raises(InputError, match=r"earlier version.*PRIOR_EMERGENCY.*rebuild it .*shmi run --stage spells"):
        check_spell_table(str(tmp_path / "spells"))
    # without a manifest: from the parquet schema
    (tmp_path / "spells" / SPELLS_MANIFEST).unlink()
    with pytest.raises(InputError, match=r"earlier version.*ADMISORC_CAT.*rebuild it"):
        read_spell_table(spark, str(tmp_path / "spells"))


def test_a_table_missing_other_columns_is_not_a_spell_table(spark, tmp_path):
    spell_frame(spark, [spell_row()]).select("HESID", "SPELL_ID", "DIS_FYEAR").write.parquet(str(tmp_path / "t"))
    with pytest.raises(InputError, match="not a spell table, missing column"):
        read_spell_table(spark, str(tmp_path / "t"))


def test_a_current_spell_table_is_read_back(spark, tmp_path):
    table = spell_frame(spark, [spell_row(), spell_row(SPELL_ID="RA1:S2", DIS_FYEAR=2008)])
    write_spell_table(spark, table, str(tmp_path / "spells"))
    manifest = check_spell_table(str(tmp_path / "spells"))
    assert manifest is not None and set(manifest["schema"]) == set(SPELL_COLUMNS)
    got = read_spell_table(spark, str(tmp_path / "spells"))
    assert got.spells["rows_by_financial_year"] == {"2007": 1, "2008": 1}
    assert got.table.where(F.col("PRIOR_EMERGENCY_BAND") == "0").count() == 2
