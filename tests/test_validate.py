"""Validation: every row accepted or rejected with a reason; invalid codes counted, not rejected."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from spell_cases import TRUST_CODES, chain_case, episode, raw_deaths, raw_episodes

from shmi_spark.errors import InputError
from shmi_spark.hes.validate import (
    duplicate_keys,
    flag_episodes,
    invalid_code_counts,
    split_flagged,
    validate_deaths,
)
from shmi_spark.io.contract import DEATH_CONTRACT, EPISODE_CONTRACT
from shmi_spark.io.ingest import inspect_input, read_input

REQUIRED = [f.name for f in EPISODE_CONTRACT if f.required]

#: Rows of the reject-reason and invalid-code tests, by test: all validated by ONE ``flag_episodes``
#: call (the module fixture ``flagged``), each test's ``EPIKEY`` (and ``HESID``) prefixed with its
#: group's name so the groups cannot meet (no shared key, no duplicate across groups).  The date
#: bound ``LATEST`` is the reject-reason test's; the other groups' dates are all in 2008.
LATEST = dt.date(2026, 11, 29)
GROUPS = {
    "reasons": [
        episode(EPIKEY="ok"),
        episode(EPIKEY="corrupt", _CORRUPT="a|b"),
        episode(EPIKEY="nohesid", HESID=" "),
        episode(EPIKEY="noproc", PROCODE3=""),
        episode(EPIKEY="baddate", EPISTART="2007-02-30"),
        episode(EPIKEY="garbled", ADMIDATE="31/13/2007"),
        episode(EPIKEY="noadmi", ADMIDATE="1800-01-01"),
        episode(EPIKEY="ancient", ADMIDATE="0208-01-02", EPISTART="0208-01-02"),
        episode(EPIKEY="future", DISDATE="2031-01-15"),
        episode(EPIKEY="unknownprov", PROCODE3="ZZ9"),
        episode(EPIKEY="endsbefore", EPISTART="2008-01-12", EPIEND="2008-01-11"),
        episode(EPIKEY="startsbefore", EPISTART="2008-01-01"),
        episode(EPIKEY="disbefore", DISDATE="2008-01-09", EPIEND="2008-01-10", EPISTART="2008-01-10"),
        episode(EPIKEY="dup", HESID="X"),
        episode(EPIKEY="dup", HESID="X"),
    ],
    "invalid": [
        episode(EPIKEY="classpat", CLASSPAT="7"), episode(EPIKEY="sex", SEX="Q"),
        episode(EPIKEY="sex2", SEX="q"), episode(EPIKEY="admimeth", ADMIMETH="X9"),
        episode(EPIKEY="epistat", EPISTAT="5"), episode(EPIKEY="dismeth", DISMETH="6"),
        episode(EPIKEY="age", STARTAGE="150"), episode(EPIKEY="age2", STARTAGE="45.5"),
        episode(EPIKEY="epiorder", EPIORDER="first"), episode(EPIKEY="ok"),
    ],
    "dupvalid": [episode(EPIKEY="d", ADMIDATE="2007-02-30"), episode(EPIKEY="d")],
    "blank": [episode(EPIKEY="a", SEX="", STARTAGE="999", ADMIMETH="99", CLASSPAT=None, DISMETH="9",
                      EPIORDER=None, IMD04_DECILE="")],
    "noid": [episode(EPIKEY="s", HESID="SECRET", PROCODE3="ZZ9")],
}


def _prefix(group: str) -> str:
    return f"{group.upper()}."


def _own(group: str, row: dict) -> dict:
    """The row under its group's ids; a blank HESID stays blank (it is a reject reason)."""
    hesid = row["HESID"]
    return {**row, "EPIKEY": _prefix(group) + row["EPIKEY"],
            "HESID": _prefix(group) + hesid if hesid and hesid.strip() else hesid}


@dataclass
class Flagged:
    """The batched ``flag_episodes`` result: the DataFrame (cached) and its split, collected once."""

    df: DataFrame
    rows: list[dict]
    accepted: list[dict]
    rejects: list[dict]
    reject_columns: list[str]

    def group(self, group: str) -> Flagged:
        """One group's part, with ``EPIKEY`` unprefixed."""
        p = _prefix(group)

        def own(rows):
            return [{**r, "EPIKEY": r["EPIKEY"][len(p):]} for r in rows if (r["EPIKEY"] or "").startswith(p)]

        return Flagged(self.df.where(F.col("EPIKEY").startswith(p)), own(self.rows), own(self.accepted),
                       own(self.rejects), self.reject_columns)


