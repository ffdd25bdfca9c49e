"""The HSMR beside the SHMI (issue 16): definitions, covered groups, tables, bridge and baskets.

Rule tests on hand-built cases; the run's files on the 20k world (``run_all``, tests/conftest.py).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from chispa import assert_column_equality
from conftest import TEST_PROFILE
from pyspark.sql import functions as F

from shmi_spark.errors import InputError
from shmi_spark.indicator.baskets import Basket, basket_rows, basket_table, read_baskets
from shmi_spark.indicator.definitions import (
    BRIDGE,
    HSMR,
    SHMI,
    Definition,
    covered_groups,
    indicator_table,
    read_group_list,
)
from shmi_spark.indicator.funnel import poisson_limits
from shmi_spark.indicator.hsmr import BRIDGE_COLUMNS, HSMR_COLUMNS, bridge_table, hsmr_trust
from shmi_spark.indicator.periods import Period
from shmi_spark.model.cells import HSMR_COVARIATES

PERIOD = Period(label="P", start=date(2009, 4, 1), end=date(2010, 3, 31), window_start=date(2007, 4, 1),
                window_end=date(2010, 3, 31))
TRUSTS = pd.DataFrame({"PROCODE3": ["RA1", "RB2", "RC3"], "NAME": ["A", "B", "C"]})


# ---- definitions: the bridge changes one setting at a time ----

def test_bridge_changes_one_setting_per_step():
    fields = ("deaths", "unit", "covered_groups_only", "case_mix")
    assert BRIDGE[0][2] == SHMI and BRIDGE[-1][2] == HSMR
    assert [s for s, _, _ in BRIDGE] == [1, 2, 3, 4, 5]
    for (_, _, before), (_, _, after) in zip(BRIDGE, BRIDGE[1:], strict=False):
        changed = [f for f in fields if getattr(before, f) != getattr(after, f)]
        assert len(changed) == 1, changed
    assert (HSMR.deaths, HSMR.unit, HSMR.covered_groups_only, HSMR.case_mix) == \
        ("in_hospital", "superspell", True, "hsmr")


def test_definition_refuses_unknown_setting():
    with pytest.raises(ValueError, match="deaths must be one of"):
        Definition("x", deaths="in_30_days")


SPELL_SCHEMA = ("SPELL_ID string, PROCODE3 string, DISDATE date, DIAG_GROUP int, DIAG_PRIMARY string, "
                "DIED int, DEATH_IN_HOSPITAL int, BIRWEIT_BAND string, ADMISORC_CAT string, IMD_FIFTH string, "
                "PALLIATIVE int, PRIOR_EMERGENCY_BAND string, CHARLSON_SCORE int, CHARLSON_BAND string")


@pytest.fixture(scope="module")
def spells(spark):
    d = date(2009, 6, 1)
    rows = [
        ("s1", "RA1", d, 10, "J181", 1, 1, "n/a", "home", "3", 1, "0", 0, "0"),        # died in hospital
        ("s2", "RA1", d, 10, "J189", 1, 0, "n/a", "care_home", "5", 0, "3+", 7, ">5"),  # died after discharge
        ("s3", "RB2", d, 20, "I219", 0, None, "n/a", None, "unknown", 0, "1", 2, "1-5"),  # survived
        ("s4", "RB2", d, 30, "A419", 1, 1, "<1000", "other_hospital", "1", 0, "2", 3, "1-5"),
    ]
    return spark.createDataFrame(rows, SPELL_SCHEMA)


def test_indicator_table_in_hospital_deaths(spark, spells):
    got = indicator_table(spells, SHMI.but("x", deaths="in_hospital")).withColumn(
        "WANT", F.when(F.col("SPELL_ID").isin("s1", "s4"), 1).otherwise(0))
    assert_column_equality(got, "DIED", "WANT")


def test_indicator_table_groups_and_case_mix(spark, spells):
    shmi = indicator_table(spells, SHMI).orderBy("SPELL_ID").collect()
    assert all(r[t] == "n/a" for r in shmi for t in HSMR_COVARIATES)  # not used: no parameter
    assert [r.BIRWEIT_BAND for r in shmi] == ["n/a", "n/a", "n/a", "<1000"]
    assert [r.CHARLSON_BAND for r in shmi] == ["0", ">5", "1-5", "1-5"]  # the SHMI's Charlson: three bands
    assert [r.DIED for r in shmi] == [1, 1, 0, 1]
    with pytest.raises(ValueError, match="groups"):
        indicator_table(spells, SHMI.but("x", covered_groups_only=True))
    covered = SHMI.but("x", covered_groups_only=True, case_mix="hsmr")
    rows = indicator_table(spells, covered, groups=[10, 30]).orderBy("SPELL_ID").collect()
    assert [r.SPELL_ID for r in rows] == ["s1", "s2", "s4"]
    assert [r.PALLIATIVE_CARE for r in rows] == ["palliative", "not palliative", "not palliative"]
    assert [r.PRIOR_EMERGENCY_ADMISSIONS for r in rows] == ["0", "3+", "2"]
    assert [r.ADMISSION_SOURCE for r in rows] == ["home", "care_home", "other_hospital"]
    assert [r.DEPRIVATION_FIFTH for r in rows] == ["3", "5", "1"]
    assert [r.BIRWEIT_BAND for r in rows] == ["n/a"] * 3  # not in the HSMR's case mix
    # the HSMR's Charlson: the score itself (one slope), not the SHMI's bands
    assert [r.CHARLSON_INDEX for r in rows] == ["0", "7", "3"]
    assert [r.CHARLSON_BAND for r in rows] == ["n/a"] * 3
    with pytest.raises(ValueError, match="superspell"):
        indicator_table(spells, HSMR, groups=[10])


def test_null_source_is_unknown(spark, spells):
    covered = SHMI.but("x", case_mix="hsmr")
    row = indicator_table(spells, covered).where("SPELL_ID = 's3'").first()
    assert row.ADMISSION_SOURCE == "unknown"


# ---- covered groups ----

def _deaths_by_group(spark, counts: dict[int, int], *, outside: int = 0):
    """One in-hospital death per count (and a survivor per group), plus deaths outside the window."""
    rows, i = [], 0
    for g, n in counts.items():
        for _ in range(n):
            rows.append((f"d{i}", "RA1", date(2009, 1, 1), g, "X", 1, 1, "n/a", None, None, 0, "0", 0, "0"))
            i += 1
        rows.append((f"d{i}", "RA1", date(2009, 1, 1), g, "X", 0, None, "n/a", None, None, 0, "0", 0, "0"))
        i += 1
        # a death after discharge counts nothing
        rows.append((f"d{i}", "RA1", date(2009, 1, 1), g, "X", 1, 0, "n/a", None, None, 0, "0", 0, "0"))
        i += 1
    for _ in range(outside):
        rows.append((f"d{i}", "RA1", date(2006, 1, 1), 99, "X", 1, 1, "n/a", None, None, 0, "0", 0, "0"))
        i += 1
    return spark.createDataFrame(rows, SPELL_SCHEMA)


def test_covered_groups_until_the_share_is_reached(spark):
    # 100 in-hospital deaths: 40, 30, 20 (tie with 20), 10 ... the crossing group is in
    spells = _deaths_by_group(spark, {1: 40, 2: 30, 3: 20, 4: 10, 0: 50}, outside=500)
    got = covered_groups(spells, window_start=date(2008, 4, 1), window_end=date(2010, 3, 31), coverage=0.80,
                         invalid_group=0)
    by = got.set_index("DIAG_GROUP")
    assert list(got["DIAG_GROUP"][:4]) == [1, 2, 3, 4]  # ranked by deaths; the invalid group last
    assert by.loc[1, "SHARE"] == pytest.approx(0.4) and by.loc[3, "CUMULATIVE_SHARE"] == pytest.approx(0.9)
    assert by["COVERED"].to_dict() == {1: True, 2: True, 3: True, 4: False, 0: False}
    assert 99 not in by.index  # outside the window
    exactly = covered_groups(spells, window_start=date(2008, 4, 1), window_end=date(2010, 3, 31),
                             coverage=0.70, invalid_group=0)
    assert sorted(exactly.loc[exactly["COVERED"], "DIAG_GROUP"]) == [1, 2]  # 70% reached by two groups


def test_covered_groups_ties_by_group_number(spark):
    spells = _deaths_by_group(spark, {7: 10, 5: 10, 6: 10})
    got = covered_groups(spells, window_start=date(2008, 4, 1), window_end=date(2010, 3, 31), coverage=0.5,
                         invalid_group=0)
    assert list(got["DIAG_GROUP"]) == [5, 6, 7]
    assert list(got["COVERED"]) == [True, True, False]


def test_listed_groups_replace_the_ranking(spark, tmp_path):
    spells = _deaths_by_group(spark, {1: 40, 2: 30, 3: 20})
    path = tmp_path / "groups.csv"
    path.write_text("DIAG_GROUP\n3\n2\n")
    listed = read_group_list(str(path))
    got = covered_groups(spells, window_start=date(2008, 4, 1), window_end=date(2010, 3, 31), coverage=0.8,
                         invalid_group=0, listed=listed)
    assert sorted(got.loc[got["COVERED"], "DIAG_GROUP"]) == [2, 3]
    path.write_text("DIAG_GROUP\nabc\n")
    with pytest.raises(InputError, match=r"line 2: field DIAG_GROUP 'abc'"):
        read_group_list(str(path))


# ---- the HSMR's table ----

def _by_trust(o, e, spells=None):
    return pd.DataFrame({"PROCODE3": ["RA1", "RB2", "RC3"][:len(o)], "SPELLS": spells or [1000] * len(o),
                         "OBSERVED": o, "EXPECTED": e})


def test_hsmr_rescaled_to_100_with_poisson_limits():
    rows, stats = hsmr_trust(_by_trust([60, 40, 0], [40.0, 40.0, 0.5]), TRUSTS, PERIOD, min_expected=1.0)
    assert list(rows.columns) == HSMR_COLUMNS
    factor = 100 / 80.5
    assert stats["rescale_factor"] == pytest.approx(factor)
    e = np.array([40.0, 40.0, 0.5]) * factor
    assert rows["EXPECTED"].tolist() == pytest.approx(np.round(e, 4).tolist())
    assert rows["OBSERVED"].sum() == pytest.approx(rows["EXPECTED"].sum(), abs=1e-3)  # national HSMR 100
    assert rows["HSMR"].tolist() == pytest.approx(np.round(100 * np.array([60, 40, 0]) / e, 2).tolist())
    lo, up = poisson_limits(e, 0.95)
    assert rows["LL95"].tolist() == pytest.approx(np.round(100 * lo, 2).tolist())
    assert rows["UL95"].tolist() == pytest.approx(np.round(100 * up, 2).tolist())
    # RA1: 60 deaths against 49.7 expected is inside its 95% limits (1.207 < 1.29); RC3 too small to band
    assert 60 / e[0] < up[0] and rows.loc[0, "BANDING"] == 2 and rows.loc[1, "BANDING"] == 2
    assert pd.isna(rows.loc[2, "BANDING"]) and rows.loc[2, "BANDING_LABEL"].startswith("Not banded")
    assert rows["PROVIDER_NAME"].tolist() == ["A", "B", "C"]


def test_hsmr_bands_on_the_95_limits():
    rows, stats = hsmr_trust(_by_trust([150, 50, 100], [100.0, 100.0, 100.0]), TRUSTS, PERIOD, min_expected=1.0)
    assert rows["BANDING"].tolist() == [1, 3, 2]
    assert rows["BANDING_LABEL"].tolist() == ["Higher than expected", "Lower than expected", "As expected"]
    assert (stats["n_higher"], stats["n_as_expected"], stats["n_lower"]) == (1, 1, 1)


# ---- the bridge ----

def test_bridge_names_the_largest_step():
    shmi_rows = pd.DataFrame({"PROVIDER_CODE": ["RA1", "RB2"], "SHMI": [1.3, 1.0], "BANDING": [1, 2]})
    hsmr_rows = pd.DataFrame({"PROVIDER_CODE": ["RA1", "RB2"], "HSMR": [100.0, 95.0], "BANDING": [2, 2]})
    steps = [  # national O = E at every step, so no rescaling
        (1, "SHMI", _by_trust([130, 70], [100.0, 100.0])),
        (2, "in hospital", _by_trust([55, 45], [50.0, 50.0])),            # RA1 1.3 -> 1.1: -0.2
        (3, "groups", _by_trust([50, 40], [45.0, 45.0])),
        (4, "superspells", _by_trust([50, 40], [45.0, 45.0])),
        (5, "HSMR", _by_trust([45], [45.0])),                              # RB2 has no spell here
    ]
    got = bridge_table(steps, PERIOD, shmi=shmi_rows, hsmr=hsmr_rows)
    assert list(got.columns) == BRIDGE_COLUMNS
    assert len(got) == 10
    ra1 = got[got["PROVIDER_CODE"] == "RA1"].set_index("STEP")
    assert ra1["RATIO"].tolist() == pytest.approx([1.3, 1.1, round(50 / 45, 4), round(50 / 45, 4), 1.0])
    assert np.isnan(ra1.loc[1, "CHANGE"]) and ra1.loc[2, "CHANGE"] == pytest.approx(-0.2)
    assert ra1["LARGEST_CHANGE"].tolist() == [False, True, False, False, False]
    rb2 = got[got["PROVIDER_CODE"] == "RB2"].set_index("STEP")
    assert rb2.loc[5, "OBSERVED"] == 0 and rb2.loc[5, "EXPECTED"] == 0 and np.isnan(rb2.loc[5, "RATIO"])
    assert rb2["LARGEST_CHANGE"].sum() == 1  # the step with a ratio that moved most, not the empty one
    assert rb2.loc[2, "LARGEST_CHANGE"]  # 0.7 -> 0.9 is larger than 0.9 -> 0.8889
    assert (rb2["SHMI"] == 1.0).all() and (rb2["HSMR_BANDING"] == 2).all()


def test_bridge_rescales_each_step():
    shmi_rows = pd.DataFrame({"PROVIDER_CODE": ["RA1", "RB2"], "SHMI": [1.0, 1.0], "BANDING": [2, 2]})
    steps = [(1, "SHMI", _by_trust([50, 50], [25.0, 25.0]))]  # national O/E = 2: E doubled
    got = bridge_table(steps, PERIOD, shmi=shmi_rows, hsmr=shmi_rows.rename(columns={"SHMI": "HSMR"}))
    assert got["EXPECTED"].tolist() == [50.0, 50.0] and got["RATIO"].tolist() == [1.0, 1.0]


# ---- baskets ----

def test_read_baskets(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text("basket,code\nlungs,J18\nlungs,j18.9\nlungs,122\nheart,I21\n")
    got = {b.name: b for b in read_baskets(str(path))}
    assert got["lungs"] == Basket("lungs", ("J18", "J189"), (122,))
    assert got["heart"] == Basket("heart", ("I21",), ())
    path.write_text("BASKET,CODE\nlungs,???\n")
    with pytest.raises(InputError, match=r"b.csv, line 2: field CODE '\?\?\?'"):
        read_baskets(str(path))
    path.write_text("NAME,CODE\nlungs,J18\n")
    with pytest.raises(InputError, match="no column BASKET"):
        read_baskets(str(path))


def test_basket_rows_tag_each_spell_once_per_basket(spark, spells):
    baskets = [Basket("lungs", ("J18", "J189"), ()), Basket("sepsis and heart", ("A41",), (20,)),
               Basket("all ten", (), (10,))]
    got = sorted((r.SPELL_ID, r.BASKET) for r in basket_rows(spells, baskets).collect())
    assert got == [("s1", "all ten"), ("s1", "lungs"), ("s2", "all ten"), ("s2", "lungs"),
                   ("s3", "sepsis and heart"), ("s4", "sepsis and heart")]


def test_basket_table_bands_on_poisson_limits():
    sums = pd.DataFrame({"BASKET": ["b", "b"], "PROCODE3": ["RA1", "RB2"], "SPELLS": [500, 500],
                         "OBSERVED": [60, 20], "EXPECTED": [20.0, 20.0]})
    got = basket_table(sums, PERIOD, indicator="SHMI", factor=2.0, min_expected=1.0)
    assert got["EXPECTED"].tolist() == [40.0, 40.0] and got["RATIO"].tolist() == [1.5, 0.5]
    assert got["BANDING"].tolist() == [1, 3]


# ---- the run (20k world, one 60-month period) ----

@pytest.mark.slow
def test_run_writes_hsmr_files(run_all):
    out, summary = run_all
    trust = pd.read_csv(out / "hsmr_trust.csv")
    assert list(trust.columns) == HSMR_COLUMNS
    assert not trust["PROVIDER_CODE"].duplicated().any()
    assert trust["OBSERVED"].sum() == pytest.approx(trust["EXPECTED"].sum(), abs=1e-3 * len(trust))
    bridge = pd.read_csv(out / "shmi_vs_hsmr.csv")
    shmi = pd.read_csv(out / "shmi_trust.csv")
    assert len(bridge) == 5 * len(shmi)
    assert (bridge.groupby("PROVIDER_CODE")["LARGEST_CHANGE"].sum() <= 1).all()
    step1 = bridge[bridge["STEP"] == 1].set_index("PROVIDER_CODE")
    s = shmi.set_index("PROVIDER_CODE")
    assert (step1["OBSERVED"] == s.loc[step1.index, "OBSERVED"]).all()
    assert np.allclose(step1["EXPECTED"], s.loc[step1.index, "EXPECTED"], atol=1e-4)
    step5 = bridge[bridge["STEP"] == 5].set_index("PROVIDER_CODE")
    h = trust.set_index("PROVIDER_CODE")
    assert np.allclose(step5.loc[h.index, "RATIO"] * 100, h["HSMR"], atol=0.01, equal_nan=True)
    groups = pd.read_csv(out / "hsmr_groups.csv")
    covered = groups[groups["COVERED"]]
    assert covered["SHARE"].sum() >= 0.8 and covered["SHARE"].sum() - covered["SHARE"].min() < 0.8
    baskets = pd.read_csv(out / "basket_trust.csv")
    assert set(baskets["INDICATOR"]) == {"SHMI", "HSMR"}
    assert set(baskets["BASKET"]) <= {"pneumonia", "heart attack", "sepsis"}
    assert (out / "publication" / "hsmr_trust.csv").is_file()
    assert summary["hsmr"][0]["groups_covered"] == int(covered.shape[0])
    for step in ("bridge-2-in-hospital", "bridge-4-superspells", "hsmr"):  # step 3 takes step 2's models
        assert (next((out / "model").iterdir()) / step / "diagnostics.csv").is_file()
    # the Charlson score: the SHMI's three bands, the HSMR's one slope per group
    period = next((out / "model").iterdir())
    shmi_terms = pd.read_csv(period / "coefficients.csv")
    hsmr_terms = pd.read_csv(period / "hsmr" / "coefficients.csv")
    assert "CHARLSON_INDEX" not in set(shmi_terms["TERM"]) and "CHARLSON_BAND" not in set(hsmr_terms["TERM"])
    fitted = pd.read_csv(period / "hsmr" / "diagnostics.csv").query("RULE != 'crude_rate'")["DIAG_GROUP"]
    slopes = hsmr_terms[hsmr_terms["TERM"] == "CHARLSON_INDEX"]
    assert set(slopes["DIAG_GROUP"]) == set(fitted) and not slopes["DIAG_GROUP"].duplicated().any()
    # a slope, or (one score in the group) that score's reference row
    assert ((slopes["LEVEL"] == "per unit") ^ slopes["REFERENCE"]).all() and (slopes["LEVEL"] == "per unit").any()


@pytest.mark.slow
@pytest.mark.parametrize("step", [2, 3, 4])
def test_bridge_step_is_a_direct_run_of_its_definition(spark, run_all, test_config, step):
    """A bridge step's O, E and ratio are those of the engine run directly on the step's definition."""
    from shmi_spark.hes.superspells import superspell_table
    from shmi_spark.indicator.compute import fit_and_score
    from shmi_spark.indicator.hsmr import bridge_table as _bridge
    from shmi_spark.io.reference import load_diag_lookup, reference_paths

    out, summary = run_all
    p = summary["periods"][0]
    period = Period(label=p["period"], start=p["start"], end=p["end"], window_start=p["window_start"],
                    window_end=p["window_end"])
    assert isinstance(period.start, date)  # the summary's own values, not read back from JSON
    spells = spark.read.parquet(str(out / "spells"))
    groups = pd.read_csv(out / "hsmr_groups.csv")
    covered = sorted(groups.loc[groups["COVERED"], "DIAG_GROUP"].astype(int))
    definition = BRIDGE[step - 1][2]
    table = indicator_table(spells, definition, superspells=superspell_table(spells), groups=covered)
    cfg = test_config
    lookup = load_diag_lookup(reference_paths(cfg.reference.diag_lookup, cfg.reference.charlson)[0])
    direct = fit_and_score(spark, cfg, table, period, lookup=lookup, quality=False,
                           model_dir=str(out.parent / f"direct-{step}"))
    shmi = pd.read_csv(out / "shmi_trust.csv")
    want = _bridge([(step, "direct", direct.by_trust)], period, shmi=shmi, hsmr=pd.read_csv(out / "hsmr_trust.csv"))
    bridge = pd.read_csv(out / "shmi_vs_hsmr.csv")
    got = bridge[bridge["STEP"] == step].set_index("PROVIDER_CODE").loc[want["PROVIDER_CODE"]]
    assert (got["OBSERVED"].to_numpy() == want["OBSERVED"].to_numpy()).all()
    assert np.allclose(got["EXPECTED"], want["EXPECTED"], atol=1e-4)
    assert np.allclose(got["RATIO"], want["RATIO"], atol=1e-4, equal_nan=True)


@pytest.fixture(scope="module")
def post_discharge_run(spark, tmp_path_factory):
    """A 200k world (its generator plants one trust with excess deaths after discharge only), its last 12 months."""
    from shmi_spark.config import load_config
    from shmi_spark.pipeline import run_pipeline
    from shmi_spark.synth.generate import generate

    world = tmp_path_factory.mktemp("world_200k")
    generate(str(world), 200_000, 5, date(2005, 4, 1), date(2010, 9, 30), workers=2, log=lambda *_: None)
    out = tmp_path_factory.mktemp("post_discharge") / "run"
    cfg = load_config(TEST_PROFILE, settings={"input": {"dir": str(world)}, "output": {"dir": str(out)},
                                               "hsmr": {"enabled": True}})
    summary = run_pipeline(spark, cfg, quiet=True)
    return world, out, summary


@pytest.mark.slow
def test_post_discharge_trust_is_found_and_explained(post_discharge_run):
    """The planted trust: a SHMI above the 99.8% limit, no HSMR excess, and its bridge names step 2."""
    world, out, summary = post_discharge_run
    planted = pd.read_csv(world / "truth" / "planted_post_discharge.csv")
    code = planted["PROCODE3"].iloc[0]
    shmi = pd.read_csv(out / "shmi_trust.csv").set_index("PROVIDER_CODE")
    hsmr = pd.read_csv(out / "hsmr_trust.csv").set_index("PROVIDER_CODE")
    assert shmi.loc[code, "BANDING"] == 1 and bool(shmi.loc[code, "OUTLIER_998"])
    assert shmi["Z"].idxmax() == code  # the most extreme SHMI of the period
    assert hsmr.loc[code, "BANDING"] != 1 and hsmr.loc[code, "HSMR"] < hsmr.loc[code, "UL95"]
    bridge = pd.read_csv(out / "shmi_vs_hsmr.csv")
    rows = bridge[bridge["PROVIDER_CODE"] == code].set_index("STEP")
    assert rows.loc[2, "LARGEST_CHANGE"] and rows["LARGEST_CHANGE"].sum() == 1
    assert rows.loc[1, "RATIO"] > 1.5 and rows.loc[2, "RATIO"] < 1.2  # the excess is gone with in-hospital deaths
