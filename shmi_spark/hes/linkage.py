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

Two steps, so that the expensive one can run where the spells are built
(:func:`shmi_spark.hes.prepare.build_provider_spells`) and the cheap one where
the window length is known: :func:`death_flags` joins each patient's earliest
death and marks the target and first spells with windows over the patient's
spells that need no ordering (the target is the patient's greatest spell in the
order above among those admitted on or before the death, the first its least;
this equals the ordered window's "next admission" test), so spells already
partitioned and sorted by ``HESID`` are neither shuffled nor sorted again;
:func:`death_outcome` is then row by row.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from shmi_spark.hes.codes import DIED_IN_HOSPITAL

__all__ = ["LINKAGE_COUNTS", "earliest_deaths", "death_flags", "death_outcome", "link_deaths",
           "linkage_counts"]

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


def _spell_order() -> Column:
    """The patient's spells in order: ``ADMIDATE``, ``DISDATE``, ``SPELL_ID`` (each nulls last), ``PROCODE3``.

    A struct, compared field by field; each value is preceded by its null flag
    so that nulls sort last, as in an ordered window.  ``PROCODE3`` only breaks
    a tie two spells of one patient cannot have (one spell key, two trusts).
    """
    fields = [F.col("ADMIDATE"), F.col("DISDATE"), F.col("SPELL_ID"), F.col("PROCODE3")]
    return F.struct(*[e for i, c in enumerate(fields) for e in (c.isNull().alias(f"N{i}"), c.alias(f"V{i}"))])


def death_flags(spells: DataFrame, deaths: DataFrame, *, included: Column | None = None) -> DataFrame:
    """Join each patient's earliest ONS death; add ``_ONS_DOD``, ``_D``, ``_TARGET``, ``_FIRST`` (METHOD.md §3).

    ``spells`` needs ``HESID, SPELL_ID, PROCODE3, ADMIDATE, DISDATE, DISMETH``;
    ``deaths`` needs ``HESID, DOD``.  Only the spells where ``included`` is true
    (all when None) take part; the others get null ``_ONS_DOD`` and ``_D`` and 0
    flags.  ``_D`` is the date of death (ONS, else the earliest discharge with
    ``DISMETH`` 4); ``_TARGET`` marks the patient's last spell admitted on or
    before ``_D``, ``_FIRST`` the patient's first spell.  The join is by
    ``HESID`` and the windows are partitioned by ``HESID`` without ordering:
    on spells hash-partitioned by ``HESID`` (``build_spells``) the spells are
    not shuffled again and the deaths are shuffled once to match.
    """
    inc = F.coalesce(included, F.lit(False)) if included is not None else F.lit(True)
    per_patient = earliest_deaths(deaths).select("HESID", F.col("ONS_DOD").alias("_ONS"))
    joined = spells.join(per_patient, on="HESID", how="left").withColumn("_INC", inc)
    patient = Window.partitionBy("HESID")
    kept = F.col("_INC")
    discharged_dead = F.col("DISMETH") == DIED_IN_HOSPITAL
    death_date = F.coalesce(F.col("_ONS"), F.min(F.when(kept & discharged_dead, F.col("DISDATE"))).over(patient))
    order = _spell_order()
    candidate = F.when(kept & (F.col("ADMIDATE") <= F.col("_D")), order)
    return (
        joined
        .withColumn("_D", F.when(kept, death_date))
        .withColumn("_TARGET", (kept & order.eqNullSafe(F.max(candidate).over(patient))).cast("int"))
        .withColumn("_FIRST", (kept & order.eqNullSafe(F.min(F.when(kept, order)).over(patient))).cast("int"))
        .withColumn("_ONS_DOD", F.when(kept, F.col("_ONS")))
        .drop("_ONS", "_INC")
    )


def death_outcome(flagged: DataFrame, *, window_days: int) -> DataFrame:
    """``DIED``, ``DEATH_IN_HOSPITAL``, ``DOD`` from :func:`death_flags`' columns, row by row (METHOD.md §3).

    The target spell died when discharged dead (``DISMETH`` 4) or
    ``_D − DISDATE ≤ window_days``; in hospital when ``DISMETH`` 4 or
    ``_D ≤ DISDATE``.
    """
    discharged_dead = F.col("DISMETH") == DIED_IN_HOSPITAL
    died = (F.col("_TARGET") == 1) & (discharged_dead | (F.datediff(F.col("_D"), F.col("DISDATE")) <= window_days))
    in_hospital = discharged_dead | (F.col("_D") <= F.col("DISDATE"))
    return (
        flagged
        .withColumn("DIED", F.coalesce(died, F.lit(False)).cast("int"))
        .withColumn("DEATH_IN_HOSPITAL", F.when(F.col("DIED") == 1, in_hospital.cast("int")))
        .withColumn("DOD", F.when(F.col("DIED") == 1, F.col("_D")))
    )


def link_deaths(spells: DataFrame, deaths: DataFrame, *, window_days: int) -> DataFrame:
    """Add ``DIED``, ``DEATH_IN_HOSPITAL``, ``DOD`` and the linkage flags to spells (all of them included).

    ``spells`` needs ``HESID, SPELL_ID, PROCODE3, ADMIDATE, DISDATE, DISMETH``;
    ``deaths`` needs ``HESID, DOD`` (validated).  Besides the three outcome
    columns the result carries ``_ONS_DOD`` (null without an ONS record),
    ``_D``, ``_TARGET`` (this spell is the patient's last before the death)
    and ``_FIRST`` (the patient's first spell), used only by
    :func:`linkage_counts`: :func:`death_flags` then :func:`death_outcome`.
    """
    return death_outcome(death_flags(spells, deaths), window_days=window_days)


def linkage_counts(linked: DataFrame, deaths: DataFrame) -> dict:
    """The linkage's reconciliation counts (one pass over each input; no shuffle of the spells)."""
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
        # one _FIRST spell per patient: the patients with an ONS record and an included spell
        F.sum(F.when((F.col("_FIRST") == 1) & F.col("_ONS_DOD").isNotNull(), 1).otherwise(0))
        .alias("_patients_linked_ons"),
        F.sum(F.when((F.col("DISMETH") == DIED_IN_HOSPITAL) & ~dead, 1).otherwise(0))
        .alias("discharged_dead_not_linked"),
    ).first()
    if d is None or s is None:
        raise RuntimeError("an aggregation over the whole table returned no row")
    counts = {**d.asDict(), **s.asDict()}
    counts["ons_deaths_without_included_spell"] = (counts["patients_with_ons_death"] or 0) - (
        counts.pop("_patients_linked_ons") or 0)
    return {k: int(counts.get(k) or 0) for k in LINKAGE_COUNTS}
