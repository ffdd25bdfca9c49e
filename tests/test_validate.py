"""Ingest and validation: every row accepted or rejected with a reason; clear input errors."""

from __future__ import annotations

import pytest
from chispa import assert_df_equality

from shmi_spark.config import InputConfig
from shmi_spark.errors import InputError
from shmi_spark.ingest import read_deaths, read_episodes
from shmi_spark.validate import duplicate_keys, flag_episodes, validate_deaths, validate_episodes
from spell_cases import TRUST_CODES, episode, raw_deaths, raw_episodes


def _reasons(spark, rows):
    accepted, rejects = validate_episodes(raw_episodes(spark, rows), TRUST_CODES)
    got = {r["EPIKEY"]: (r["REASON"], r["FIELD"]) for r in rejects.collect()}
    return accepted, got


def test_each_reject_reason(spark):
    rows = [
        episode(EPIKEY="ok"),
        episode(EPIKEY="corrupt", _CORRUPT="a|b"),
        episode(EPIKEY="nohesid", HESID=" "),
        episode(EPIKEY="noproc", PROCODE3=""),
        episode(EPIKEY="baddate", EPISTART="2007-02-30"),
        episode(EPIKEY="garbled", ADMIDATE="31/13/2007"),
        episode(EPIKEY="noadmi", ADMIDATE="1800-01-01"),
        episode(EPIKEY="classpat", CLASSPAT="7"),
        episode(EPIKEY="sex", SEX="Q"),
        episode(EPIKEY="admimeth", ADMIMETH="X9"),
        episode(EPIKEY="epistat", EPISTAT="5"),
        episode(EPIKEY="dismeth", DISMETH="6"),
        episode(EPIKEY="age", STARTAGE="150"),
        episode(EPIKEY="epiorder", EPIORDER="first"),
        episode(EPIKEY="unknownprov", PROCODE3="ZZ9"),
        episode(EPIKEY="endsbefore", EPISTART="2008-01-12", EPIEND="2008-01-11"),
        episode(EPIKEY="startsbefore", EPISTART="2008-01-01"),
        episode(EPIKEY="disbefore", DISDATE="2008-01-09", EPIEND="2008-01-10", EPISTART="2008-01-10"),
        episode(EPIKEY="dup", HESID="X"),
        episode(EPIKEY="dup", HESID="X"),
    ]
    accepted, got = _reasons(spark, rows)
    assert got == {
        "corrupt": ("MALFORMED_LINE", ""),
        "nohesid": ("MISSING_VALUE", "HESID"),
        "noproc": ("MISSING_VALUE", "PROCODE3"),
        "baddate": ("INVALID_DATE", "EPISTART"),
        "garbled": ("INVALID_DATE", "ADMIDATE"),
        "noadmi": ("MISSING_VALUE", "ADMIDATE"),
        "classpat": ("INVALID_CODE", "CLASSPAT"),
        "sex": ("INVALID_CODE", "SEX"),
        "admimeth": ("INVALID_CODE", "ADMIMETH"),
        "epistat": ("INVALID_CODE", "EPISTAT"),
        "dismeth": ("INVALID_CODE", "DISMETH"),
        "age": ("INVALID_CODE", "STARTAGE"),
        "epiorder": ("INVALID_CODE", "EPIORDER"),
        "unknownprov": ("UNKNOWN_PROVIDER", "PROCODE3"),
        "endsbefore": ("EPISODE_ENDS_BEFORE_START", "EPIEND"),
        "startsbefore": ("EPISODE_STARTS_BEFORE_ADMISSION", "EPISTART"),
        "disbefore": ("DISCHARGE_BEFORE_ADMISSION", "DISDATE"),
        "dup": ("DUPLICATE_EPIKEY", "EPIKEY"),
    }
    assert sorted(r["EPIKEY"] for r in accepted.collect()) == ["dup", "ok"]
    assert accepted.count() + len(got) == len(rows)


def test_duplicate_epikey_keeps_the_valid_copy(spark):
    accepted, got = _reasons(spark, [episode(EPIKEY="d", SEX="Q"), episode(EPIKEY="d", SEX="2")])
    assert [r["SEX"] for r in accepted.collect()] == ["2"]
    assert got == {"d": ("INVALID_CODE", "SEX")}


def test_blank_and_unknown_codes_are_not_rejects(spark):
    accepted, got = _reasons(spark, [episode(EPIKEY="a", SEX="", STARTAGE="999", ADMIMETH="99", CLASSPAT=None,
                                             DISMETH="9", EPIORDER=None, IMD04_DECILE="")])
    assert got == {} and accepted.count() == 1


