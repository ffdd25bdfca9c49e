"""Whole-pipeline tests on a small synthetic world whose generator knows the truth."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest
from conftest import TEST_PROFILE

from shmi_spark.config import load_config

pytestmark = pytest.mark.slow  # every test here runs the whole pipeline on a 20,000-admission world

def plain_counts(world) -> pd.DataFrame:
    """An independent, plain pandas computation of spells and deaths per trust and year.

    Written from METHOD.md without the pipeline's code: drop unusable rows the way a
    careful analyst would (an invalid code is not one: METHOD.md §2 makes it an unknown
    level), build spells, exclude, link deaths to the last spell.
    """
    ep = pd.read_parquet(world / "hes_apc").astype("string")
    trusts = pd.read_csv(world / "reference" / "trusts.csv", dtype=str)
    deaths = pd.read_parquet(world / "ons_deaths").astype("string")
    ep = ep.drop(columns=["FYEAR"], errors="ignore").drop_duplicates()

    def date(s):
        return pd.to_datetime(s.where(~s.isin(["1800-01-01", "1801-01-01"])), format="%Y-%m-%d", errors="coerce")

    for c in ("ADMIDATE", "EPISTART", "EPIEND", "DISDATE"):
        bad = ep[c].notna() & (ep[c].str.strip() != "") & ~ep[c].isin(["1800-01-01", "1801-01-01"]) & date(ep[c]).isna()
        ep = ep[~bad]
        ep[c + "_D"] = date(ep[c])
    ok = (
        ep["PROCODE3"].isin(trusts["PROCODE3"])
        & ~(ep["EPIEND_D"] < ep["EPISTART_D"]) & ~(ep["DISDATE_D"] < ep["ADMIDATE_D"])
        & ~(ep["EPISTART_D"] < ep["ADMIDATE_D"]) & ep["ADMIDATE_D"].notna()
    )
    ep = ep[ok & (ep["EPISTAT"] == "3")].copy()
    ep["KEY"] = ep["PROCODE3"] + ":" + ep["PROVSPNOPS"]
    ep["ORD"] = ep["EPIORDER"].astype(int)
    ep = ep.sort_values(["KEY", "ORD", "EPISTART_D", "EPIKEY"])
    first = ep.groupby("KEY").first()
    last = ep.groupby("KEY").last()
    sp = pd.DataFrame({"HESID": first["HESID"], "PROCODE3": first["PROCODE3"], "ADM": first["ADMIDATE_D"],
                       "CLASSPAT": first["CLASSPAT"], "DIS": last["DISDATE_D"], "DISMETH": last["DISMETH"]})
    acute = set(trusts.loc[trusts["TYPE"] == "acute", "PROCODE3"])
    sp = sp[sp["DIS"].notna() & ~sp["CLASSPAT"].isin(["2", "3", "4"]) & (sp["DISMETH"] != "5")
            & sp["PROCODE3"].isin(acute)].reset_index()
    dod = deaths.assign(D=pd.to_datetime(deaths["DOD"], errors="coerce")).groupby("HESID")["D"].min()
    dead_in_hosp = sp[sp["DISMETH"] == "4"].groupby("HESID")["DIS"].min()
    sp["DOD"] = sp["HESID"].map(dod).fillna(sp["HESID"].map(dead_in_hosp))
    sp = sp.sort_values(["HESID", "ADM", "DIS", "KEY"])
    sp["NEXT"] = sp.groupby("HESID")["ADM"].shift(-1)
    target = sp["DOD"].notna() & (sp["ADM"] <= sp["DOD"]) & (sp["NEXT"].isna() | (sp["NEXT"] > sp["DOD"]))
    sp["DIED"] = (target & ((sp["DISMETH"] == "4") | ((sp["DOD"] - sp["DIS"]).dt.days <= 30))).astype(int)
    sp["DIS_FYEAR"] = sp["DIS"].dt.year - (sp["DIS"].dt.month < 4).astype(int)
    return (sp.groupby(["PROCODE3", "DIS_FYEAR"]).agg(SPELLS=("KEY", "size"), DEATHS=("DIED", "sum"))
            .reset_index().sort_values(["PROCODE3", "DIS_FYEAR"]).reset_index(drop=True))


def pipeline_counts(out) -> pd.DataFrame:
    s = pd.read_parquet(out / "spells")
    s["DIS_FYEAR"] = s["DIS_FYEAR"].astype(int)
    return (s.groupby(["PROCODE3", "DIS_FYEAR"], observed=True).agg(SPELLS=("SPELL_ID", "size"), DEATHS=("DIED", "sum"))
            .reset_index().sort_values(["PROCODE3", "DIS_FYEAR"]).reset_index(drop=True))


def test_spell_and_death_counts_match_the_generators_truth(run_all, world):
    out, _ = run_all
    truth = pd.read_csv(world / "truth" / "trust_year_counts.csv").sort_values(["PROCODE3", "DIS_FYEAR"])
    got = pipeline_counts(out)
    pd.testing.assert_frame_equal(got[["PROCODE3", "DIS_FYEAR", "SPELLS", "DEATHS"]].astype({"SPELLS": "int64", "DEATHS": "int64"}),
                                  truth[["PROCODE3", "DIS_FYEAR", "SPELLS", "DEATHS"]].reset_index(drop=True)
                                  .astype({"SPELLS": "int64", "DEATHS": "int64"}), check_dtype=False)


def test_spell_and_death_counts_match_a_plain_computation(run_all, world):
    out, _ = run_all
    plain = plain_counts(world)
    got = pipeline_counts(out)
    pd.testing.assert_frame_equal(got.astype({"SPELLS": "int64", "DEATHS": "int64", "DIS_FYEAR": "int64"}),
                                  plain.astype({"SPELLS": "int64", "DEATHS": "int64", "DIS_FYEAR": "int64"}),
                                  check_dtype=False)


def test_summary_reconciles_every_input_row(run_all, world):
    out, summary = run_all
    on_disk = json.loads((out / "summary.json").read_text())
    v = on_disk["validate"]
    assert v["reconciled"] is True
    assert v["episodes_read"] == v["episodes_accepted"] + v["episodes_rejected"] > 0
    assert v["episodes_rejected"] == sum(v["episode_rejects_by_reason"].values())
    s = on_disk["spells"]
    assert s["episodes_in_spells"] + s["episodes_unfinished"] == v["episodes_accepted"]
    assert s["spells_built"] == s["spells_included"] + sum(s["exclusions_by_reason"].values())
    planted = json.loads((world / "truth" / "summary.json").read_text())
    assert v["episodes_read"] == planted["episode_rows_written"]
    # METHOD.md §2: invalid codes are counted per field and value, not rejected
    got = {field: info["values"] for field, info in v["invalid_codes"].items()}
    assert got == planted["invalid_codes"] and got
    assert v["quality_gate"]["passed"] is True
    marker = json.loads((out / "_SHMI_OUTPUT.json").read_text())
    assert marker["kind"] == "run" and "summary.json" in marker["files"]


def test_outputs_written_without_patient_identifiers(run_all):
    out, summary = run_all
    trust = pd.read_csv(out / "shmi_trust.csv")
    for col in ("PROVIDER_CODE", "PROVIDER_NAME", "PERIOD_START", "PERIOD_END", "SPELLS", "OBSERVED", "EXPECTED",
                "SHMI", "OD95_LL", "OD95_UL", "OD998_LL", "OD998_UL", "PO998_LL", "PO998_UL", "BANDING",
                "BANDING_LABEL"):
        assert col in trust.columns, col
    assert len(trust) == 146
    assert trust["EXPECTED"].sum() == pytest.approx(trust["OBSERVED"].sum(), rel=1e-4)  # rescaled
    for name in ("shmi_trust_diag_group.csv", "contextual.csv", "shmi_area.csv", "model_quality.csv",
                 "publication/shmi_trust.csv"):
        assert (out / name).is_file(), name
    hesids = set(pd.read_parquet(out / "spells", columns=["HESID"])["HESID"].head(500))
    for f in list(out.glob("*.csv")) + list(out.glob("publication/*.csv")) + list(out.glob("model/*/*.csv")):
        text = f.read_text()
        assert "HESID" not in text
        assert not any(h in text for h in hesids), f
    assert (out / "model").is_dir() and any((out / "model").glob("*/coefficients.csv"))
    rejects = pd.read_parquet(out / "rejects")
    assert "HESID" not in rejects.columns
    assert len(rejects) == summary["validate"]["episodes_rejected"] + summary["validate"]["deaths_rejected"]


def test_covariate_margins_match_the_generators_truth(run_all, world):
    """Age, sex, admission method, deprivation fifth and Charlson band of every spell agree with the truth."""
    out, _ = run_all
    keys = ["AGE_BAND", "SEX_CAT", "ADMIMETH_CAT", "IMD_FIFTH", "CHARLSON_BAND"]
    s = pd.read_parquet(out / "spells", columns=keys + ["DIED"])
    got = (s.groupby(keys).agg(SPELLS=("DIED", "size"), DEATHS=("DIED", "sum")).reset_index()
           .sort_values(keys).reset_index(drop=True))
    truth = pd.read_csv(world / "truth" / "calibration_counts.csv", dtype={k: str for k in keys})
    truth = truth[truth["SPELLS"] > 0].sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(got.astype({"SPELLS": "int64", "DEATHS": "int64"}),
                                  truth.astype({"SPELLS": "int64", "DEATHS": "int64"}), check_dtype=False)


def test_run_from_an_existing_spell_table(spark, run_all, world, tmp_path):
    """--spells: the models and indicator from a previous run's spells/ give the same SHMI."""
    from shmi_spark.pipeline import run_pipeline

    out, _ = run_all
    cfg = load_config(TEST_PROFILE, settings={
        "input": {"spells": str(out / "spells"), "trusts": str(world / "reference" / "trusts.csv")},
        "output": {"dir": str(tmp_path / "again")},
        "method": {"period_months": 60, "modelling_window_months": 60}})
    summary = run_pipeline(spark, cfg, quiet=True)
    assert summary["inputs"]["spells"] == str(out / "spells") and "validate" not in summary
    first = pd.read_csv(out / "shmi_trust.csv")
    again = pd.read_csv(tmp_path / "again" / "shmi_trust.csv")
    pd.testing.assert_frame_equal(first, again)


