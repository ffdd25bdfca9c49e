"""Spells and death linkage in one partitioning by patient (issue 13), with the same results.

* the physical plan of spells → duplicate window → deaths join → linkage windows shuffles the
  episodes once and the deaths once, both by ``HESID``, and sorts nothing else;
* the linkage's unordered windows (:func:`shmi_spark.hes.linkage.death_flags`) give what the
  ordered window of METHOD.md §3 (the next spell's admission date) gives, on random patients with
  ties in admission and discharge dates;
* a spell key carrying two patients' episodes (a data error) is grouped by key alone, as
  before: :func:`shmi_spark.hes.prepare.build_provider_spells` notices and builds again.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from types import SimpleNamespace

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from spell_cases import ACUTE, TRUST_CODES, episode, raw_deaths, raw_episodes

from shmi_spark.hes.codes import DIED_IN_HOSPITAL
from shmi_spark.hes.linkage import death_flags, link_deaths
from shmi_spark.hes.prepare import build_provider_spells
from shmi_spark.hes.spells import build_spells, spell_keys_span_patients
from shmi_spark.hes.validate import validate_deaths, validate_episodes

D = dt.date.fromisoformat


def _materialised(spark, df: DataFrame, path) -> DataFrame:
    """``df`` written and read back, as the pipeline's validated inputs are (no plan upstream)."""
    df.write.parquet(str(path))
    return spark.read.parquet(str(path))


def _inputs(spark, tmp_path, episodes: list[dict], deaths: list[tuple]):
    accepted, _ = validate_episodes(raw_episodes(spark, episodes), TRUST_CODES)
    d_ok, _ = validate_deaths(raw_deaths(spark, deaths))
    return _materialised(spark, accepted, tmp_path / "ep"), _materialised(spark, d_ok, tmp_path / "de")


def test_spells_and_linkage_shuffle_episodes_once_by_patient(spark, tmp_path):
    episodes, deaths = _inputs(spark, tmp_path, [
        episode(),
        episode(EPIKEY="E2", PROVSPNOPS="S2", ADMIDATE="2008-02-01", EPISTART="2008-02-01", EPIEND="2008-02-03",
                DISDATE="2008-02-03"),
        episode(HESID="P2", EPIKEY="E3", PROVSPNOPS="S3", CLASSPAT="2"),
    ], [("P1", "2008-02-10")])
    flagged = death_flags(build_spells(episodes, acute_trusts=ACUTE), deaths, included=F.col("EXCLUSION").isNull())
    saved = {k: spark.conf.get(k) for k in ("spark.sql.adaptive.enabled", "spark.sql.autoBroadcastJoinThreshold")}
    try:  # the static plan, and a sort-merge join as at full scale (2M deaths are not broadcast)
        spark.conf.set("spark.sql.adaptive.enabled", "false")
        spark.conf.set("spark.sql.autoBroadcastJoinThreshold", "-1")
        plan = flagged._jdf.queryExecution().executedPlan().toString()
    finally:
        for k, v in saved.items():
            spark.conf.set(k, v)
    exchanges = re.findall(r"Exchange (\w+)\(([^,)]*)", plan)
    assert [(kind, re.sub(r"#\d+", "", key)) for kind, key in exchanges] == [("hashpartitioning", "HESID")] * 2, plan
    assert "SortMergeJoin" in plan
    # one sort of the spells (the duplicate-spell window, by patient first), one of the deaths (the join)
    assert len(re.findall(r"\bSort \[", plan)) == 2, plan
    rows = {r["SPELL_ID"]: r for r in flagged.collect()}
    assert (rows["RA1:S1"]["_TARGET"], rows["RA1:S1"]["_FIRST"], rows["RA1:S2"]["_TARGET"]) == (0, 1, 1)
    assert rows["RA1:S3"]["EXCLUSION"] == "DAY_CASE_OR_REGULAR_ATTENDER" and rows["RA1:S3"]["_D"] is None


def _ordered_window_link(spells: DataFrame, deaths: DataFrame, window_days: int) -> DataFrame:
    """METHOD.md §3 as an ordered window (the next spell's admission date): the reference."""
    per_patient = deaths.groupBy("HESID").agg(F.min("DOD").alias("ONS_DOD"))
    by_patient = Window.partitionBy("HESID")
    ordered = by_patient.orderBy(F.col("ADMIDATE").asc_nulls_last(), F.col("DISDATE").asc_nulls_last(),
                                 F.col("SPELL_ID").asc_nulls_last())
    dead = F.col("DISMETH") == DIED_IN_HOSPITAL
    flagged = (spells.join(per_patient, on="HESID", how="left")
               .withColumn("_D", F.coalesce(F.col("ONS_DOD"), F.min(F.when(dead, F.col("DISDATE"))).over(by_patient)))
               .withColumn("_NEXT", F.lead("ADMIDATE").over(ordered))
               .withColumn("_FIRST", (F.row_number().over(ordered) == 1).cast("int")))
    target = (F.col("_D").isNotNull() & (F.col("ADMIDATE") <= F.col("_D"))
              & (F.col("_NEXT").isNull() | (F.col("_NEXT") > F.col("_D"))))
    died = target & (dead | (F.datediff(F.col("_D"), F.col("DISDATE")) <= window_days))
    return (flagged.withColumn("_TARGET", F.coalesce(target, F.lit(False)).cast("int"))
            .withColumn("DIED", F.coalesce(died, F.lit(False)).cast("int"))
            .withColumn("DEATH_IN_HOSPITAL", F.when(F.col("DIED") == 1, (dead | (F.col("_D") <= F.col("DISDATE")))
                                                    .cast("int")))
            .withColumn("DOD", F.when(F.col("DIED") == 1, F.col("_D")))
            .withColumnRenamed("ONS_DOD", "_ONS_DOD"))


