"""Funnel-plot statistics and banding (METHOD.md §6): hand-computed cases,
an independent plain-Python re-implementation, and banding edge cases."""

from __future__ import annotations

import math
import statistics
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from shmi_spark.indicator import funnel
from shmi_spark.indicator.banding import BANDING_LABELS, OUTPUT_COLUMNS, band, band_table, outlier_998
from shmi_spark.errors import InputError


# ---------------------------------------------------------------- z-scores

def test_z_scores_hand_computed():
    z = funnel.z_scores([120, 100, 90, 0], [100, 100, 100, 25])
    assert z[0] == pytest.approx(10 * 0.1823215567939546, rel=1e-15)
    assert z[1] == 0.0
    assert z[2] == pytest.approx(10 * math.log(0.9), rel=1e-15)
    assert z[3] == -math.inf


@pytest.mark.parametrize("o, e", [([1, -1], [1, 1]), ([1, 1], [1, 0]), ([1, 1], [1, -2]),
                                  ([1, np.nan], [1, 1]), ([1, 1], [1, np.inf]), ([1], [1, 2])])
def test_z_scores_reject_bad_inputs(o, e):
    with pytest.raises(ValueError):
        funnel.z_scores(o, e)


# ------------------------------------------------------------------- ranks

def test_average_ranks_ties_by_hand():
    assert funnel.average_ranks([1.0, 2.0, 2.0, 3.0]).tolist() == [1, 2.5, 2.5, 4]
    assert funnel.average_ranks([5.0, -np.inf, 0.0, -np.inf]).tolist() == [4, 1.5, 3, 1.5]
    assert funnel.average_ranks([7.0, 7.0, 7.0]).tolist() == [2, 2, 2]


def test_average_ranks_match_scipy_rankdata():
    rng = np.random.default_rng(3)
    for _ in range(20):
        x = rng.integers(-5, 5, size=rng.integers(1, 60)).astype(float)
        x[rng.random(len(x)) < 0.1] = -np.inf
        np.testing.assert_array_equal(funnel.average_ranks(x), stats.rankdata(x, "average"))


# -------------------------------------------------------------------- trim

def _kept_ranks(n, trim=0.10):
    z = np.arange(n, dtype=float)[::-1]          # rank of z[i] is n - i
    mask = funnel.trim_mask(z, trim)
    return sorted(int(n - i) for i in np.nonzero(mask)[0])


def test_trim_boundary_n20():
    # g = floor(r*10/21): r=2 -> 0 (dropped), r=3 -> 1, r=18 -> 8, r=19 -> 9 (dropped)
    assert _kept_ranks(20) == list(range(3, 19))


def test_trim_boundary_n146():
    # N+1 = 147: r=14 -> 140/147 -> 0; r=15 -> 1; r=132 -> 8; r=133 -> 1330/147 = 9.05 -> 9
    kept = _kept_ranks(146)
    assert kept == list(range(15, 133))
    assert len(kept) == 118


def test_trim_exact_boundary_n19():
    # N+1 = 20: r=2 -> exactly 1 (kept); r=18 -> exactly 9 (dropped)
    assert _kept_ranks(19) == list(range(2, 18))


def test_trim_ties_use_average_ranks():
    # N=20; values at sorted positions 2 and 3 tie -> rank 2.5 each -> g = floor(25/21) = 1: kept
    z = np.arange(20, dtype=float)
    z[2] = z[1]
    mask = funnel.trim_mask(z)
    assert mask[1] and mask[2]
    assert not mask[0]
    # without the tie, position 1 (rank 2) is dropped
    assert not funnel.trim_mask(np.arange(20, dtype=float))[1]


