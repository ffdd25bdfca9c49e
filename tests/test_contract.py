"""The input contract: each accepted physical form of a field gives the same canonical value."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from chispa import assert_column_equality
from pyspark.sql import functions as F

from shmi_spark.io.contract import DEATH_CONTRACT, EPISODE_CONTRACT, Field, conform
from shmi_spark.errors import InputError
from shmi_spark.io.ingest import inspect_input, read_input
from spell_cases import episode

D = dt.date
DATE, AGE, SEX = Field("DOD", "date", True), Field("STARTAGE", "int", True), Field("SEX", "code", True)


def _conformed(spark, field, values, schema, expected, category, zone=None):
    df = spark.createDataFrame([(v, e) for v, e in zip(values, expected)], f"V {schema}, EXPECTED {expected_type(field)}")
    typed, bad = conform(field, F.col("V"), category, zone)
    return df.select("V", "EXPECTED", typed.alias("GOT"), bad.alias("BAD"))


def expected_type(field):
    return {"date": "date", "int": "int"}.get(field.kind, "string")


def test_dates_from_text_in_every_accepted_format(spark):
    values = ["2007-05-12", " 2007-05-12 ", "12/05/2007", "1/2/2007", "20070512", "2007-05-12 10:30:00",
              "2007-05-12T10:30", "1800-01-01", "01/01/1801", "", None, "2007-02-30", "31/13/2007",
              "2007/05/12", "12-05-2007", "2007-5-12", "abc"]
    expected = [D(2007, 5, 12)] * 2 + [D(2007, 5, 12), D(2007, 2, 1), D(2007, 5, 12), D(2007, 5, 12),
                                       D(2007, 5, 12)] + [None] * 10
    df = _conformed(spark, DATE, values, "string", expected, "string")
    assert_column_equality(df, "GOT", "EXPECTED")
    bad = [r["BAD"] for r in df.collect()]
    assert bad == [None] * 11 + ["2007-02-30", "31/13/2007", "2007/05/12", "12-05-2007", "2007-5-12", "abc"]


def test_dates_from_integers_timestamps_and_nanoseconds(spark):
    ints = _conformed(spark, DATE, [20070512, 18000101, 20070230, 123], "bigint",
                      [D(2007, 5, 12), None, None, None], "integer")
    assert_column_equality(ints, "GOT", "EXPECTED")
    assert [r["BAD"] for r in ints.collect()] == [None, None, "20070230", "123"]
    nanos = int(pd.Timestamp("2007-05-12 13:00").value)
    ns = _conformed(spark, DATE, [nanos, None], "bigint", [D(2007, 5, 12), None], "timestamp_ns")
    assert_column_equality(ns, "GOT", "EXPECTED")
    # a zoned timestamp at local midnight is the same calendar day in its zone, not UTC's
    midnight_bst = dt.datetime(2007, 5, 11, 23, 0)  # 2007-05-12 00:00 in London, as UTC
    ts = _conformed(spark, DATE, [midnight_bst], "timestamp", [D(2007, 5, 12)], "timestamp", "Europe/London")
    assert_column_equality(ts, "GOT", "EXPECTED")
    utc = _conformed(spark, DATE, [midnight_bst], "timestamp", [D(2007, 5, 11)], "timestamp")
    assert_column_equality(utc, "GOT", "EXPECTED")
    # HES's null date as a London midnight written by pandas (local mean time, -0:01 there, -0:01:15 in Java)
    null_date = dt.datetime(1800, 1, 1, 0, 1)
    lmt = _conformed(spark, DATE, [null_date], "timestamp", [None], "timestamp", "Europe/London")
    assert_column_equality(lmt, "GOT", "EXPECTED")
    assert [r["BAD"] for r in lmt.collect()] == [None]


def test_integers_from_floats_and_text(spark):
    floats = _conformed(spark, AGE, [45.0, float("nan"), None, 45.5, 7001.0], "double",
                        [45, None, None, None, 7001], "float")
    assert_column_equality(floats, "GOT", "EXPECTED")
    assert [r["BAD"] for r in floats.collect()] == [None, None, None, "45.5", None]
    text = _conformed(spark, AGE, ["45", " 45 ", "45.0", "", "abc", "1e2", "99999999999"], "string",
                      [45, 45, 45, None, None, 100, None], "string")
    assert_column_equality(text, "GOT", "EXPECTED")
    assert [r["BAD"] for r in text.collect()] == [None, None, None, None, "abc", None, "99999999999"]


def test_codes_from_numbers_and_text(spark):
    numbers = _conformed(spark, SEX, [1.0, 2.0, float("nan"), 1.5], "double", ["1", "2", None, None], "float")
    assert_column_equality(numbers, "GOT", "EXPECTED")
    assert [r["BAD"] for r in numbers.collect()] == [None, None, None, "1.5"]
    ints = _conformed(spark, SEX, [1, 9], "int", ["1", "9"], "integer")
    assert_column_equality(ints, "GOT", "EXPECTED")
    text = _conformed(spark, Field("ADMIMETH", "code", True), [" 2a ", "21.0", "", "x9"], "string",
                      ["2A", "21", None, "X9"], "string")
    assert_column_equality(text, "GOT", "EXPECTED")


def test_hesid_is_trimmed_and_upper_cased(spark):
    df = _conformed(spark, Field("HESID", "id", True), [" ab12cd ", "AB12CD", ""], "string",
                    ["AB12CD", "AB12CD", None], "string")
    assert_column_equality(df, "GOT", "EXPECTED")


# ---------------------------------------------------------------- files

def _episodes_frame(n: int = 3, **overrides) -> pd.DataFrame:
    rows = [episode(EPIKEY=f"E{i}", HESID=f"P{i}", PROVSPNOPS=f"S{i}", **overrides) for i in range(n)]
    return pd.DataFrame(rows)[[f.name for f in EPISODE_CONTRACT]]


def _write(df: pd.DataFrame, path, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(path, index=False, **kw)
    return path


def test_pandas_parquet_float_age_and_nanosecond_dates_read_like_text(spark, tmp_path):
    """What pandas writes for an integer column with a missing value (float64) and for dates (timestamp[ns])."""
    text = _episodes_frame()
    typed = text.copy()
    typed["STARTAGE"] = [70.0, np.nan, 7001.0]
    for c in ("ADMIDATE", "EPISTART", "EPIEND", "DISDATE"):
        typed[c] = pd.to_datetime(typed[c])
    typed["SEX"] = [1, 2, 1]
    _write(typed, tmp_path / "typed" / "a.parquet")
    inputs = inspect_input(str(tmp_path / "typed"), "hes episodes", EPISODE_CONTRACT)
    assert inputs.files[0].categories["ADMIDATE"] == "timestamp_ns"
    rows = read_input(spark, inputs, EPISODE_CONTRACT).orderBy("EPIKEY").collect()
    assert [r["STARTAGE"] for r in rows] == [70, None, 7001]
    assert [r["SEX"] for r in rows] == ["1", "2", "1"]
    assert {r["ADMIDATE"] for r in rows} == {D(2008, 1, 10)}
    assert all(r["_BAD_STARTAGE"] is None and r["_BAD_ADMIDATE"] is None for r in rows)


def test_csv_files_with_columns_in_another_order_are_read_by_name(spark, tmp_path):
    df = _episodes_frame(2)
    (tmp_path / "hes").mkdir()
    df.to_csv(tmp_path / "hes" / "a.csv", index=False)
    df.assign(EPIKEY=["X0", "X1"])[list(reversed(df.columns))].to_csv(tmp_path / "hes" / "b.csv", index=False,
                                                                      sep="|")
    got = read_input(spark, inspect_input(str(tmp_path / "hes"), "hes episodes", EPISODE_CONTRACT),
                     EPISODE_CONTRACT)
    rows = got.orderBy("EPIKEY").collect()
    assert [r["EPIKEY"] for r in rows] == ["E0", "E1", "X0", "X1"]
    assert {r["PROCODE3"] for r in rows} == {"RA1"} and {r["ADMIDATE"] for r in rows} == {D(2008, 1, 10)}
    assert {r["SOURCE_FILE"].rsplit("/", 1)[-1] for r in rows} == {"a.csv", "b.csv"}


def test_parquet_files_whose_types_differ_are_read_group_by_group(spark, tmp_path):
    df = _episodes_frame(2)
    _write(df, tmp_path / "hes" / "a.parquet")
    b = df.assign(EPIKEY=["X0", "X1"], EPIORDER=[1, 1], STARTAGE=[70.0, 71.0])
    _write(b, tmp_path / "hes" / "b.parquet")
    rows = read_input(spark, inspect_input(str(tmp_path / "hes"), "hes episodes", EPISODE_CONTRACT),
                      EPISODE_CONTRACT).orderBy("EPIKEY").collect()
    assert [r["STARTAGE"] for r in rows] == [70, 70, 70, 71]
    assert [r["EPIORDER"] for r in rows] == [1, 1, 1, 1]


@pytest.mark.parametrize("case, message", [
    ("zero_bytes", r"b\.parquet is empty \(0 bytes\)"),
    ("corrupt", r"b\.parquet is not a readable parquet file"),
    ("truncated", r"b\.parquet is not a readable parquet file"),
    ("no_primary", r"b\.parquet is missing required column\(s\): DIAG_4_01"),
    ("optional_in_one", r"has no column DIAG_4_05, which 1 other file"),
    ("boolean_date", r"b\.parquet: column DISDATE has type boolean"),
    ("float_diagnosis", r"b\.parquet: column DIAG_4_01 has type float"),
    ("twice", r"b\.parquet: column SEX appears twice"),
    ("mixed", r"mixes parquet and delimited text files"),
])
def test_files_that_break_the_contract_name_the_file_and_column(tmp_path, case, message):
    df = _episodes_frame(2)
    good = df.assign(DIAG_4_05=["I10X", None])
    _write(good, tmp_path / "hes" / "a.parquet")
    b = tmp_path / "hes" / "b.parquet"
    if case == "zero_bytes":
        b.write_bytes(b"")
    elif case == "corrupt":
        b.write_bytes(b"PAR1 this is not parquet at all")
    elif case == "truncated":
        raw = (tmp_path / "hes" / "a.parquet").read_bytes()
        b.write_bytes(raw[: len(raw) // 2])
    elif case == "no_primary":
        _write(good.drop(columns=["DIAG_4_01"]), b)
    elif case == "optional_in_one":
        _write(df.drop(columns=["DIAG_4_05"]), b)
    elif case == "boolean_date":
        _write(good.assign(DISDATE=[True, False]), b)
    elif case == "float_diagnosis":
        _write(good.assign(DIAG_4_01=[1.0, 2.0]), b)
    elif case == "twice":
        pq.write_table(pa.Table.from_pandas(good, preserve_index=False).append_column("sex", pa.array(["1", "2"])), b)
    elif case == "mixed":
        good.to_csv(tmp_path / "hes" / "c.csv", index=False)
    with pytest.raises(InputError, match=message):
        inspect_input(str(tmp_path / "hes"), "hes episodes", EPISODE_CONTRACT)


def test_skip_bad_files_lists_what_it_skipped(tmp_path):
    df = _episodes_frame(2)
    _write(df, tmp_path / "hes" / "a.parquet")
    (tmp_path / "hes" / "b.parquet").write_bytes(b"")
    inputs = inspect_input(str(tmp_path / "hes"), "hes episodes", EPISODE_CONTRACT, skip_bad_files=True)
    assert [f.path.rsplit("/", 1)[-1] for f in inputs.files] == ["a.parquet"]
    assert len(inputs.skipped) == 1 and "0 bytes" in inputs.skipped[0][1]


def test_deaths_with_timestamp_and_day_month_year_text(spark, tmp_path):
    us = pa.table({"HESID": ["p1", "P2"], "DOD": pa.array([dt.datetime(2008, 1, 20, 13), None], pa.timestamp("us"))})
    (tmp_path / "d1").mkdir()
    pq.write_table(us, tmp_path / "d1" / "a.parquet")
    (tmp_path / "d2").mkdir()
    (tmp_path / "d2" / "a.csv").write_text("HESID,DOD\np1,20/01/2008\nP2,\n")
    for folder in ("d1", "d2"):
        rows = read_input(spark, inspect_input(str(tmp_path / folder), "deaths", DEATH_CONTRACT),
                          DEATH_CONTRACT).orderBy("HESID").collect()
        assert [(r["HESID"], r["DOD"]) for r in rows] == [("P1", D(2008, 1, 20)), ("P2", None)], folder