def test_rejects_carry_no_patient_identifier(spark):
    _, rejects = validate_episodes(raw_episodes(spark, [episode(EPIKEY="s", HESID="SECRET", SEX="Q")]), TRUST_CODES)
    assert "HESID" not in rejects.columns
    assert all("SECRET" not in str(v) for r in rejects.collect() for v in r)


def test_death_rejects(spark):
    ok, rejects = validate_deaths(raw_deaths(spark, [("P1", "2008-01-01"), ("", "2008-01-01"),
                                                     ("P2", "2008-02-30"), ("P3", None)]))
    assert ok.count() == 1
    assert sorted((r["REASON"], r["FIELD"]) for r in rejects.collect()) == [
        ("INVALID_DATE", "DOD"), ("MISSING_VALUE", "DOD"), ("MISSING_VALUE", "HESID")]


def test_missing_required_column_names_file_and_column(spark, tmp_path):
    path = tmp_path / "episodes.csv"
    path.write_text("HESID|EPIKEY|PROCODE3\nP1|E1|RA1\n")
    with pytest.raises(InputError, match=r"episodes\.csv.*EPIORDER"):
        read_episodes(spark, str(path), InputConfig())


def test_missing_input_is_a_clear_error(spark, tmp_path):
    with pytest.raises(InputError, match="deaths input not found"):
        read_deaths(spark, str(tmp_path / "nope"), InputConfig())


def test_pipe_delimited_text_with_lower_case_header(spark, tmp_path):
    from shmi_spark.ingest import EPISODE_REQUIRED
    cols = [c.lower() for c in EPISODE_REQUIRED]
    row = episode()
    path = tmp_path / "hes.txt"
    path.write_text("|".join(cols) + "\n" + "|".join(row[c] or "" for c in EPISODE_REQUIRED) + "\n"
                    + "only|three|fields\n")
    df = read_episodes(spark, str(path), InputConfig())
    assert df.count() == 2
    accepted, rejects = validate_episodes(df, TRUST_CODES)
    assert accepted.count() == 1
    assert [r["REASON"] for r in rejects.collect()] == ["MALFORMED_LINE"]
    assert df.where("DIAG_4_02 IS NULL").count() == 2  # optional columns added as null


def test_comma_delimited_deaths(spark, tmp_path):
    path = tmp_path / "deaths.csv"
    path.write_text("hesid,dod\nP1,2008-01-01\nP2,not a date\n")
    ok, rejects = validate_deaths(read_deaths(spark, str(path), InputConfig()))
    assert ok.count() == 1 and rejects.count() == 1


def test_broadcast_duplicate_keys_give_the_same_split(spark):
    """The pipeline's broadcast join of the few duplicated keys flags exactly as the shuffle join."""
    rows = [episode(EPIKEY="d", SEX="Q"), episode(EPIKEY="d", SEX="2"), episode(EPIKEY="e"),
            episode(EPIKEY="e"), episode(EPIKEY="e", EPIEND="bad"), episode(EPIKEY="f"), episode(EPIKEY=" ")]
    raw = raw_episodes(spark, rows)
    keys = duplicate_keys(raw)
    assert sorted(r["_DUP_KEY"] for r in keys.collect()) == ["d", "e"]
    cols = ["RAW_EPIKEY", "SEX", "EPIEND", "REASON", "FIELD"]
    plain = flag_episodes(raw, TRUST_CODES).select(*cols)
    broadcast = flag_episodes(raw, TRUST_CODES, dup_keys=keys, broadcast_dup_keys=True).select(*cols)
    assert_df_equality(plain, broadcast, ignore_row_order=True)
    reasons = sorted((r["RAW_EPIKEY"], r["REASON"]) for r in broadcast.collect() if r["REASON"])
    assert reasons == [(" ", "MISSING_VALUE"), ("d", "INVALID_CODE"), ("e", "DUPLICATE_EPIKEY"),
                       ("e", "INVALID_DATE")]


def test_parse_date_accepts_only_full_iso_dates(spark):
    from pyspark.sql import functions as F

    from shmi_spark.codes import date_is_invalid, parse_date

    values = ["2008-02-29", " 2007-02-03 ", "2007-02-30", "2007-2-3", "2007-02", "2007-02-03T",
              "+2007-2-03", "31/12/2007", "20070203", "1800-01-01", "1801-01-01", "", None]
    df = spark.createDataFrame([(v,) for v in values], "V string")
    got = [(r["D"], r["BAD"]) for r in df.select(parse_date(F.col("V")).alias("D"),
                                                  date_is_invalid(F.col("V")).alias("BAD")).collect()]
    import datetime as dt
    assert got == [(dt.date(2008, 2, 29), False), (dt.date(2007, 2, 3), False)] + [(None, True)] * 7 \
        + [(None, False)] * 4
