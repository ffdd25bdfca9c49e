"""Rule tests for continuous inpatient spells (CIPS, :mod:`shmi_spark.hes.superspells`).

Hand-built spell-table rows (:func:`spell_cases.spell_row`), one patient per rule, linked in one
Spark job (the module fixture ``linked``); each test reads its patient's spells back as
``SPELL_ID → (CIPS_ID, CIPS_SEQ)``.  The superspell table is checked whole, row by row, for each
attribution.
"""

from __future__ import annotations

import pytest
from chispa import assert_df_equality
from spell_cases import SPELL_TABLE_SCHEMA, spell_frame, spell_row

from shmi_spark.hes.superspells import SUPERSPELL_COLUMNS, link_superspells, superspell_table


def _spell(hesid: str, spell: str, trust: str, admitted: str, discharged: str, *, dest: str = "19",
           source: str = "19", method: str = "21", **fields) -> dict:
    return spell_row(HESID=hesid, SPELL_ID=f"{trust}:{spell}", PROCODE3=trust, ADMIDATE=admitted,
                     DISDATE=discharged, DISDEST=dest, ADMISORC=source, ADMIMETH=method, **fields)


#: A → B → C across three trusts: same-day transfer (DISDEST and ADMISORC, ADMIMETH 81), then next day;
#: C dies in hospital; B is palliative.
CHAIN = [
    _spell("ABC", "A", "RA1", "2008-01-01", "2008-01-05", dest="51", DIAG_GROUP=57, AGE_BAND="70-74",
           CHARLSON_SCORE=3, CHARLSON_BAND="1-5", PRIOR_EMERGENCY=2, PRIOR_EMERGENCY_BAND="2"),
    _spell("ABC", "B", "RB2", "2008-01-05", "2008-01-10", dest="51", source="51", method="81", DIAG_GROUP=73,
           AGE_BAND="75-79", PALLIATIVE=1, EMERGENCY=0, ADMISORC_CAT="other_hospital", ADMIMETH_CAT="non-elective"),
    _spell("ABC", "C", "RC3", "2008-01-11", "2008-04-02", dest="79", source="51", method="81", DIAG_GROUP=66,
           DIS_FYEAR=2008, DIED=1, DEATH_IN_HOSPITAL=1, DOD="2008-04-02", EMERGENCY=0,
           ADMISORC_CAT="other_hospital"),
]
OTHER = [
    # each link flagged by one code only, on the day, the next day and two days later
    _spell("DEST", "1", "RA1", "2008-02-01", "2008-02-03", dest="51"),
    _spell("DEST", "2", "RB2", "2008-02-03", "2008-02-05"),
    _spell("SORC", "1", "RA1", "2008-02-01", "2008-02-03"),
    _spell("SORC", "2", "RB2", "2008-02-04", "2008-02-05", source="53"),
    _spell("METH", "1", "RA1", "2008-02-01", "2008-02-03"),
    _spell("METH", "2", "RB2", "2008-02-05", "2008-02-09", method="81"),
    # three days later: a new CIPS, whatever the codes
    _spell("GAP3", "1", "RA1", "2008-02-01", "2008-02-03", dest="51"),
    _spell("GAP3", "2", "RB2", "2008-02-06", "2008-02-09", source="51", method="81"),
    # a readmission the next day without a transfer code: a new CIPS
    _spell("READMIT", "1", "RA1", "2008-02-01", "2008-02-03"),
    _spell("READMIT", "2", "RA1", "2008-02-04", "2008-02-09", source="29", method="2A"),
    # admitted before the previous discharge: a new CIPS
    _spell("OVERLAP", "1", "RA1", "2008-02-01", "2008-02-05", dest="51"),
    _spell("OVERLAP", "2", "RB2", "2008-02-04", "2008-02-09", source="51"),
    # a transfer within one trust continues the CIPS
    _spell("SAMETRUST", "1", "RA1", "2008-02-01", "2008-02-03", dest="50"),
    _spell("SAMETRUST", "2", "RA1", "2008-02-03", "2008-02-09"),
    # two patients: X2's admission from another hospital is not X1's transfer
    _spell("X1", "1", "RA1", "2008-02-01", "2008-02-03", dest="51"),
    _spell("X2", "1", "RB2", "2008-02-03", "2008-02-09", source="51", method="81"),
    # the order is by admission, then discharge, then SPELL_ID, not by the order of the rows
    _spell("ORDER", "2", "RB2", "2008-02-03", "2008-02-09", source="51"),
    _spell("ORDER", "1", "RA1", "2008-02-01", "2008-02-03"),
    _spell("ORDER", "3", "RC3", "2008-02-09", "2008-02-10", source="52"),
]


@pytest.fixture(scope="module")
def linked(spark) -> dict[str, dict[str, tuple[str, int]]]:
    """``HESID → {SPELL_ID: (CIPS_ID, CIPS_SEQ)}`` of every spell above, linked at once."""
    got: dict[str, dict[str, tuple[str, int]]] = {}
    for r in link_superspells(spell_frame(spark, CHAIN + OTHER)).collect():
        got.setdefault(r["HESID"], {})[r["SPELL_ID"]] = (r["CIPS_ID"], r["CIPS_SEQ"])
    return got


