"""The data-quality gate on hand-built count tables (no Spark)."""

from __future__ import annotations

import pandas as pd
import pytest

from shmi_spark.config import QualityConfig
from shmi_spark.hes.quality_gate import (DataQualityError, check_quality, gate_failures, input_report, interior_years,
                                     invalid_report)

Q = QualityConfig()


def counts(rows: list[tuple]) -> pd.DataFrame:
    """(file, fyear, reason, field, n, example) rows; reason None = accepted."""
    return pd.DataFrame(rows, columns=["SOURCE_FILE", "FYEAR", "REASON", "FIELD", "N", "EXAMPLE"])


def clean_episodes(per_year: int = 10_000, years=range(2005, 2011)) -> list[tuple]:
    return [(f"hes/{y}.parquet", y, None, None, per_year, None) for y in years]


def clean_deaths(per_year: int = 400, years=range(2005, 2011)) -> list[tuple]:
    return [("ons/deaths.parquet", y, None, None, per_year, None) for y in years]


def failures(episodes, deaths=None, invalid=None):
    return gate_failures(input_report("hes episodes", counts(episodes)),
                         input_report("deaths", counts(deaths or clean_deaths())),
                         invalid_report(pd.DataFrame(invalid or [], columns=["FIELD", "VALUE", "N"])), Q)


def test_a_clean_input_with_a_few_rejects_passes():
    rows = clean_episodes() + [("hes/2007.parquet", 2007, "INVALID_DATE", "ADMIDATE", 30, "2007-02-30")]
    assert failures(rows, invalid=[("SEX", "Q", 12)]) == []
    check_quality([])


def test_a_reason_over_its_share_fails_naming_reason_field_and_example():
    rows = clean_episodes() + [("hes/2007.parquet", 2007, "INVALID_DATE", "ADMIDATE", 400, "12.05.2007")]
    (msg,) = failures(rows)
    assert "INVALID_DATE on ADMIDATE rejects 400 of 60,400 rows (0.7%; limit 0.5%)" in msg
    assert "'12.05.2007' in hes/2007.parquet" in msg
    with pytest.raises(DataQualityError, match="data-quality gate: hes episodes: INVALID_DATE"):
        check_quality([msg])


def test_every_death_rejected_fails():
    deaths = [("ons/deaths.csv", None, "INVALID_DATE", "DOD", 2400, "12/31/2007")]
    msgs = failures(clean_episodes(), deaths)
    assert msgs[0] == "deaths: none of the 2,400 rows was accepted: INVALID_DATE DOD, e.g. '12/31/2007'"


def test_a_file_that_loses_every_row_fails():
    rows = clean_episodes() + [("hes/extra.csv", None, "MALFORMED_LINE", "", 20, "")]
    assert any("hes episodes file hes/extra.csv: all 20 rows rejected" in m for m in failures(rows))


def test_invalid_codes_over_their_share_fail():
    (msg,) = failures(clean_episodes(), invalid=[("STARTAGE", "45.5", 700), ("STARTAGE", "abc", 3)])
    assert "703 of 60,000 accepted episodes (1.2%; limit 0.5%) have an invalid STARTAGE, e.g. '45.5'" in msg


def test_a_missing_year_inside_the_data_fails_but_thin_edges_and_strays_do_not():
    years = [y for y in range(2005, 2011) if y != 2007]
    rows = clean_episodes(years=years) + [("hes/stray.parquet", 1995, None, None, 1, None),
                                          ("hes/2010.parquet", 2010, None, None, 1, None)]
    (msg,) = failures(rows)
    assert "financial year 2007/08 has 0 accepted rows" in msg
    # a half year at each end (an extract starting or ending mid-year) is not a lost year
    edges = clean_episodes(years=range(2006, 2010)) + [("hes/a.parquet", 2005, None, None, 3_000, None),
                                                       ("hes/b.parquet", 2010, None, None, 4_000, None)]
    assert failures(edges) == []


def test_a_year_of_deaths_missing_fails():
    deaths = clean_deaths(years=[2005, 2006, 2008, 2009, 2010])
    (msg,) = failures(clean_episodes(), deaths)
    assert msg.startswith("deaths: financial year 2007/08 has 0 accepted rows")


def test_interior_years():
    by_year = pd.Series({2004: 5, 2005: 900, 2006: 1000, 2007: 1000, 2008: 0, 2009: 1000, 2010: 400})
    assert interior_years(by_year, share=0.5) == [2006, 2007, 2008]
    assert interior_years(pd.Series({2005: 10, 2006: 10}, dtype="int64"), share=0.5) == []
