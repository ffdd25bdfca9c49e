"""The trust-level indicator tables (METHOD.md §6) on hand-built tables, no Spark session:
small trusts not banded, zero-death trusts banded with Z empty, no infinity anywhere."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from shmi_spark.indicator.banding import band_table
from shmi_spark.indicator.tables import TRUST_COLUMNS, area_summaries, group_breakdown, trust_indicator
from shmi_spark.indicator.periods import Period

PERIOD = Period("2024-03", dt.date(2023, 4, 1), dt.date(2024, 3, 31),
                dt.date(2021, 4, 1), dt.date(2024, 3, 31))
NUMERIC = ["SPELLS", "OBSERVED", "EXPECTED", "SHMI", "OD95_LL", "OD95_UL", "OD998_LL", "OD998_UL",
           "PO998_LL", "PO998_UL", "Z"]


def _by_trust(n=20, seed=4):
    rng = np.random.default_rng(seed)
    e = rng.uniform(200, 3000, n)
    o = rng.poisson(e * rng.lognormal(0, 0.08, n))
    return pd.DataFrame({"PROCODE3": [f"R{i:02d}" for i in range(n)], "SPELLS": (e * 30).astype(int),
                         "OBSERVED": o, "EXPECTED": e})


def _trusts(codes):
    return pd.DataFrame({"PROCODE3": codes, "NAME": [f"Trust {c}" for c in codes],
                         "REGION": ["North" if i % 2 else "South" for i in range(len(codes))]})


def _no_infinity(df, cols):
    values = df[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    return not np.isinf(values).any()


def test_trust_indicator_small_and_zero_death_trusts(tmp_path):
    by_trust = _by_trust()
    tiny = pd.DataFrame({"PROCODE3": ["RZ1", "RZ2"], "SPELLS": [40, 3], "OBSERVED": [0, 1],
                         "EXPECTED": [0.001, 1e-300]})
    by_trust = pd.concat([by_trust, tiny], ignore_index=True)
    by_trust.loc[3, "OBSERVED"] = 0                         # no deaths, E in the hundreds
    rows, summary = trust_indicator(by_trust, _trusts(by_trust["PROCODE3"]), PERIOD,
                                    rescale=True, trim_fraction=0.10)
    assert list(rows.columns) == list(TRUST_COLUMNS)
    assert _no_infinity(rows, NUMERIC)
    tiny_rows = rows[rows["PROVIDER_CODE"].isin(["RZ1", "RZ2"])]
    assert tiny_rows["BANDING"].isna().all() and tiny_rows["OUTLIER_998"].isna().all()
    assert (tiny_rows["BANDING_LABEL"] == "Not banded: fewer than 1 expected death").all()
    assert tiny_rows["SHMI"].notna().all()
    zero = rows[rows["PROVIDER_CODE"] == "R03"].iloc[0]
    assert pd.isna(zero["Z"]) and zero["SHMI"] == 0.0 and zero["BANDING"] == 3
    assert summary["n_not_banded_small"] == 2 and summary["n_banded"] == 20
    assert summary["n_zero_deaths_banded"] == 1 and summary["min_expected"] == 1.0
    # written out: empty in CSV, null in parquet, never inf
    rows.to_csv(tmp_path / "t.csv", index=False)
    assert "inf" not in (tmp_path / "t.csv").read_text().lower()
    rows.to_parquet(tmp_path / "t.parquet", index=False)
    table = pq.read_table(tmp_path / "t.parquet")
    z = table.column("Z").to_pylist()
    assert z[rows.index[rows["PROVIDER_CODE"] == "R03"][0]] is None
    assert all(v is None or np.isfinite(v) for col in NUMERIC for v in table.column(col).to_pylist())


def test_trust_indicator_min_expected_is_on_rescaled_expected():
    by_trust = _by_trust()
    by_trust["EXPECTED"] *= 2.0                              # rescale factor 0.5
    extra = pd.DataFrame({"PROCODE3": ["RX"], "SPELLS": [50], "OBSERVED": [1], "EXPECTED": [1.6]})
    by_trust = pd.concat([by_trust, extra], ignore_index=True)
    trusts = _trusts(by_trust["PROCODE3"])
    rows, summary = trust_indicator(by_trust, trusts, PERIOD, rescale=True, trim_fraction=0.10)
    assert summary["rescale_factor"] == pytest.approx(0.5, rel=0.01)
    rx = rows[rows["PROVIDER_CODE"] == "RX"].iloc[0]
    assert rx["EXPECTED"] < 1 and pd.isna(rx["BANDING"])
    rows0, summary0 = trust_indicator(by_trust, trusts, PERIOD, rescale=True, trim_fraction=0.10,
                                      min_expected=0.5)
    assert summary0["n_not_banded_small"] == 0
    assert rows0.loc[rows0["PROVIDER_CODE"] == "RX", "BANDING"].notna().all()


def test_trust_indicator_ordinary_data_unchanged():
    by_trust = _by_trust(40, seed=9)
    trusts = _trusts(by_trust["PROCODE3"])
    rows, summary = trust_indicator(by_trust, trusts, PERIOD, rescale=True, trim_fraction=0.10)
    rows0, summary0 = trust_indicator(by_trust, trusts, PERIOD, rescale=True, trim_fraction=0.10,
                                      min_expected=0)
    pd.testing.assert_frame_equal(rows, rows0)
    assert summary["phi"] == summary0["phi"] and summary["n_not_banded_small"] == 0


def _group_rows():
    rng = np.random.default_rng(2)
    parts = []
    for group, n_big, n_tiny in (("A", 14, 3), ("B", 9, 4)):
        e = np.r_[rng.uniform(5, 80, n_big), [0.3, 0.001, 0.0][:n_tiny], [0.2] * max(0, n_tiny - 3)]
        o = np.r_[rng.poisson(e[:n_big]), [2, 0, 1][:n_tiny], [0] * max(0, n_tiny - 3)]
        parts.append(pd.DataFrame({"PROCODE3": [f"R{i:02d}" for i in range(len(e))], "DIAG_GROUP": group,
                                   "SPELLS": (e * 20).astype(int) + 5, "OBSERVED": o, "EXPECTED": e}))
    return pd.concat(parts, ignore_index=True)


def test_group_breakdown_small_cells_not_banded_and_finite():
    groups = _group_rows()
    out = group_breakdown(groups, PERIOD, factor=1.0, trim_fraction=0.10)
    assert _no_infinity(out, ["SPELLS", "OBSERVED", "EXPECTED", "RATIO", "BANDING"])
    a = out[out["DIAG_GROUP"] == "A"].reset_index(drop=True)
    assert a["BANDING"][:14].notna().all() and a["BANDING"][14:].isna().all()
    assert a.loc[14, "RATIO"] == pytest.approx(2 / 0.3, abs=1e-4)     # reported, not banded
    assert pd.isna(a.loc[16, "RATIO"])                                   # E = 0: no ratio
    # the small cells take no part: banding equals that of the 14 big cells alone
    big = groups[groups["DIAG_GROUP"] == "A"].iloc[:14].rename(columns={"PROCODE3": "PROVIDER_CODE"})
    alone, _ = band_table(big[["PROVIDER_CODE", "OBSERVED", "EXPECTED"]].reset_index(drop=True),
                          "PROVIDER_CODE", "OBSERVED", "EXPECTED")
    np.testing.assert_array_equal(a["BANDING"][:14].to_numpy(dtype=int), alone["BANDING"].to_numpy(dtype=int))
    # group B: 9 cells with E >= 1 (and 4 smaller): too few to band
    assert out.loc[out["DIAG_GROUP"] == "B", "BANDING"].isna().all()
    out0 = group_breakdown(groups, PERIOD, factor=1.0, trim_fraction=0.10, min_expected=0.1)
    assert out0.loc[out0["DIAG_GROUP"] == "B", "BANDING"].notna().sum() == 11   # 9 + E 0.3, 0.2


def test_group_breakdown_subnormal_expected_ratio_empty():
    groups = _group_rows()
    groups.loc[15, ["OBSERVED", "EXPECTED"]] = [3, 1e-310]
    out = group_breakdown(groups, PERIOD, factor=1.0, trim_fraction=0.10)
    assert pd.isna(out.loc[15, "RATIO"]) and _no_infinity(out, ["RATIO"])


def test_area_summaries_ratio_finite():
    rows, _ = trust_indicator(_by_trust(), _trusts(_by_trust()["PROCODE3"]), PERIOD,
                              rescale=True, trim_fraction=0.10)
    trusts = _trusts(rows["PROVIDER_CODE"])
    trusts.loc[0, "REGION"] = "Empty"
    rows.loc[0, "EXPECTED"] = 0.0                  # a region whose expected deaths sum to 0
    areas = area_summaries(rows, trusts)
    assert _no_infinity(areas, ["RATIO"])
    assert pd.isna(areas.loc[areas["AREA"] == "Empty", "RATIO"]).all()


def test_trust_areas_give_each_trust_its_region_and_size_third():
    from shmi_spark.indicator.tables import trust_areas

    rows = pd.DataFrame({"PROVIDER_CODE": ["A", "B", "C", "D", "E", "F"] * 2,
                         "PERIOD": ["p1"] * 6 + ["p2"] * 6,
                         "SPELLS": [10, 20, 30, 40, 50, 60, 60, 50, 40, 30, 20, 10]})
    trusts = pd.DataFrame({"PROCODE3": list("ABCDEF"), "REGION": ["North", "North", "South", "South", None, "East"]})
    got = trust_areas(rows, trusts)
    assert list(got.columns) == ["PROVIDER_CODE", "PERIOD", "REGION", "PEER_GROUP"]
    assert list(got["PEER_GROUP"]) == ["small"] * 2 + ["medium"] * 2 + ["large"] * 2 \
        + ["large"] * 2 + ["medium"] * 2 + ["small"] * 2
    assert list(got["REGION"].iloc[:6].fillna("-")) == ["North", "North", "South", "South", "-", "East"]
    # the area summaries count the same peer groups
    areas = area_summaries(rows.assign(OBSERVED=1, EXPECTED=1.0, BANDING=2), trusts)
    peer = areas[(areas["LEVEL"] == "peer_group") & (areas["PERIOD"] == "p1")].set_index("AREA")["TRUSTS"]
    assert peer.to_dict() == {"large": 2, "medium": 2, "small": 2}
