"""Death linkage: in hospital or within 30 days of discharge (METHOD.md §3).

Runs on the spells that survived the exclusions of §2, before any restriction
to a period.  Rules:

* ONS deaths: a patient with several records keeps the earliest ``DOD`` (the
  number of duplicate records is reported).  A patient with no ONS record but a
  spell discharged with ``DISMETH`` 4 died on the earliest such discharge date.
* A window over each patient's spells ordered by ``ADMIDATE``, then
  ``DISDATE``, then ``SPELL_ID`` (deterministic): the target spell is the last
  one admitted on or before the date of death (the next spell's admission date
  tells).  Only the target can die; earlier spells are survivors even when the
  death is within 30 days of their discharge.
* The target's outcome is death when it was discharged dead (``DISMETH`` 4) or
  ``DOD − DISDATE ≤ window_days`` (inclusive).
* Died in hospital: ``DISMETH`` 4 or ``DOD ≤ DISDATE``; otherwise after discharge.
* A death before the admission of every spell of the patient is reported, not
  linked.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from shmi_spark.hes.codes import DIED_IN_HOSPITAL

__all__ = ["LINKAGE_COUNTS", "earliest_deaths", "link_deaths", "linkage_counts"]

LINKAGE_COUNTS = (
    "death_records", "duplicate_death_records", "patients_with_ons_death",
    "deaths_linked", "deaths_linked_in_hospital", "deaths_linked_after_discharge",
    "deaths_in_hospital_without_ons_record", "deaths_beyond_window",
    "deaths_before_first_admission", "ons_deaths_without_included_spell",
    "discharged_dead_not_linked",
)


def earliest_deaths(deaths: DataFrame) -> DataFrame:
    """One row per patient: ``HESID, ONS_DOD`` (earliest), ``N_RECORDS``."""
    return deaths.groupBy("HESID").agg(
        F.min("DOD").alias("ONS_DOD"), F.count(F.lit(1)).alias("N_RECORDS"))


def link_deaths(spells: DataFrame, deaths: DataFrame, *, window_days: int) -> DataFrame:
    """Add ``DIED``, ``DEATH_IN_HOSPITAL``, ``DOD`` and the linkage flags to spells.

    ``spells`` needs ``HESID, SPELL_ID, ADMIDATE, DISDATE, DISMETH``; ``deaths``
    needs ``HESID, DOD`` (validated).  Besides the three outcome columns the
    result carries ``_ONS_DOD`` (null without an ONS record), ``_TARGET``
    (this spell is the patient's last before the death) and ``_FIRST`` (the
    patient's first spell), used only by :func:`linkage_counts`.
    """
    per_patient = earliest_deaths(deaths).select("HESID", "ONS_DOD")
    joined = spells.join(per_patient, on="HESID", how="left")
    by_patient = Window.partitionBy("HESID")
    ordered = by_patient.orderBy(
        F.col("ADMIDATE").asc_nulls_last(), F.col("DISDATE").asc_nulls_last(),
        F.col("SPELL_ID").asc_nulls_last())
    discharged_dead = F.col("DISMETH") == DIED_IN_HOSPITAL
    death_date = F.coalesce(
        F.col("ONS_DOD"),
        F.min(F.when(discharged_dead, F.col("DISDATE"))).over(
            by_patient.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)))
    next_admission = F.lead("ADMIDATE").over(ordered)
    flagged = (
        joined
        .withColumn("_D", death_date)
        .withColumn("_NEXT_ADMIDATE", next_admission)
        .withColumn("_FIRST", (F.row_number().over(ordered) == 1).cast("int"))
    )
    target = (
        F.col("_D").isNotNull() & (F.col("ADMIDATE") <= F.col("_D"))
        & (F.col("_NEXT_ADMIDATE").isNull() | (F.col("_NEXT_ADMIDATE") > F.col("_D")))
    )
    died = target & (discharged_dead | (F.datediff(F.col("_D"), F.col("DISDATE")) <= window_days))
    in_hospital = discharged_dead | (F.col("_D") <= F.col("DISDATE"))
    return (
        flagged
        .withColumn("_TARGET", F.coalesce(target, F.lit(False)).cast("int"))
        .withColumn("DIED", F.coalesce(died, F.lit(False)).cast("int"))
        .withColumn("DEATH_IN_HOSPITAL", F.when(F.col("DIED") == 1, in_hospital.cast("int")))
        .withColumn("DOD", F.when(F.col("DIED") == 1, F.col("_D")))
        .withColumnRenamed("ONS_DOD", "_ONS_DOD")
        .drop("_NEXT_ADMIDATE")
    )


def linkage_counts(linked: DataFrame, deaths: DataFrame) -> dict:
    """The linkage's reconciliation counts (one pass over each input)."""
    d = earliest_deaths(deaths).agg(
        F.sum("N_RECORDS").alias("death_records"),
        F.sum(F.col("N_RECORDS") - 1).alias("duplicate_death_records"),
        F.count(F.lit(1)).alias("patients_with_ons_death"),
    ).first()
    dead = F.col("DIED") == 1
    s = linked.agg(
        F.sum(F.col("DIED")).alias("deaths_linked"),
        F.sum(F.when(dead & (F.col("DEATH_IN_HOSPITAL") == 1), 1).otherwise(0)).alias("deaths_linked_in_hospital"),
        F.sum(F.when(dead & (F.col("DEATH_IN_HOSPITAL") == 0), 1).otherwise(0)).alias("deaths_linked_after_discharge"),
        F.sum(F.when(dead & F.col("_ONS_DOD").isNull(), 1).otherwise(0)).alias("deaths_in_hospital_without_ons_record"),
        F.sum(F.when((F.col("_TARGET") == 1) & ~dead, 1).otherwise(0)).alias("deaths_beyond_window"),
        F.sum(F.when((F.col("_FIRST") == 1) & (F.col("_D") < F.col("ADMIDATE")), 1).otherwise(0))
        .alias("deaths_before_first_admission"),
        F.countDistinct(F.when(F.col("_ONS_DOD").isNotNull(), F.col("HESID"))).alias("_patients_linked_ons"),
        F.sum(F.when((F.col("DISMETH") == DIED_IN_HOSPITAL) & ~dead, 1).otherwise(0))
        .alias("discharged_dead_not_linked"),
    ).first()
    if d is None or s is None:
        raise RuntimeError("an aggregation over the whole table returned no row")
    counts = {**d.asDict(), **s.asDict()}
    counts["ons_deaths_without_included_spell"] = (counts["patients_with_ons_death"] or 0) - (
        counts.pop("_patients_linked_ons") or 0)
    return {k: int(counts.get(k) or 0) for k in LINKAGE_COUNTS}