def test_a_chain_of_three_transfers_across_trusts_is_one_cips(linked):
    assert linked["ABC"] == {"RA1:A": ("RA1:A", 1), "RB2:B": ("RA1:A", 2), "RC3:C": ("RA1:A", 3)}


@pytest.mark.parametrize("patient", ["DEST", "SORC", "METH"])
def test_a_transfer_flagged_by_one_code_only_same_day_next_day_two_days(linked, patient):
    """DISDEST 51 only, same day; ADMISORC 53 only, next day; ADMIMETH 81 only, two days later."""
    assert linked[patient] == {"RA1:1": ("RA1:1", 1), "RB2:2": ("RA1:1", 2)}


@pytest.mark.parametrize("patient", ["GAP3", "READMIT", "OVERLAP"])
def test_three_days_later_or_no_transfer_code_or_overlapping_starts_a_new_cips(linked, patient):
    trust = "RA1" if patient == "READMIT" else "RB2"
    assert linked[patient] == {"RA1:1": ("RA1:1", 1), f"{trust}:2": (f"{trust}:2", 1)}


def test_a_transfer_within_one_trust_continues_the_cips(linked):
    assert linked["SAMETRUST"] == {"RA1:1": ("RA1:1", 1), "RA1:2": ("RA1:1", 2)}


def test_two_patients_are_not_mixed(linked):
    assert linked["X1"] == {"RA1:1": ("RA1:1", 1)}
    assert linked["X2"] == {"RB2:1": ("RB2:1", 1)}


def test_spells_are_ordered_by_admission_not_by_row(linked):
    assert linked["ORDER"] == {"RA1:1": ("RA1:1", 1), "RB2:2": ("RA1:1", 2), "RC3:3": ("RA1:1", 3)}


def test_the_gap_is_an_option(spark):
    got = {r["SPELL_ID"]: r["CIPS_ID"]
           for r in link_superspells(spell_frame(spark, OTHER[6:8]), max_gap_days=3).collect()}
    assert got == {"RA1:1": "RA1:1", "RB2:2": "RA1:1"}
    with pytest.raises(ValueError, match="max_gap_days"):
        link_superspells(spell_frame(spark, OTHER[6:8]), max_gap_days=-1)


# ---- the superspell table ---------------------------------------------------------------------------------------

#: Alone: a CIPS of one spell, unchanged but for N_SPELLS.
ALONE = _spell("ALONE", "1", "RB2", "2008-03-01", "2008-03-04", DIAG_GROUP=73)


def _cips(trust: str) -> dict:
    """The A → B → C chain as one row: case mix from A, discharge from C, death and palliative over the chain."""
    return spell_row(HESID="ABC", SPELL_ID="RA1:A", PROCODE3=trust, ADMIDATE="2008-01-01", DISDATE="2008-04-02",
                     DIS_FYEAR=2008, DISDEST="79", ADMISORC="19", ADMIMETH="21", DIAG_GROUP=57, AGE_BAND="70-74",
                     CHARLSON_SCORE=3, CHARLSON_BAND="1-5", PRIOR_EMERGENCY=2, PRIOR_EMERGENCY_BAND="2",
                     DIED=1, DEATH_IN_HOSPITAL=1, DOD="2008-04-02", PALLIATIVE=1, N_SPELLS=3)


def _expected(spark, rows: list[dict]):
    return spark.createDataFrame([tuple(r[c] for c in SUPERSPELL_COLUMNS) for r in rows],
                                 schema=SPELL_TABLE_SCHEMA + ", N_SPELLS int")


@pytest.mark.parametrize(("attribution", "trusts"), [("first", ["RA1"]), ("last", ["RC3"]),
                                                     ("each", ["RA1", "RB2", "RC3"])])
def test_superspell_table_by_attribution(spark, attribution, trusts):
    got = superspell_table(spell_frame(spark, [*CHAIN, ALONE]), attribution=attribution)
    assert tuple(got.columns) == SUPERSPELL_COLUMNS
    expected = _expected(spark, [*[_cips(t) for t in trusts], {**ALONE, "N_SPELLS": 1}])
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_no_death_in_the_chain_no_death_in_the_cips(spark):
    alive = [{**s, "DIED": 0, "DEATH_IN_HOSPITAL": None, "DOD": None} for s in CHAIN]
    row = superspell_table(spell_frame(spark, alive)).collect()
    assert [(r["SPELL_ID"], r["DIED"], r["DEATH_IN_HOSPITAL"], r["DOD"], r["N_SPELLS"]) for r in row] == \
        [("RA1:A", 0, None, None, 3)]


def test_an_unknown_attribution_is_refused(spark):
    with pytest.raises(ValueError, match="first, last, each"):
        superspell_table(spell_frame(spark, [ALONE]), attribution="middle")