def test_spells_input_inside_the_output_folder_is_refused(spark, run_all, world):
    from shmi_spark.errors import InputError
    from shmi_spark.pipeline import run_pipeline

    out, _ = run_all
    cfg = load_config(TEST_PROFILE, settings={
        "input": {"spells": str(out / "spells"), "trusts": str(world / "reference" / "trusts.csv")},
        "output": {"dir": str(out)}})
    with pytest.raises(InputError, match="spells"):
        run_pipeline(spark, cfg, quiet=True)
    assert (out / "spells").is_dir()


def test_same_input_same_numbers_whatever_the_partitioning(spark, run_all, world, tmp_path):
    """Determinism: other shuffle partition counts, and the other model engine, the same numbers.

    Observed deaths and spells identical, expected deaths equal to 1e-9 relative, the same
    bandings and funnel limits: nothing may depend on how rows fall into partitions or in
    which order the groups' models finish; and the default engine (numpy IRLS per group in
    one Spark job) gives what Spark ML's own fits (batched, in parallel) give.
    """
    from shmi_spark.pipeline import run_pipeline

    out, _ = run_all
    cfg = load_config(TEST_PROFILE, settings={
        "input": {"dir": str(world)}, "output": {"dir": str(tmp_path / "other")},
        "method": {"period_months": 60, "modelling_window_months": 60},
        "model": {"engine": "spark_ml", "parallelism": 3, "batch_parameters": 150}})
    before = spark.conf.get("spark.sql.shuffle.partitions")
    spark.conf.set("spark.sql.shuffle.partitions", "11")
    try:
        run_pipeline(spark, cfg, quiet=True)
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", before)
    keys = ["PERIOD", "PROVIDER_CODE"]
    first = pd.read_csv(out / "shmi_trust.csv").sort_values(keys).reset_index(drop=True)
    other = pd.read_csv(tmp_path / "other" / "shmi_trust.csv").sort_values(keys).reset_index(drop=True)
    assert len(first) == len(other) > 10
    for column in ("SPELLS", "OBSERVED", "BANDING"):
        pd.testing.assert_series_equal(first[column], other[column])
    for column in ("EXPECTED", "SHMI"):  # printed to 4 dp: equal
        assert ((other[column] - first[column]).abs() <= 1e-9 * first[column].abs()).all(), column
    # the unrounded source of every expected death: each group's coefficients, to 1e-9
    for folder in (out / "model").iterdir():
        coef = ["DIAG_GROUP", "TERM", "LEVEL"]
        a = pd.read_parquet(folder / "coefficients.parquet").sort_values(coef).reset_index(drop=True)
        b = pd.read_parquet(tmp_path / "other" / "model" / folder.name / "coefficients.parquet"
                            ).sort_values(coef).reset_index(drop=True)
        pd.testing.assert_frame_equal(a[coef], b[coef])
        assert ((a["ESTIMATE"] - b["ESTIMATE"]).abs() <= 1e-9 * a["ESTIMATE"].abs().clip(lower=1.0)).all()
    first_spells = spark.read.parquet(str(out / "spells"))
    other_spells = spark.read.parquet(str(tmp_path / "other" / "spells"))
    assert first_spells.exceptAll(other_spells).count() == 0 and other_spells.exceptAll(first_spells).count() == 0


