"""Validation's cost (issue 13): episodes parsed once and materialised; the same results as before.

``validate_inputs`` writes the episodes in their canonical types once
(:func:`shmi_spark.io.ingest.materialise`) and flags them from those plain
columns.  These tests pin that the materialised columns are the parsed ones,
that ``validate_inputs`` accepts and rejects exactly what ``flag_episodes`` on
the unmaterialised episodes does, and that the flagging plan holds no parsing.
"""

from __future__ import annotations

import datetime as dt

from spell_cases import TRUST_CODES, episode, raw_deaths, raw_episodes

from shmi_spark.config import QualityConfig, SparkConfig
from shmi_spark.hes.prepare import validate_inputs
from shmi_spark.hes.validate import (
    REJECT_COLUMNS,
    duplicate_keys,
    duplicate_losers,
    flag_episodes,
    flag_rows,
    split_flagged,
)
from shmi_spark.io.ingest import materialise
from shmi_spark.session import size_shuffles

LATEST = dt.date(2026, 11, 29)
ROWS = [
    episode(EPIKEY="ok"),
    episode(EPIKEY="corrupt", _CORRUPT="a|b"),
    episode(EPIKEY="nohesid", HESID=" "),
    episode(EPIKEY="baddate", EPISTART="2007-02-30"),
    episode(EPIKEY="slash", ADMIDATE="10/01/2008", EPISTART="20080110"),
    episode(EPIKEY="noadmi", ADMIDATE="1800-01-01"),
    episode(EPIKEY="future", DISDATE="2031-01-15"),
    episode(EPIKEY="unknownprov", PROCODE3="ZZ9"),
    episode(EPIKEY="endsbefore", EPISTART="2008-01-12", EPIEND="2008-01-11"),
    episode(EPIKEY="age", STARTAGE="45.5", SEX="q", EPIORDER="first", CLASSPAT="1.0"),
    episode(EPIKEY="diag", DIAG_4_01="i21.9", DIAG_4_02="E11", DIAG_4_04="E11", IMD04_DECILE="7"),
    episode(EPIKEY="dup", HESID="X"),
    episode(EPIKEY="dup", HESID="X"),
    episode(EPIKEY="dupbad", ADMIDATE="2007-02-30"),
    episode(EPIKEY="dupbad"),
]
DEATHS = [("P1", "2008-02-01"), ("P2", "31/02/2008"), (None, "2008-01-01"), ("P3", "")]


def _rows(df) -> list[tuple]:
    return sorted((tuple(r) for r in df.collect()), key=repr)


def test_materialised_episodes_keep_values_and_types(spark, tmp_path):
    episodes = raw_episodes(spark, ROWS)
    typed = materialise(spark, episodes, str(tmp_path / "typed"))
    assert [(f.name, f.dataType) for f in typed.schema] == [(f.name, f.dataType) for f in episodes.schema]
    assert _rows(typed) == _rows(episodes)


def test_flagging_a_materialised_frame_parses_nothing(spark, tmp_path):
    typed = materialise(spark, raw_episodes(spark, ROWS), str(tmp_path / "typed"))
    plan = flag_episodes(typed, TRUST_CODES, latest=LATEST)._jdf.queryExecution().optimizedPlan().toString()
    assert "to_date" not in plan and "trim(" not in plan


def test_validate_inputs_equals_flagging_the_unmaterialised_episodes(spark, tmp_path):
    episodes, deaths = raw_episodes(spark, ROWS), raw_deaths(spark, DEATHS)
    validated = validate_inputs(spark, episodes, deaths, trust_codes=TRUST_CODES, work=str(tmp_path / "work"),
                                quality=QualityConfig(), latest=LATEST, episodes_read=len(ROWS),
                                deaths_read=len(DEATHS))
    accepted, rejects = split_flagged(flag_episodes(episodes, TRUST_CODES, latest=LATEST))
    assert [f.name for f in validated.episodes.schema] == accepted.columns
    assert _rows(validated.episodes) == _rows(accepted)
    ep_rejects = validated.rejects.where("EPIKEY IS NOT NULL").select(*REJECT_COLUMNS)
    assert _rows(ep_rejects) == _rows(rejects)
    assert validated.episode_report.read == len(ROWS)
    assert validated.death_report.read == len(DEATHS)
    assert validated.invalid_codes["STARTAGE"]["values"] == {"45.5": 1}


def test_session_keeps_generated_methods_small_enough_to_jit(spark):
    """A whole-stage method over HotSpot's 8,000-byte limit would run interpreted (issue 13)."""
    assert int(spark.conf.get("spark.sql.codegen.hugeMethodLimit")) <= 8000


def test_flagging_reads_the_wide_rows_once(spark, tmp_path):
    """The rows are flagged in one scan; duplicates are ranked from the flags' narrow columns (issue 13)."""
    typed = materialise(spark, raw_episodes(spark, ROWS), str(tmp_path / "typed"))
    keys = duplicate_keys(typed).toPandas()
    plan = flag_rows(typed, TRUST_CODES, latest=LATEST, dup_keys=spark.createDataFrame(keys),
                     broadcast_dup_keys=True)._jdf.queryExecution().optimizedPlan().toString()
    assert plan.count("] parquet") == 1  # one scan of the materialised episodes
    rows = materialise(spark, flag_rows(typed, TRUST_CODES, latest=LATEST), str(tmp_path / "rows"))
    losers = duplicate_losers(rows)
    assert sorted(rows.join(losers, rows["_ROW"] == losers["_LOSER"]).select("EPIKEY").toPandas()["EPIKEY"]) \
        == ["dup"]  # of two identical rows one is kept; "dupbad"'s second row is the valid one, kept


def test_shuffle_partitions_follow_the_input_size(spark):
    before = spark.conf.get("spark.sql.shuffle.partitions")
    try:
        assert size_shuffles(spark, SparkConfig(shuffle_partitions=0, parallelism=8), 53_625_931) == 108
        assert spark.conf.get("spark.sql.shuffle.partitions") == "108"
        assert size_shuffles(spark, SparkConfig(shuffle_partitions=0, parallelism=8), 1_469_151) == 8
        assert size_shuffles(spark, SparkConfig(shuffle_partitions=0, parallelism=8), 0) == 8
        spark.conf.set("spark.sql.shuffle.partitions", before)
        assert size_shuffles(spark, SparkConfig(shuffle_partitions=4), 53_625_931) is None
        assert spark.conf.get("spark.sql.shuffle.partitions") == before
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", before)