def test_unordered_linkage_windows_equal_the_ordered_window(spark):
    rng = random.Random(13)
    start = D("2008-01-01")
    spells, deaths = [], []
    for p in range(300):
        for s in range(rng.randint(1, 5)):
            adm = start + dt.timedelta(days=rng.randint(0, 40))  # few dates: many ties
            dis = adm + dt.timedelta(days=rng.choice([0, 0, 1, 3, 10]))
            spells.append((f"P{p}", f"RA1:{p}-{s}", "RA1", adm, dis, rng.choice(["1", "1", "4", None]),
                           rng.choice([None, None, None, "STILLBIRTH"])))
        for _ in range(rng.choice([0, 0, 1, 2])):
            deaths.append((f"P{p}", start + dt.timedelta(days=rng.randint(-5, 90))))
    schema = "HESID string, SPELL_ID string, PROCODE3 string, ADMIDATE date, DISDATE date, DISMETH string, " \
             "EXCLUSION string"
    all_spells = spark.createDataFrame(spells, schema).repartition(3, "HESID")
    deaths_df = spark.createDataFrame(deaths, "HESID string, DOD date")
    included = all_spells.where(F.col("EXCLUSION").isNull())
    columns = ["SPELL_ID", "_ONS_DOD", "_D", "_TARGET", "_FIRST", "DIED", "DEATH_IN_HOSPITAL", "DOD"]
    expected = sorted(map(tuple, _ordered_window_link(included, deaths_df, 30).select(*columns).collect()))
    assert sorted(map(tuple, link_deaths(included, deaths_df, window_days=30).select(*columns).collect())) == expected
    # over all spells, only the included taking part (what build_provider_spells writes)
    flagged = death_flags(all_spells, deaths_df, included=F.col("EXCLUSION").isNull())
    mine = flagged.where(F.col("EXCLUSION").isNull()).select(*columns[:5]).collect()
    assert sorted(map(tuple, mine)) == sorted(e[:5] for e in expected)
    assert sum(e[5] for e in expected) > 20  # the comparison covers deaths
    excluded = flagged.where(F.col("EXCLUSION").isNotNull()).agg(F.sum("_TARGET"), F.sum("_FIRST"),
                                                                 F.count("_D")).first()
    assert tuple(excluded) == (0, 0, 0)


def test_a_spell_key_with_two_patients_is_grouped_by_key(spark, tmp_path):
    """PROVSPNOPS S1 at RA1 for P1 and P2: one spell, P1's (its first episode), as grouping by key gives."""
    rows = [
        episode(EPIKEY="E1", EPIORDER="1", EPIEND="2008-01-12", DISDATE=None),
        episode(HESID="P2", EPIKEY="E2", EPIORDER="2", EPISTART="2008-01-12"),
        episode(HESID="P3", EPIKEY="E3", PROVSPNOPS="S3", DISMETH="4"),
    ]
    episodes, deaths = _inputs(spark, tmp_path, rows, [])
    by_patient = build_spells(episodes, acute_trusts=ACUTE)
    assert by_patient.where(F.col("SPELL_ID") == "RA1:S1").count() == 2 and spell_keys_span_patients(by_patient)
    by_key = build_spells(episodes, acute_trusts=ACUTE, by_patient=False)
    assert not spell_keys_span_patients(by_key)
    validated = SimpleNamespace(episodes=episodes, deaths=deaths, episode_report=SimpleNamespace(accepted=3))
    spells = build_provider_spells(spark, validated, acute_trusts=ACUTE, work=str(tmp_path / "work"))  # type: ignore[arg-type]
    got = {r["SPELL_ID"]: r for r in spells.spells.collect()}
    assert sorted(got) == ["RA1:S1", "RA1:S3"]
    s1 = got["RA1:S1"]
    assert (s1["HESID"], s1["N_EPISODES"], s1["DISDATE"], s1["EXCLUSION"]) == ("P1", 2, D("2008-01-15"), None)
    assert (got["RA1:S3"]["_TARGET"], got["RA1:S3"]["_D"]) == (1, D("2008-01-15"))
    assert spells.by_exclusion == {"ACCEPTED": 2} and spells.episodes_in_spells == 3
    assert sorted(map(tuple, spells.spells.select(*by_key.columns).collect())) == \
        sorted(map(tuple, by_key.collect()))