def test_models_are_the_maximum_likelihood_limit(spark, run_all):
    """Every group's fitted cell probabilities equal a long-run record-level IRLS (model.limit_check)
    to 1e-6, every trust's expected deaths to 1e-4 relative, and no diagnostics row names an exception:
    the SHMI's models and the HSMR's."""
    from shmi_spark.model.limit_check import check_run_period

    out, summary = run_all
    spells = spark.read.parquet(str(out / "spells"))
    for p in summary["periods"]:
        result = check_run_period(spells, out, p["period"], dt.date.fromisoformat(str(p["window_start"])),
                                  dt.date.fromisoformat(str(p["window_end"])))
        assert result["max_cell_difference"] < 1e-6, result
        assert result["max_trust_relative_difference"] < 1e-4, result
        assert result["exceptions"] == 0 and "mle_limit" in result["rules"], result
        # the HSMR's models, its Charlson slope included, on the HSMR's table rebuilt from the spells
        hsmr = check_run_period(spells, out, p["period"], dt.date.fromisoformat(str(p["window_start"])),
                                dt.date.fromisoformat(str(p["window_end"])), hsmr=True)
        assert hsmr["max_cell_difference"] < 1e-6, hsmr
        assert hsmr["max_trust_relative_difference"] < 1e-4, hsmr
        assert hsmr["exceptions"] == 0 and set(hsmr["rules"]) <= {"mle", "mle_limit", "crude_rate"}, hsmr
