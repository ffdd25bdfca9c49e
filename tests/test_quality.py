"""Model quality measures (METHOD.md §8)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from shmi_spark.model.quality import c_statistics, diffsum, rank_correlation, trust_r2


def brute_force_c(p, died):
    pairs = [(pi, pj) for (pi, di), (pj, dj) in itertools.product(zip(p, died), repeat=2)
             if di == 1 and dj == 0]
    if not pairs:
        return None
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)


def test_c_statistic_matches_pairwise_with_ties(spark):
    rng = np.random.default_rng(5)
    rows = []
    for g, n in ((1, 60), (2, 45), (3, 20)):
        # few distinct probabilities -> many ties, within and across groups
        p = rng.choice([0.05, 0.1, 0.2, 0.35, 0.5], size=n)
        died = (rng.random(n) < p).astype(int)
        rows += [(g, float(pi), int(di)) for pi, di in zip(p, died)]
    rows += [(4, 0.3, 0), (4, 0.2, 0)]  # no deaths: C undefined
    pdf = pd.DataFrame(rows, columns=["DIAG_GROUP", "P_EXPECTED", "DIED"])
    got = c_statistics(spark.createDataFrame(pdf, "DIAG_GROUP int, P_EXPECTED double, DIED int"))
    assert list(got.columns) == ["DIAG_GROUP", "SPELLS", "DEATHS", "C_STATISTIC"]
    assert list(got["DIAG_GROUP"].iloc[:-1]) == [1, 2, 3, 4] and pd.isna(got["DIAG_GROUP"].iloc[-1])
    for g in (1, 2, 3):
        sub = pdf[pdf["DIAG_GROUP"] == g]
        row = got[got["DIAG_GROUP"] == g].iloc[0]
        assert row["C_STATISTIC"] == pytest.approx(brute_force_c(sub["P_EXPECTED"], sub["DIED"]), abs=1e-12)
        assert row["SPELLS"] == len(sub) and row["DEATHS"] == sub["DIED"].sum()
    assert pd.isna(got[got["DIAG_GROUP"] == 4]["C_STATISTIC"].iloc[0])
    overall = got.iloc[-1]
    assert overall["C_STATISTIC"] == pytest.approx(brute_force_c(pdf["P_EXPECTED"], pdf["DIED"]), abs=1e-12)
    assert overall["SPELLS"] == len(pdf)


def test_c_statistic_perfect_and_useless(spark):
    df = spark.createDataFrame([(1, 0.9, 1), (1, 0.8, 1), (1, 0.1, 0), (1, 0.2, 0),
                                (2, 0.5, 1), (2, 0.5, 0), (2, 0.5, 0)],
                               "DIAG_GROUP int, P_EXPECTED double, DIED int")
    got = c_statistics(df).set_index("DIAG_GROUP")
    assert got.loc[1, "C_STATISTIC"] == 1.0
    assert got.loc[2, "C_STATISTIC"] == 0.5


def test_trust_r2_against_polyfit(spark):
    rng = np.random.default_rng(9)
    n = 40
    spells = rng.integers(1000, 20000, n)
    exp_rate = rng.uniform(0.02, 0.06, n)
    obs = rng.binomial(spells, exp_rate * rng.normal(1, 0.1, n).clip(0.5))
    t = pd.DataFrame({"PROCODE3": [f"T{i}" for i in range(n)], "SPELLS": spells,
                      "OBSERVED": obs, "EXPECTED": exp_rate * spells})
    x, y = exp_rate, obs / spells
    slope, icpt = np.polyfit(x, y, 1)
    resid = y - (slope * x + icpt)
    want = 1 - (resid ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert trust_r2(t) == pytest.approx(want, rel=1e-10)
    assert trust_r2(spark.createDataFrame(t)) == pytest.approx(want, rel=1e-10)
    assert np.isnan(trust_r2(t.iloc[:1]))


def test_diffsum_flags():
    a = pd.DataFrame({"PROCODE3": ["A", "B", "C", "D"], "EXPECTED": [100.0, 110.0, 90.0, 0.0]})
    b = pd.DataFrame({"PROCODE3": ["D", "C", "B", "A"], "EXPECTED": [0.0, 100.0, 100.0, 104.0]})
    out = diffsum(a, b).set_index("PROCODE3")
    # A: diff -4, mean 102 -> -3.9%: inside; B: +10 / 105 -> +9.5%: above; C: -10 / 95: below
    assert out.loc["A", "DIFF"] == -4.0 and out.loc["A", "MEAN"] == 102.0
    assert out.loc["A", "DIFF_PCT"] == pytest.approx(-4 / 102)
    assert list(out["ABOVE"]) == [False, True, False, False]
    assert list(out["BELOW"]) == [False, False, True, False]
    assert list(out["OUTSIDE"]) == [False, True, True, False]
    assert out.attrs["share_outside"] == 0.5
    # exactly on the line is inside; a wider band flags nothing
    on_line = diffsum([105.0], [100.0], lines=5 / 102.5)
    assert not on_line["OUTSIDE"].iloc[0]
    assert not diffsum(a, b, lines=0.2)["OUTSIDE"].any()
    with pytest.raises(ValueError):
        diffsum(a, b.iloc[:3])


def test_rank_correlation():
    assert rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)


def test_c_statistic_from_cells_equals_per_spell(spark):
    """A cell of SPELLS spells and DEATHS deaths counts as those spells: the same C statistics."""
    rng = np.random.default_rng(21)
    cells = []
    for g in (1, 2, 3):
        for p in rng.choice([0.02, 0.1, 0.2, 0.35, 0.6], size=8):  # repeated P across cells and groups
            n = int(rng.integers(1, 30))
            cells.append((g, f"T{int(rng.integers(3))}", float(p), n, int(rng.binomial(n, p))))
    cells += [(4, "T0", 0.3, 5, 0), (4, "T1", 0.1, 2, 0)]  # no deaths: C undefined
    cdf = pd.DataFrame(cells, columns=["DIAG_GROUP", "PROCODE3", "P_EXPECTED", "SPELLS", "DEATHS"])
    spells = pd.DataFrame([(g, p, int(i < d)) for g, _, p, n, d in cells for i in range(n)],
                          columns=["DIAG_GROUP", "P_EXPECTED", "DIED"])
    from_cells = c_statistics(spark.createDataFrame(
        cdf, "DIAG_GROUP int, PROCODE3 string, P_EXPECTED double, SPELLS long, DEATHS long"))
    from_spells = c_statistics(spark.createDataFrame(spells, "DIAG_GROUP int, P_EXPECTED double, DIED int"))
    pd.testing.assert_frame_equal(from_cells, from_spells, check_exact=False, rtol=1e-14)
    assert from_cells["SPELLS"].iloc[-1] == cdf["SPELLS"].sum()
    assert from_cells["DEATHS"].iloc[-1] == cdf["DEATHS"].sum()
    for g in (1, 2, 3):
        sub = spells[spells["DIAG_GROUP"] == g]
        got = from_cells[from_cells["DIAG_GROUP"] == g]["C_STATISTIC"].iloc[0]
        assert got == pytest.approx(brute_force_c(sub["P_EXPECTED"], sub["DIED"]), abs=1e-12)


def test_calibration_deciles_put_tied_probabilities_in_one_tenth(spark):
    from shmi_spark.model.quality import calibration_deciles

    # 100 spells: probabilities 0.01 (30 spells, 1 death), 0.2 (40 spells in two cells, 9 deaths), 0.5 (30, 14)
    cells = pd.DataFrame({"DIAG_GROUP": [1, 1, 2, 2], "P_EXPECTED": [0.01, 0.2, 0.2, 0.5],
                          "SPELLS": [30, 25, 15, 30], "DEATHS": [1, 5, 4, 14]})
    got = calibration_deciles(spark.createDataFrame(cells, "DIAG_GROUP int, P_EXPECTED double, SPELLS long, "
                                                           "DEATHS long"))
    # midpoints 15, 50, 85 of 100 spells -> tenths floor(1.5)+1 = 2, floor(5)+1 = 6, floor(8.5)+1 = 9
    want = pd.DataFrame({"DECILE": [2, 6, 9], "SPELLS": [30, 40, 30], "OBSERVED": [1, 9, 14],
                         "EXPECTED": [0.3, 8.0, 15.0], "P_LOW": [0.01, 0.2, 0.5], "P_HIGH": [0.01, 0.2, 0.5]})
    pd.testing.assert_frame_equal(got, want, check_exact=False, atol=1e-12)
    # per spell, the same: ten distinct probabilities of ten spells each fill the ten tenths
    rows = [(1, p / 100, int(i < 3)) for p in range(1, 11) for i in range(10)]
    spells = spark.createDataFrame(rows, "DIAG_GROUP int, P_EXPECTED double, DIED int")
    got = calibration_deciles(spells)
    assert list(got["DECILE"]) == list(range(1, 11)) and list(got["SPELLS"]) == [10] * 10
    assert list(got["OBSERVED"]) == [3] * 10
    assert got["EXPECTED"].to_numpy() == pytest.approx([p / 10 for p in range(1, 11)])