def test_trim_matches_integer_rule_for_many_n():
    for n in range(10, 300):
        expected = [r for r in range(1, n + 1) if 0 < (r * 10) // (n + 1) < 9]
        assert _kept_ranks(n) == expected, n


def test_trim_other_fractions_and_none():
    # 20% (k=5): keep 0 < floor(r*5/(N+1)) < 4; N=20 -> drop r<=4 and r>=17
    assert _kept_ranks(20, 0.20) == list(range(5, 17))
    assert _kept_ranks(20, 0) == list(range(1, 21))
    for bad in (0.15, -0.1, 1.0, 0.5, float("nan")):
        with pytest.raises(ValueError):
            funnel.trim_mask(np.arange(20.0), bad)


# ------------------------------------------------------- phi and tau^2

def test_overdispersion_hand_computed():
    assert funnel.overdispersion([1.0, 2.0, 3.0], [True, True, False]) == 2.5
    with pytest.raises(ValueError):
        funnel.overdispersion([1.0], [False])


def test_between_trust_variance_hand_computed():
    # n=2, phi=2.5: (2*2.5 - 1) / (400 - (100^2 + 300^2)/400) = 4 / 150
    tau2 = funnel.between_trust_variance(2.5, [100.0, 300.0, 5.0], [True, True, False])
    assert tau2 == pytest.approx(4 / 150, rel=1e-15)


def test_between_trust_variance_zero_when_underdispersed():
    # phi < 1 and n*phi < n-1: no between-trust variance
    assert funnel.between_trust_variance(0.5, [100.0, 200.0, 300.0], [True] * 3) == 0.0
    # boundary n*phi == n-1 is also 0
    assert funnel.between_trust_variance(2 / 3, [100.0, 200.0, 300.0], [True] * 3) == 0.0
    # phi slightly below 1 but n*phi > n-1: positive
    assert funnel.between_trust_variance(0.9, [100.0, 200.0, 300.0], [True] * 3) > 0


def test_period_with_phi_below_one_gives_tau2_zero():
    # O close to E: every |z| small -> phi < 1 -> tau^2 = 0 -> limits are the plain ones
    e = np.linspace(100, 2000, 30)
    o = np.round(e * (1 + 0.2 / np.sqrt(e) * np.sin(np.arange(30))))
    res = funnel.funnel_limits(o, e)
    assert res.phi < 1
    assert res.tau2 == 0.0
    np.testing.assert_allclose(res.od95_ul, np.exp(1.959964 / np.sqrt(e)), rtol=1e-15)


# ------------------------------------------------------------------ limits

def test_od_limits_hand_computed():
    lo, hi = funnel.od_limits([100.0], 0.0, funnel.Z_95)
    assert hi[0] == pytest.approx(math.exp(0.1959964), rel=1e-15)
    assert lo[0] == pytest.approx(math.exp(-0.1959964), rel=1e-15)
    lo, hi = funnel.od_limits([100.0], 0.01, funnel.Z_998)
    assert hi[0] == pytest.approx(math.exp(3.090232 * math.sqrt(0.02)), rel=1e-15)
    assert lo[0] * hi[0] == pytest.approx(1.0, rel=1e-15)


@pytest.mark.parametrize("k", [1, 2, 5, 17, 100, 1234])
def test_poisson_limits_are_garwood_bounds(k):
    lo, hi = funnel.poisson_limits([float(k)])
    # upper * E is the mean mu with P(X <= k | mu) = 0.001 (Garwood exact upper bound)
    mu_up = optimize.brentq(lambda mu: stats.poisson.cdf(k, mu) - 0.001, k, 10 * k + 20, xtol=1e-13)
    # lower * E is the mean mu with P(X >= k | mu) = 0.001 (Garwood exact lower bound)
    mu_lo = optimize.brentq(lambda mu: stats.poisson.sf(k - 1, mu) - 0.001, 1e-9, k, xtol=1e-13)
    assert hi[0] * k == pytest.approx(mu_up, rel=1e-9)
    assert lo[0] * k == pytest.approx(mu_lo, rel=1e-9)


def test_poisson_limits_equal_chi2_formula():
    e = np.array([0.3, 1.0, 7.25, 55.5, 812.4, 4000.0])
    lo, hi = funnel.poisson_limits(e)
    np.testing.assert_allclose(lo, stats.chi2.ppf(0.001, 2 * e) / (2 * e), rtol=1e-14)
    np.testing.assert_allclose(hi, stats.chi2.ppf(0.999, 2 * (e + 1)) / (2 * e), rtol=1e-14)
    lo95, hi95 = funnel.poisson_limits(e, level=0.95)
    np.testing.assert_allclose(hi95, stats.chi2.ppf(0.975, 2 * (e + 1)) / (2 * e), rtol=1e-14)
    assert np.all(lo < lo95) and np.all(hi > hi95)


def test_tiny_expected_limits_are_quiet_and_ordered():
    e = np.array([1e-6, 1e-3, 0.05, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lo, hi = funnel.od_limits(e, 0.002, funnel.Z_998)
        plo, phi_ = funnel.poisson_limits(e)
        z = funnel.z_scores([0, 1, 0, 3], e)
    assert hi[0] == np.inf and lo[0] == 0.0
    assert np.all(np.diff(hi) < 0) and np.all(np.diff(lo[1:]) > 0)
    assert np.all(np.isfinite(phi_)) and np.all(plo >= 0) and np.all(plo < 1) and np.all(phi_ > 1)
    assert z[1] == pytest.approx(math.sqrt(1e-3) * math.log(1000), rel=1e-14)


# -------------------------------------------------------------- zero deaths

def test_zero_death_trust_is_trimmed_and_phi_finite():
    e = np.linspace(200, 3000, 20)
    o = np.round(e * np.linspace(0.8, 1.2, 20))
    o[7] = 0
    res = funnel.funnel_limits(o, e)
    assert res.z[7] == -np.inf
    assert not res.kept[7]
    assert math.isfinite(res.phi) and math.isfinite(res.tau2)
    assert res.shmi[7] == 0.0
    assert np.isfinite(res.od95_ll[7]) and np.isfinite(res.od95_ul[7])


def test_zero_death_trusts_surviving_trim_are_left_out_of_phi():
    # N=12 with three tied zero-death trusts: average rank 2, g = floor(20/13) = 1, so the
    # trim keeps them; they must still not enter phi (which would be infinite).
    e = np.array([50.0, 60, 70, 400, 500, 600, 700, 800, 900, 1000, 1100, 1200])
    o = np.array([0.0, 0, 0, 380, 540, 610, 650, 850, 880, 1050, 1060, 1300])
    z = funnel.z_scores(o, e)
    assert funnel.trim_mask(z)[:3].all()
    res = funnel.funnel_limits(o, e)
    assert not res.kept[:3].any()
    in_trim_finite = funnel.trim_mask(z) & np.isfinite(z)
    assert res.phi == pytest.approx(np.mean(z[in_trim_finite] ** 2), rel=1e-15)
    assert math.isfinite(res.phi)


# ---------------------------------------- independent plain-Python version

def _reference(observed, expected):
    """METHOD.md §6 written out with loops, math and statistics only."""
    n = len(observed)
    z = [math.sqrt(e) * math.log(o / e) if o > 0 else -math.inf
         for o, e in zip(observed, expected)]
    ranks = []
    for zi in z:
        below = sum(1 for zj in z if zj < zi)
        equal = sum(1 for zj in z if zj == zi)
        ranks.append(below + (equal + 1) / 2)
    kept = [0 < math.floor(r * 10 / (n + 1)) < 9 and math.isfinite(zi) for r, zi in zip(ranks, z)]
    zk = [zi for zi, k in zip(z, kept) if k]
    wk = [e for e, k in zip(expected, kept) if k]
    phi = statistics.fmean(zi * zi for zi in zk)
    m = len(zk)
    if m * phi < m - 1:
        tau2 = 0.0
    else:
        sw = math.fsum(wk)
        tau2 = (m * phi - (m - 1)) / (sw - math.fsum(w * w for w in wk) / sw)
    rows = []
    for o, e in zip(observed, expected):
        s95 = 1.959964 * math.sqrt(1 / e + tau2)
        s998 = 3.090232 * math.sqrt(1 / e + tau2)
        rows.append((o / e, math.exp(-s95), math.exp(s95), math.exp(-s998), math.exp(s998),
                     stats.chi2.ppf(0.001, 2 * e) / (2 * e),
                     stats.chi2.ppf(0.999, 2 * (e + 1)) / (2 * e)))
    return z, kept, phi, tau2, rows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_independent_reimplementation_146_trusts(seed):
    rng = np.random.default_rng(seed)
    e = np.round(rng.uniform(300, 4500, 146), 2)
    o = rng.poisson(e * rng.lognormal(0, 0.09, 146)).astype(float)
    o[10], e[10] = o[11], e[11]      # an exact tie in z
    o[20] = 0                        # a zero-death trust
    z_ref, kept_ref, phi_ref, tau2_ref, rows = _reference(o.tolist(), e.tolist())
    res = funnel.funnel_limits(o, e)
    assert res.n == 146 and res.n_kept == sum(kept_ref)
    assert res.kept.tolist() == kept_ref
    finite = np.isfinite(res.z)
    np.testing.assert_allclose(res.z[finite], np.array(z_ref)[finite], rtol=1e-12)
    assert res.z[20] == -np.inf
    assert res.phi == pytest.approx(phi_ref, rel=1e-12)
    assert res.tau2 > 0 and res.tau2 == pytest.approx(tau2_ref, rel=1e-12)
    got = np.column_stack([res.shmi, res.od95_ll, res.od95_ul, res.od998_ll, res.od998_ul,
                           res.po998_ll, res.po998_ul])
    np.testing.assert_allclose(got, np.array(rows), rtol=1e-12)


# ----------------------------------------------------------------- banding

def test_band_basic_and_labels():
    assert band([1.3, 1.0, 0.7], [0.8] * 3, [1.2] * 3).tolist() == [1, 2, 3]
    assert BANDING_LABELS == {1: "Higher than expected", 2: "As expected",
                              3: "Lower than expected"}


def test_band_equal_to_limit_is_as_expected():
    assert band([1.2, 0.8], [0.8, 0.8], [1.2, 1.2]).tolist() == [2, 2]
    assert band([1.2, 0.8], [0.8, 0.8], [1.2, 1.2], decimals=None).tolist() == [2, 2]


def test_band_rounding_rule():
    # METHOD.md §6: SHMI 1.20004 vs upper 1.2 print equal at 4 dp, but the unrounded SHMI is above -> 1
    assert band([1.20004], [0.8], [1.2]).tolist() == [1]
    assert band([1.20004], [0.8], [1.2], decimals=4).tolist() == [2]  # comparing the printed values
    assert band([0.79996], [0.8], [1.2]).tolist() == [3]
    assert band([0.79996], [0.8], [1.2], decimals=4).tolist() == [2]
    # rounding can also push a value over: 1.20006 -> 1.2001 > 1.2000 printed, but 1.20006 > 1.20004 anyway
    assert band([1.20006], [0.8], [1.20004]).tolist() == [1]
    assert band([1.200041], [0.8], [1.200044], decimals=4).tolist() == [2]
    assert outlier_998([1.40004, 1.4002], [1.4, 1.4], decimals=4).tolist() == [False, True]
    assert outlier_998([1.40004, 1.39996], [1.4, 1.4]).tolist() == [True, False]


def test_a_tie_at_4_dp_is_banded_on_the_unrounded_values():
    """A SHMI that prints equal to its limit (0.8903 both) is banded by the unrounded values, either side."""
    lower, upper = 0.890312, 1.1204
    below, above = 0.890300, 0.890320  # both print 0.8903, like the limit
    assert band([below, above], [lower] * 2, [upper] * 2).tolist() == [3, 2]
    assert band([below, above], [lower] * 2, [upper] * 2, decimals=4).tolist() == [2, 2]
    hi_limit = 1.120360  # prints 1.1204
    assert band([1.120355, 1.120365], [lower] * 2, [hi_limit] * 2).tolist() == [2, 1]
    assert band([2.0], [0.0], [np.inf]).tolist() == [2]
    with pytest.raises(ValueError):
        band([np.nan], [0.8], [1.2])


# -------------------------------------------------------------- band_table

def _trust_frame(n=30, seed=5):
    rng = np.random.default_rng(seed)
    e = np.round(rng.uniform(200, 4000, n), 2)
    o = rng.poisson(e * rng.lognormal(0, 0.1, n))
    return pd.DataFrame({"ID": [f"T{i:02d}" for i in range(n)], "O": o, "E": e,
                         "NAME": [f"Trust {i}" for i in range(n)]})


def test_band_table_columns_values_and_summary():
    df = _trust_frame()
    out, summary = band_table(df, "ID", "O", "E")
    assert list(out.columns) == list(df.columns) + OUTPUT_COLUMNS
    pd.testing.assert_frame_equal(out[df.columns], df)
    res = funnel.funnel_limits(df["O"], df["E"])
    np.testing.assert_array_equal(out["SHMI"], np.round(res.shmi, 4))
    np.testing.assert_array_equal(out["OD998_UL"], np.round(res.od998_ul, 4))
    np.testing.assert_array_equal(out["KEPT_IN_TRIM"].to_numpy(dtype=bool), res.kept)
    # banding agrees with the printed (rounded) values, row by row
    expect = np.where(out["SHMI"] > out["OD95_UL"], 1, np.where(out["SHMI"] < out["OD95_LL"], 3, 2))
    np.testing.assert_array_equal(out["BANDING"].to_numpy(dtype=int), expect)
    assert set(out["BANDING"]) >= {1, 2}
    assert (out["BANDING_LABEL"] == out["BANDING"].map(BANDING_LABELS)).all()
    assert (out["FLAG"] == "").all()
    assert summary["n_trusts"] == 30 and summary["rows_flagged"] == 0
    assert summary["n_kept"] == res.n_kept
    assert summary["phi"] == res.phi and summary["tau2"] == res.tau2
    assert summary["national_shmi"] == pytest.approx(df["O"].sum() / df["E"].sum())
    assert summary["n_higher"] + summary["n_as_expected"] + summary["n_lower"] == 30


def test_band_table_flags_bad_rows_and_excludes_them():
    df = _trust_frame(14).astype({"O": str, "E": str})
    df.loc[1, "O"] = "n/a"
    df.loc[2, "E"] = "0"
    df.loc[3, "E"] = ""
    df.loc[4, "O"] = "-3"
    out, summary = band_table(df, "ID", "O", "E", skip_bad_rows=True)
    assert out.loc[1, "FLAG"] == "O not numeric ('n/a')"
    assert out.loc[2, "FLAG"] == "E is zero"
    assert out.loc[3, "FLAG"] == "E missing"
    assert out.loc[4, "FLAG"] == "O negative ('-3')"
    assert out.loc[1:4, ["SHMI", "OD95_LL", "PO998_UL"]].isna().all().all()
    assert out.loc[1:4, "BANDING"].isna().all()
    assert summary["rows_flagged"] == 4 and summary["n_trusts"] == 10
    good = df.drop(index=[1, 2, 3, 4])
    res = funnel.funnel_limits(good["O"].astype(float), good["E"].astype(float))
    assert summary["phi"] == res.phi and summary["tau2"] == res.tau2


def test_band_table_strict_and_too_few_and_structural_errors():
    df = _trust_frame(11).astype({"O": str})
    df.loc[0, "O"] = "x"
    with pytest.raises(InputError, match="T00: O not numeric"):
        band_table(df, "ID", "O", "E", strict=True)
    df.loc[1, "O"] = "-1"
    with pytest.raises(InputError, match="only 9 trust"):
        band_table(df, "ID", "O", "E", skip_bad_rows=True)
    with pytest.raises(InputError, match="'DEATHS'"):
        band_table(_trust_frame(), "ID", "DEATHS", "E")
    dup = _trust_frame()
    dup.loc[3, "ID"] = "T05"
    with pytest.raises(InputError, match="duplicate ids: T05"):
        band_table(dup, "ID", "O", "E")
    blank = _trust_frame()
    blank.loc[3, "ID"] = " "
    with pytest.raises(InputError, match="empty in data row"):
        band_table(blank, "ID", "O", "E")
    with pytest.raises(InputError, match="trim fraction"):
        band_table(_trust_frame(), "ID", "O", "E", trim_fraction=0.3)


def test_band_table_round_expected_and_rerun_on_own_output():
    df = _trust_frame()
    df.loc[0, "E"] = 0.004
    out, summary = band_table(df, "ID", "O", "E", round_expected=2)
    assert out.loc[0, "FLAG"] == "E is zero"
    e_used = df["E"].round(2)[1:]
    assert summary["national_shmi"] == pytest.approx(df["O"][1:].sum() / e_used.sum())
    again, summary2 = band_table(out, "ID", "O", "E", round_expected=2)
    assert list(again.columns) == list(out.columns)
    assert summary2 == summary


def test_band_table_zero_death_trust():
    df = _trust_frame()
    df.loc[5, "O"] = 0
    out, summary = band_table(df, "ID", "O", "E")
    assert pd.isna(out.loc[5, "Z"]) and out.loc[5, "SHMI"] == 0.0
    assert out.loc[5, "BANDING"] == 3 and not out.loc[5, "KEPT_IN_TRIM"]
    assert math.isfinite(summary["phi"])


# ------------------------------------- small trusts, zero deaths, no infinities

def _numeric_output_values(out):
    cols = ["SHMI", "Z"] + [c for c in OUTPUT_COLUMNS if c.endswith(("_LL", "_UL"))]
    return out[cols].to_numpy(dtype=float)


def test_funnel_limits_ranked_subset_equals_funnel_of_that_subset():
    e = np.linspace(200, 3000, 15)
    o = np.round(e * np.linspace(0.85, 1.15, 15))
    ranked = np.ones(15, dtype=bool)
    ranked[[2, 9]] = False
    o[2], e[2] = 3, 0.4                  # a tiny trust with a large |z|
    res = funnel.funnel_limits(o, e, ranked=ranked)
    alone = funnel.funnel_limits(o[ranked], e[ranked])
    assert res.phi == alone.phi and res.tau2 == alone.tau2
    assert res.n == 15 and res.n_ranked == 13 and res.n_kept == alone.n_kept
    assert not res.kept[~ranked].any()
    np.testing.assert_array_equal(res.kept[ranked], alone.kept)
    lo, hi = funnel.od_limits(e[~ranked], alone.tau2, funnel.Z_95)
    np.testing.assert_array_equal(res.od95_ll[~ranked], lo)
    np.testing.assert_array_equal(res.od95_ul[~ranked], hi)
    with pytest.raises(ValueError):
        funnel.funnel_limits(o, e, ranked=ranked[:3])


def test_zero_deaths_with_enough_expected_banded_and_z_empty():
    # 12 trusts by hand; T05 has no deaths and E = 40: SHMI 0 is below its lower limit
    e = [40.0, 120, 150, 200, 260, 40, 330, 400, 470, 520, 610, 700]
    o = [44, 118, 160, 190, 270, 0, 320, 420, 455, 540, 600, 720]
    df = pd.DataFrame({"ID": [f"T{i:02d}" for i in range(12)], "O": o, "E": e})
    out, summary = band_table(df, "ID", "O", "E")
    row = out.loc[5]
    assert pd.isna(row["Z"]) and row["SHMI"] == 0.0
    assert row["BANDING"] == 3 and row["BANDING_LABEL"] == "Lower than expected"
    assert row["KEPT_IN_TRIM"] == False  # noqa: E712 - ranked but never used for phi
    assert 0 < row["OD95_LL"] < 1
    assert summary["n_zero_deaths_banded"] == 1 and summary["n_not_banded_small"] == 0
    assert np.isfinite(summary["phi"])
    assert not np.isinf(_numeric_output_values(out)).any()


def test_trust_below_min_expected_not_banded_and_left_out_of_phi():
    df = _trust_frame(20)
    df.loc[3, ["O", "E"]] = [2, 0.6]          # SHMI 3.33: far above any limit, but E < 1
    out, summary = band_table(df, "ID", "O", "E")
    row = out.loc[3]
    assert row["SHMI"] == pytest.approx(2 / 0.6, abs=1e-4)
    assert row["O"] == 2 and row["E"] == 0.6
    assert pd.isna(row["BANDING"]) and pd.isna(row["OUTLIER_998"]) and pd.isna(row["KEPT_IN_TRIM"])
    assert row["BANDING_LABEL"] == "Not banded: fewer than 1 expected death"
    assert row["FLAG"] == ""
    assert np.isfinite(row["OD95_UL"]) and row["OD95_UL"] > 1     # limits still printed
    without, summary_without = band_table(df.drop(index=3).reset_index(drop=True), "ID", "O", "E")
    assert summary["phi"] == summary_without["phi"]
    assert summary["tau2"] == summary_without["tau2"]
    assert summary["n_kept"] == summary_without["n_kept"]
    pd.testing.assert_series_equal(out.drop(index=3)["BANDING"].reset_index(drop=True),
                                   without["BANDING"])
    assert summary["n_trusts"] == 20 and summary["n_banded"] == 19
    assert summary["n_not_banded_small"] == 1 and summary["rows_flagged"] == 0
    assert summary["n_higher"] + summary["n_as_expected"] + summary["n_lower"] == 19
    # the national SHMI is over every reported trust, small ones included
    assert summary["national_shmi"] == pytest.approx(df["O"].sum() / df["E"].sum())


def test_min_expected_is_a_parameter():
    df = _trust_frame(20)
    df.loc[3, ["O", "E"]] = [12, 2.0]                          # SHMI 6: above the 95% limit ~4
    out, summary = band_table(df, "ID", "O", "E", min_expected=2.5)
    assert out.loc[3, "BANDING_LABEL"] == "Not banded: fewer than 2.5 expected deaths"
    assert summary["min_expected"] == 2.5 and summary["n_not_banded_small"] == 1
    out0, summary0 = band_table(df, "ID", "O", "E", min_expected=0)
    assert out0.loc[3, "BANDING"] == 1 and summary0["n_not_banded_small"] == 0
    out1, _ = band_table(df, "ID", "O", "E")                  # E = 2 >= 1: banded
    assert out1.loc[3, "BANDING"] == 1
    df.loc[4, "E"] = 1.0                                       # exactly min_expected: banded
    assert band_table(df, "ID", "O", "E")[0].loc[4, "BANDING"] in (1, 2, 3)
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(InputError, match="minimum expected deaths"):
            band_table(df, "ID", "O", "E", min_expected=bad)


def test_ordinary_data_unchanged_by_min_expected():
    # every trust has E >= 1: the rule changes nothing, to the last bit
    df = _trust_frame(60, seed=8)
    out, summary = band_table(df, "ID", "O", "E")
    out0, summary0 = band_table(df, "ID", "O", "E", min_expected=0)
    pd.testing.assert_frame_equal(out, out0)
    assert {k: v for k, v in summary.items() if k != "min_expected"} == \
        {k: v for k, v in summary0.items() if k != "min_expected"}


@pytest.mark.parametrize("min_expected", [1.0, 0.0])
def test_band_table_tiny_expected_has_no_infinity(min_expected):
    df = _trust_frame(20)
    df.loc[2, ["O", "E"]] = [0, 0.001]
    df.loc[7, ["O", "E"]] = [1, 1e-300]           # the 99.8% OD upper limit overflows to inf
    df.loc[8, ["O", "E"]] = [1, 1e-310]           # subnormal E: SHMI, z, every upper limit inf
    df.loc[9, ["O", "E"]] = [0, 300.0]            # a banded zero-death trust
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, summary = band_table(df, "ID", "O", "E", min_expected=min_expected)
    values = _numeric_output_values(out)
    assert not np.isinf(values).any()
    assert pd.isna(out.loc[2, "Z"]) and pd.isna(out.loc[9, "Z"])
    assert pd.isna(out.loc[7, "OD998_UL"]) and out.loc[7, "PO998_UL"] > 1e300
    assert out.loc[8, ["SHMI", "Z", "OD95_UL", "OD998_UL", "PO998_UL"]].isna().all()
    assert out.loc[8, "OD95_LL"] == 0.0 and out.loc[8, "FLAG"] == ""
    assert out.loc[2, "SHMI"] == 0.0 and out.loc[7, "SHMI"] == pytest.approx(1e300)
    assert all(np.isfinite(v) for v in (summary["phi"], summary["tau2"], summary["national_shmi"]))
    if min_expected == 1.0:
        assert pd.isna(out.loc[[2, 7, 8], "BANDING"]).all()
        assert summary["n_not_banded_small"] == 3
    csv = out.to_csv(index=False)
    assert "inf" not in csv.lower()


def test_printed_keeps_huge_values_and_empties_non_finite():
    from shmi_spark.indicator.banding import printed
    got = printed([1e306, 2.123456, -np.inf, np.inf, np.nan])
    assert got[0] == 1e306 and got[1] == 2.1235
    assert np.isnan(got[2:]).all()


def test_too_few_bandable_trusts():
    df = _trust_frame(11)
    df.loc[[0, 1], "E"] = 0.5
    with pytest.raises(InputError, match="only 9 trust.*at least 1 expected death"):
        band_table(df, "ID", "O", "E")
    assert band_table(df, "ID", "O", "E", min_expected=0.5)[1]["n_banded"] == 11


# ------------------------------------------------------------ count checks

@pytest.mark.parametrize("value, message", [
    ("2.5", "O not a whole number ('2.5')"),
    ("-3", "O negative ('-3')"),
    ("1e9", "O not written in digits ('1e9')"),
    ("inf", "O not finite ('inf')"),
    ("nan", "O not finite ('nan')"),
    ("12,0", "O not numeric ('12,0')"),
    ("abc", "O not numeric ('abc')"),
])
def test_impossible_observed_is_an_error_or_flagged(value, message):
    df = _trust_frame(14).astype({"O": str, "E": str})
    df.loc[4, "O"] = value
    with pytest.raises(InputError, match="data row 5, ID T04: " + __import__("re").escape(message)):
        band_table(df, "ID", "O", "E")
    out, summary = band_table(df, "ID", "O", "E", skip_bad_rows=True)
    assert out.loc[4, "FLAG"] == message
    assert out.loc[4, ["SHMI", "Z", "OD95_LL"]].isna().all() and pd.isna(out.loc[4, "BANDING"])
    assert summary["rows_flagged"] == 1 and summary["n_trusts"] == 13


@pytest.mark.parametrize("value", ["12", "12.0", " 7 ", "0", "12.00"])
def test_observed_written_in_digits_is_accepted(value):
    df = _trust_frame(14).astype({"O": str})
    df.loc[4, "O"] = value
    out, _ = band_table(df, "ID", "O", "E")
    assert out.loc[4, "FLAG"] == "" and out.loc[4, "SHMI"] == pytest.approx(
        float(value) / df.loc[4, "E"], abs=1e-4)


def test_expected_counts_and_numeric_columns():
    df = _trust_frame(14).astype({"E": str})
    df.loc[1, "E"] = "4.5e2"                     # finite: fine
    df.loc[2, "E"] = "-1"
    with pytest.raises(InputError, match="T02: E negative"):
        band_table(df, "ID", "O", "E")
    df.loc[2, "E"] = "0"                          # zero and blank: flagged, not an error
    df.loc[3, "E"] = ""
    out, summary = band_table(df, "ID", "O", "E")
    assert out.loc[1, "FLAG"] == "" and out.loc[1, "SHMI"] == pytest.approx(
        df.loc[1, "O"] / 450, abs=1e-4)
    assert list(out.loc[2:3, "FLAG"]) == ["E is zero", "E missing"]
    with pytest.raises(InputError, match="data row 3, ID T02: E is zero \\(and 1 more"):
        band_table(df, "ID", "O", "E", strict=True)
    # numeric (not text) columns, as the pipeline passes them
    num = _trust_frame(14).astype({"O": float})
    num.loc[4, "O"] = 2.5
    with pytest.raises(InputError, match="T04: O not a whole number"):
        band_table(num, "ID", "O", "E")
    num.loc[4, "O"] = 3.0
    assert band_table(num, "ID", "O", "E")[0].loc[4, "FLAG"] == ""
    num.loc[5, "E"] = np.inf
    with pytest.raises(InputError, match="T05: E not finite"):
        band_table(num, "ID", "O", "E")


def test_observed_above_spells_is_impossible():
    df = _trust_frame(14)
    df["S"] = df["O"] * 20
    df.loc[6, "S"] = df.loc[6, "O"] - 1
    with pytest.raises(InputError, match="T06: O greater than S"):
        band_table(df, "ID", "O", "E", spells_col="S", first_line=2)
    with pytest.raises(InputError, match="^line 8, ID T06"):
        band_table(df, "ID", "O", "E", spells_col="S", first_line=2)
    out, _ = band_table(df, "ID", "O", "E", spells_col="S", skip_bad_rows=True)
    assert out.loc[6, "FLAG"].startswith("O greater than S")
    assert band_table(df, "ID", "O", "E")[0].loc[6, "FLAG"] == ""     # not checked without spells
    with pytest.raises(InputError, match="'SPELLS'"):
        band_table(df, "ID", "O", "E", spells_col="SPELLS")
