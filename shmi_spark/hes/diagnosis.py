"""Diagnosis group of a spell from the lookup (METHOD.md §1, §2).

The primary diagnosis is ``DIAG_4_01`` of the first episode.  **[choice]**
``method.symptom_second_episode``: when that is a symptom code (chapter R) and
the spell has a second episode with a primary diagnosis, use the second's.

The code is looked up 4-character first, then by its 3-character category (the
project's default table has both; NHS England's official file has 4-character
codes only), with broadcast joins against the small lookup.  A blank, malformed
or unmapped code goes to ``method.invalid_diagnosis_group``.
"""

from __future__ import annotations

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from shmi_spark.hes.codes import is_valid_icd10

__all__ = ["lookup_tables", "primary_diagnosis", "assign_diag_group"]


def lookup_tables(spark: SparkSession, codes: pd.DataFrame) -> tuple[DataFrame, DataFrame]:
    """(4-char table, 3-char table) as small Spark DataFrames ``CODE, DIAG_GROUP``."""
    pdf = codes[["CODE", "DIAG_GROUP"]].astype({"CODE": str, "DIAG_GROUP": "int64"})
    four = pdf[pdf["CODE"].str.len() == 4]
    three = pdf[pdf["CODE"].str.len() == 3]
    schema = "CODE string, DIAG_GROUP long"
    return (spark.createDataFrame(four, schema=schema),
            spark.createDataFrame(three, schema=schema))


def primary_diagnosis(*, symptom_second_episode: bool):
    """Column: the primary diagnosis used for grouping (METHOD.md §2 **[choice]**)."""
    first, second = F.col("DIAG_FIRST"), F.col("DIAG_SECOND")
    if not symptom_second_episode:
        return first
    return F.when(first.startswith("R") & second.isNotNull(), second).otherwise(first)


def assign_diag_group(spells: DataFrame, lookup4: DataFrame, lookup3: DataFrame, *,
                      invalid_group: int, symptom_second_episode: bool) -> DataFrame:
    """Add ``DIAG_PRIMARY`` and ``DIAG_GROUP`` (int) to spells."""
    with_code = spells.withColumn("DIAG_PRIMARY", primary_diagnosis(
        symptom_second_episode=symptom_second_episode))
    valid = is_valid_icd10(F.col("DIAG_PRIMARY"))
    l4 = F.broadcast(lookup4.select(F.col("CODE").alias("_C4"), F.col("DIAG_GROUP").alias("_G4")))
    l3 = F.broadcast(lookup3.select(F.col("CODE").alias("_C3"), F.col("DIAG_GROUP").alias("_G3")))
    joined = (
        with_code
        .join(l4, on=F.col("DIAG_PRIMARY") == F.col("_C4"), how="left")
        .join(l3, on=F.substring(F.col("DIAG_PRIMARY"), 1, 3) == F.col("_C3"), how="left")
    )
    group = F.when(valid, F.coalesce(F.col("_G4"), F.col("_G3"))).cast("int")
    return joined.withColumn("DIAG_GROUP", F.coalesce(group, F.lit(invalid_group))).drop(
        "_C4", "_G4", "_C3", "_G3")
