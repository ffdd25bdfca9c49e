"""Covariate cells (METHOD.md §4, §5; docs/tables.md)."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shmi_spark.model.cells import (
    CELL_COLUMNS,
    HSMR_COVARIATES,
    covariate_cells,
    window_years,
    year_index,
    year_index_of,
)

WS, WE = date(2017, 4, 1), date(2020, 3, 31)

SPELL_SCHEMA = T.StructType([
    T.StructField("SPELL_ID", T.StringType()),
    T.StructField("DISDATE", T.DateType()),
    T.StructField("DIAG_GROUP", T.IntegerType()),
    T.StructField("AGE_BAND", T.StringType()),
    T.StructField("SEX_CAT", T.StringType()),
    T.StructField("ADMIMETH_CAT", T.StringType()),
    T.StructField("ADM_MONTH", T.IntegerType()),
    T.StructField("CHARLSON_BAND", T.StringType()),
    T.StructField("BIRWEIT_BAND", T.StringType()),
    T.StructField("DIED", T.IntegerType()),
])

CELL_SCHEMA = T.StructType([
    T.StructField("DIAG_GROUP", T.IntegerType()),
    T.StructField("AGE_BAND", T.StringType()),
    T.StructField("SEX_CAT", T.StringType()),
    T.StructField("ADMIMETH_CAT", T.StringType()),
    T.StructField("ADM_MONTH", T.IntegerType()),
    T.StructField("YEAR_INDEX", T.IntegerType()),
    T.StructField("CHARLSON_BAND", T.StringType()),
    T.StructField("BIRWEIT_BAND", T.StringType()),
    # the HSMR's terms: n/a in a table without them (the SHMI's)
    *[T.StructField(t, T.StringType()) for t in HSMR_COVARIATES],
    T.StructField("SPELLS", T.LongType()),
    T.StructField("DEATHS", T.LongType()),
])

D = date
A = ("60-64", "male", "non-elective", 3, "0", "n/a")   # one covariate pattern
B = ("<1", "female", "elective", 11, "1-5", "<1000")   # a perinatal pattern

#            spell   DISDATE          group  covariates       died      -> YEAR_INDEX / cell
SPELLS = [
    ("s01", D(2017, 3, 31), 1, *A, 1),   # day before the window: out
    ("s02", D(2017, 4, 1), 1, *A, 0),    # first day: year 1
    ("s03", D(2017, 4, 1), 1, *A, 1),    # same cell as s02 -> SPELLS 2, DEATHS 1
    ("s04", D(2018, 3, 31), 1, *A, 0),   # last day of year 1
    ("s05", D(2018, 4, 1), 1, *A, 0),    # first day of year 2
    ("s06", D(2019, 3, 31), 1, *A, 1),   # last day of year 2
    ("s07", D(2019, 4, 1), 1, *A, 0),    # first day of year 3
    ("s08", D(2020, 3, 31), 1, *A, 1),   # last day of the window: year 3
    ("s09", D(2020, 4, 1), 1, *A, 1),    # day after the window: out
    ("s10", D(2019, 6, 15), 2, *B, 0),   # another group, year 3
    ("s11", D(2019, 7, 1), 2, *B, 0),    # same cell as s10
    ("s12", D(2019, 7, 1), 2, "<1", "female", "elective", 11, "1-5", "unknown", 1),
    ("s13", None, 1, *A, 1),             # no discharge date: not in any window
]

NA4 = ("n/a",) * len(HSMR_COVARIATES)
EXPECTED_CELLS = [
    (1, *A[:4], 1, *A[4:], *NA4, 3, 1),   # s02 s03 s04
    (1, *A[:4], 2, *A[4:], *NA4, 2, 1),   # s05 s06
    (1, *A[:4], 3, *A[4:], *NA4, 2, 1),   # s07 s08
    (2, *B[:4], 3, *B[4:], *NA4, 2, 0),   # s10 s11
    (2, "<1", "female", "elective", 11, 3, "1-5", "unknown", *NA4, 1, 1),  # s12
]


def test_cells_window_edges_and_year_blocks(spark):
    spells = spark.createDataFrame(SPELLS, SPELL_SCHEMA)
    got = covariate_cells(spells, window_start=WS, window_end=WE)
    assert got.columns == CELL_COLUMNS
    want = spark.createDataFrame(EXPECTED_CELLS, CELL_SCHEMA)
    assert_df_equality(got, want, ignore_row_order=True, ignore_nullable=True)


def test_cells_partial_last_year_is_block_k(spark):
    # a 30-month window: k = 3, the third block holds 6 months
    ws, we = date(2017, 4, 1), date(2019, 9, 30)
    assert window_years(ws, we) == 3
    spells = spark.createDataFrame([
        ("a", D(2019, 4, 1), 1, *A, 0),
        ("b", D(2019, 9, 30), 1, *A, 1),
        ("c", D(2019, 10, 1), 1, *A, 1),   # outside
    ], SPELL_SCHEMA)
    rows = covariate_cells(spells, window_start=ws, window_end=we).collect()
    assert [(r.YEAR_INDEX, r.SPELLS, r.DEATHS) for r in rows] == [(3, 2, 1)]


def test_cells_schema_types(spark):
    spells = spark.createDataFrame(SPELLS, SPELL_SCHEMA)
    schema = covariate_cells(spells, window_start=WS, window_end=WE).schema
    types = {f.name: f.dataType for f in schema.fields}
    assert types["SPELLS"] == T.LongType() and types["DEATHS"] == T.LongType()
    assert types["YEAR_INDEX"] == T.IntegerType() and types["DIAG_GROUP"] == T.IntegerType()


@pytest.mark.parametrize("ws", [date(2017, 4, 1), date(2016, 1, 15), date(2018, 2, 28)])
def test_year_index_expression_matches_python_rule(spark, ws):
    rng = np.random.default_rng(7)
    days = sorted(set(int(x) for x in rng.integers(-400, 1600, 300)))
    # and every block boundary +-1 day
    for i in range(0, 5):
        y, m = divmod(ws.month - 1 + 12 * i, 12)
        try:
            edge = date(ws.year + y, m + 1, ws.day)
        except ValueError:
            continue
        days += [(edge - ws).days - 1, (edge - ws).days]
    dates = [ws + timedelta(days=d) for d in days]
    df = spark.createDataFrame([(d,) for d in dates], "d date")
    got = df.select("d", year_index("d", ws).alias("yi"), year_index("d", ws, 3).alias("yk")).collect()
    for r in got:
        want = year_index_of(r.d, ws)
        assert r.yi == want, r.d
        assert r.yk == min(max(want, 1), 3), r.d


def test_year_index_null_date(spark):
    df = spark.createDataFrame([(None,)], "d date")
    assert df.select(year_index(F.col("d"), WS, 3).alias("y")).first().y is None


def test_window_end_before_start_rejected():
    with pytest.raises(ValueError):
        window_years(date(2020, 1, 1), date(2019, 1, 1))


def test_invalid_group_does_not_use_charlson(spark):
    """METHOD.md §4: the Charlson score is not used for the invalid-primary-diagnosis group."""
    rows = [("a", D(2018, 6, 1), 0, "60-64", "male", "non-elective", 3, ">5", "n/a", 1),
            ("b", D(2018, 6, 2), 0, "60-64", "male", "non-elective", 3, "0", "n/a", 0),
            ("c", D(2018, 6, 3), 5, "60-64", "male", "non-elective", 3, ">5", "n/a", 1)]
    spells = spark.createDataFrame(rows, SPELL_SCHEMA)
    got = covariate_cells(spells, window_start=WS, window_end=WE, invalid_group=0)
    expected = spark.createDataFrame(
        [(0, "60-64", "male", "non-elective", 3, 2, "0", "n/a", *NA4, 2, 1),
         (5, "60-64", "male", "non-elective", 3, 2, ">5", "n/a", *NA4, 1, 1)], CELL_SCHEMA)
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