@pytest.fixture(scope="module")
def flagged(spark) -> Flagged:
    rows = [_own(g, r) for g, group in GROUPS.items() for r in group]
    df = flag_episodes(raw_episodes(spark, rows), TRUST_CODES, latest=LATEST).cache()
    accepted, rejects = split_flagged(df)
    collected = [r.asDict() for r in df.collect()]
    return Flagged(df, collected, [r.asDict() for r in accepted.collect()],
                   [r.asDict() for r in rejects.collect()], rejects.columns)


def test_each_reject_reason(flagged):
    case = flagged.group("reasons")
    got = {r["EPIKEY"]: (r["REASON"], r["FIELD"]) for r in case.rejects}
    assert got == {
        "corrupt": ("MALFORMED_LINE", ""),
        "nohesid": ("MISSING_VALUE", "HESID"),
        "noproc": ("MISSING_VALUE", "PROCODE3"),
        "baddate": ("INVALID_DATE", "EPISTART"),
        "garbled": ("INVALID_DATE", "ADMIDATE"),
        "noadmi": ("MISSING_VALUE", "ADMIDATE"),
        "ancient": ("IMPLAUSIBLE_DATE", "ADMIDATE"),
        "future": ("IMPLAUSIBLE_DATE", "DISDATE"),
        "unknownprov": ("UNKNOWN_PROVIDER", "PROCODE3"),
        "endsbefore": ("EPISODE_ENDS_BEFORE_START", "EPIEND"),
        "startsbefore": ("EPISODE_STARTS_BEFORE_ADMISSION", "EPISTART"),
        "disbefore": ("DISCHARGE_BEFORE_ADMISSION", "DISDATE"),
        "dup": ("DUPLICATE_EPIKEY", "EPIKEY"),
    }
    assert sorted(r["EPIKEY"] for r in case.accepted) == ["dup", "ok"]
    assert len(case.accepted) + len(got) == len(GROUPS["reasons"])


def test_invalid_codes_are_the_unknown_level_and_counted(flagged):
    """METHOD.md §2: an invalid covariate code is that covariate's unknown level, counted per field and value."""
    case = flagged.group("invalid")
    assert [r for r in case.rows if r["REASON"] is not None] == []
    got = {r["EPIKEY"]: r for r in case.rows}
    assert got["classpat"]["CLASSPAT"] is None and got["sex"]["SEX"] is None
    assert got["admimeth"]["ADMIMETH"] is None and got["epistat"]["EPISTAT"] is None
    assert got["dismeth"]["DISMETH"] is None and got["epiorder"]["EPIORDER"] is None
    assert got["age"]["STARTAGE"] is None and got["age2"]["STARTAGE"] is None
    assert got["ok"]["SEX"] == "1" and got["ok"]["STARTAGE"] == 70 and got["ok"]["INVALID"] == []
    counts = {(r["FIELD"], r["VALUE"]): r["N"] for r in invalid_code_counts(case.df).collect()}
    assert counts == {("CLASSPAT", "7"): 1, ("SEX", "Q"): 2, ("ADMIMETH", "X9"): 1, ("EPISTAT", "5"): 1,
                      ("DISMETH", "6"): 1, ("STARTAGE", "150"): 1, ("STARTAGE", "45.5"): 1,
                      ("EPIORDER", "first"): 1}


INVALID_CODES_SPELL = chain_case("invalid_codes_spell", [
    episode(EPIKEY="a", PROVSPNOPS="S1", SEX="Q", ADMIMETH="X9", STARTAGE="150", CLASSPAT="7"),
])


def test_invalid_codes_reach_the_unknown_levels_of_the_spell(chain):
    (row,) = chain.rows(INVALID_CODES_SPELL).values()
    assert (row["SEX_CAT"], row["ADMIMETH_CAT"], row["AGE_BAND"]) == ("unknown", "unknown", "unknown")
    # CLASSPAT 7: not a day case, the spell stays
    assert [s["EXCLUSION"] for s in chain.spells(INVALID_CODES_SPELL)] == [None]


def test_duplicate_epikey_keeps_the_valid_copy(flagged):
    case = flagged.group("dupvalid")
    assert [r["ADMIDATE"] for r in case.accepted] == [dt.date(2008, 1, 10)]
    assert {r["EPIKEY"]: (r["REASON"], r["FIELD"]) for r in case.rejects} == {"d": ("INVALID_DATE", "ADMIDATE")}


def test_blank_and_unknown_codes_are_not_rejects_nor_invalid(flagged):
    case = flagged.group("blank")
    assert len(case.rows) == 1 and case.rows[0]["REASON"] is None
    assert invalid_code_counts(case.df).count() == 0


def test_rejects_carry_no_patient_identifier(flagged):
    assert "HESID" not in flagged.reject_columns
    assert [r["EPIKEY"] for r in flagged.group("noid").rejects] == ["s"]
    assert all("SECRET" not in str(v) for r in flagged.rejects for v in r.values())


def test_death_rejects(spark):
    ok, rejects = validate_deaths(raw_deaths(spark, [("P1", "2008-01-01"), ("", "2008-01-01"),
                                                     ("P2", "2008-02-30"), ("P3", None), ("P4", "1850-05-01")]))
    assert ok.count() == 1
    assert sorted((r["REASON"], r["FIELD"]) for r in rejects.collect()) == [
        ("IMPLAUSIBLE_DATE", "DOD"), ("INVALID_DATE", "DOD"), ("MISSING_VALUE", "DOD"), ("MISSING_VALUE", "HESID")]


def test_death_hesid_is_normalised_like_the_episodes(spark):
    ok, _ = validate_deaths(raw_deaths(spark, [(" p1 ", "2008-01-01")]))
    assert [r["HESID"] for r in ok.collect()] == ["P1"]


def test_missing_required_column_names_file_and_column(tmp_path):
    path = tmp_path / "episodes.csv"
    path.write_text("HESID|EPIKEY|PROCODE3\nP1|E1|RA1\n")
    with pytest.raises(InputError, match=r"episodes\.csv.*EPIORDER"):
        inspect_input(str(path), "hes episodes", EPISODE_CONTRACT)


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="deaths input not found"):
        inspect_input(str(tmp_path / "nope"), "deaths", DEATH_CONTRACT)


def test_pipe_delimited_text_with_lower_case_header(spark, tmp_path):
    row = episode()
    path = tmp_path / "hes.txt"
    path.write_text("|".join(c.lower() for c in REQUIRED) + "\n" + "|".join(row[c] or "" for c in REQUIRED)
                    + "\n" + "only|three|fields\n")
    df = read_input(spark, inspect_input(str(path), "hes episodes", EPISODE_CONTRACT), EPISODE_CONTRACT).cache()
    assert df.count() == 2
    # validate_episodes, with the flagged rows cached so that the two splits validate once
    accepted, rejects = split_flagged(flag_episodes(df, TRUST_CODES).cache())
    assert accepted.count() == 1
    assert [r["REASON"] for r in rejects.collect()] == ["MALFORMED_LINE"]
    assert df.where("DIAG_4_02 IS NULL").count() == 2  # optional columns added as null


def test_comma_delimited_deaths(spark, tmp_path):
    path = tmp_path / "deaths.csv"
    path.write_text("hesid,dod\nP1,2008-01-01\nP2,not a date\n")
    ok, rejects = validate_deaths(read_input(spark, inspect_input(str(path), "deaths", DEATH_CONTRACT),
                                             DEATH_CONTRACT))
    assert ok.count() == 1 and rejects.count() == 1


def test_broadcast_duplicate_keys_give_the_same_split(spark):
    """The pipeline's broadcast join of the few duplicated keys flags exactly as the shuffle join."""
    rows = [episode(EPIKEY="d", ADMIDATE="bad"), episode(EPIKEY="d", SEX="2"), episode(EPIKEY="e"),
            episode(EPIKEY="e"), episode(EPIKEY="e", EPIEND="bad"), episode(EPIKEY="f"), episode(EPIKEY=" ")]
    raw = raw_episodes(spark, rows)
    keys = duplicate_keys(raw)
    assert sorted(r["_DUP_KEY"] for r in keys.collect()) == ["d", "e"]
    cols = ["EPIKEY", "SEX", "EPIEND", "REASON", "FIELD"]
    plain = flag_episodes(raw, TRUST_CODES).select(*cols)
    broadcast = flag_episodes(raw, TRUST_CODES, dup_keys=keys, broadcast_dup_keys=True).select(*cols).cache()
    assert_df_equality(plain, broadcast, ignore_row_order=True)
    reasons = sorted((r["EPIKEY"] or "", r["REASON"]) for r in broadcast.collect() if r["REASON"])
    assert reasons == [("", "MISSING_VALUE"), ("d", "INVALID_DATE"), ("e", "DUPLICATE_EPIKEY"),
                       ("e", "INVALID_DATE")]
