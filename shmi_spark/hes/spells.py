"""Spells: episodes → provider spells, with exclusions counted by reason.

METHOD.md §2.  The unit is the provider spell: one patient's episodes in one
trust from admission to discharge, keyed by ``PROCODE3:PROVSPNOPS`` or, when
``PROVSPNOPS`` is blank, ``HESID:PROCODE3:ADMIDATE``.  Episodes are ordered by
``EPIORDER`` (then ``EPISTART``, then ``EPIKEY``, for a deterministic order).
The spell takes its diagnosis, age, sex, admission method, source of
admission (``ADMISORC``), class and comorbidity from its **first** episode and
its discharge date, method and destination (``DISDEST``) from its **last**.
``ADMISORC`` and ``DISDEST`` are optional input fields: absent, they are null.

Exclusions, in this order (each spell gets the first that applies):

* unfinished episodes (``EPISTAT`` ≠ 3) are dropped before spells are built
  (counted as episodes, ``UNFINISHED_EPISODE``);
* ``NO_DISCHARGE_DATE``: the last finished episode has no discharge date;
* ``DAY_CASE_OR_REGULAR_ATTENDER``: ``CLASSPAT`` 2, 3 or 4;
* ``STILLBIRTH``: ``DISMETH`` 5;
* ``NOT_ACUTE_TRUST``: the trust's ``TYPE`` is not ``acute``;
* ``DUPLICATE_SPELL``: a spell resubmitted under new keys (new ``EPIKEY`` and
  ``PROVSPNOPS``): the same patient, trust, admission and discharge dates,
  primary diagnosis, discharge method and number of episodes as another spell
  that is kept (the one with the lowest ``SPELL_ID``).  A patient cannot be in
  two such spells at once, so the copy would otherwise count the spell, and
  any death, twice.

Missing values never exclude a spell; they become ``unknown`` levels
(:mod:`shmi_spark.hes.covariates`).

The kept spells also get the patient's prior emergency admissions (the HSMR's
``PRIOR_EMERGENCY``, :mod:`shmi_spark.hes.prior_admissions`), counted over the
kept spells only; excluded spells get nulls.

Partitioning (performance, not a rule): by default the finished episodes are
shuffled once by ``HESID`` and every spell is built inside its patient's
partition, so the duplicate-spell and prior-admission windows here and the death linkage of §3
(:func:`shmi_spark.hes.linkage.death_flags`, a window over each patient's
spells) need no further shuffle of the spells (and the two windows here share one
sort: the duplicate-spell window partitions by ``HESID`` then the admission
day number, which orders the prior-admission window too).  Grouping within a patient
equals grouping by spell key alone unless one spell key carries episodes of
two patients (a data error: the general grouping gives such a spell the
``HESID`` of its first episode); :func:`spell_keys_span_patients` tells, and
``by_patient=False`` builds spells by key alone.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from shmi_spark.hes.codes import DAY_CASE_OR_REGULAR, FINISHED, PALLIATIVE_DIAGNOSIS, PALLIATIVE_SPECIALTY, STILLBIRTH
from shmi_spark.hes.prior_admissions import ADMISSION_DAY, admission_day, prior_emergency_admissions

__all__ = [
    "EXCLUSION_REASONS", "DUPLICATE_SPELL_KEY", "EPISODE_FIELDS", "OPTIONAL_EPISODE_FIELDS", "spell_key",
    "episode_is_palliative",
    "build_spells", "mark_duplicate_spells", "spell_keys_span_patients",
]

EXCLUSION_REASONS = (
    "NO_DISCHARGE_DATE", "DAY_CASE_OR_REGULAR_ATTENDER", "STILLBIRTH", "NOT_ACUTE_TRUST", "DUPLICATE_SPELL",
)
#: What makes two spells the same spell resubmitted (besides being kept by the earlier rules).
#: ``HESID`` then ``ADMIDATE`` first: the window's sort then also orders the prior-admission window.
DUPLICATE_SPELL_KEY = ("HESID", "ADMIDATE", "PROCODE3", "DISDATE", "DIAG_FIRST", "DISMETH", "N_EPISODES")
_FAR_DATE = "9999-12-31"

#: Episode fields carried into the ordered episode list of a spell.
EPISODE_FIELDS = (
    "EPIKEY", "HESID", "ADMIDATE", "DISDATE", "DISMETH", "CLASSPAT", "STARTAGE", "SEX",
    "ADMIMETH", "ADMISORC", "DISDEST", "DIAG_PRIMARY_RAW", "DIAG_SECONDARY", "BIRWEIT_1", "IMD_QUINTILE_RAW",
)
#: Optional input fields among them: null when the episodes do not have the column.
OPTIONAL_EPISODE_FIELDS = ("ADMISORC", "DISDEST")


def spell_key() -> Column:
    """``PROCODE3:PROVSPNOPS``, or ``HESID:PROCODE3:ADMIDATE`` when PROVSPNOPS is blank."""
    return F.when(
        F.col("PROVSPNOPS").isNotNull(), F.concat_ws(":", F.col("PROCODE3"), F.col("PROVSPNOPS"))
    ).otherwise(F.concat_ws(":", F.col("HESID"), F.col("PROCODE3"),
                            F.date_format(F.col("ADMIDATE"), "yyyy-MM-dd")))


def episode_is_palliative() -> Column:
    """``Z515`` in any diagnosis position or treatment specialty 315 (METHOD.md §7)."""
    return F.coalesce(
        (F.col("DIAG_PRIMARY_RAW") == PALLIATIVE_DIAGNOSIS)
        | F.array_contains(F.col("DIAG_SECONDARY"), PALLIATIVE_DIAGNOSIS)
        | (F.col("TRETSPEF") == PALLIATIVE_SPECIALTY),
        F.lit(False),
    ).cast("int")


def build_spells(episodes: DataFrame, *, acute_trusts: list[str], by_patient: bool = True) -> DataFrame:
    """Group finished episodes into spells; every spell carries ``EXCLUSION`` (null if kept).

    ``episodes`` are validated, typed episodes (:func:`shmi_spark.hes.validate.validate_episodes`).
    Output columns: ``SPELL_ID, HESID, PROCODE3, ADMIDATE, DISDATE, DISMETH,
    CLASSPAT, STARTAGE, SEX, ADMIMETH, ADMISORC, DISDEST, DIAG_FIRST,
    DIAG_SECOND, DIAG_SECONDARY, BIRWEIT_1, IMD_QUINTILE_RAW, N_EPISODES,
    PALLIATIVE, EXCLUSION, PRIOR_EMERGENCY, PRIOR_EMERGENCY_BAND`` (the last two
    null on excluded spells).  Episodes without the optional ``ADMISORC`` or
    ``DISDEST`` column give null values.

    ``by_patient`` (default): the episodes are hash-partitioned by ``HESID``
    (one shuffle) and grouped by ``HESID`` and spell key, and the result keeps
    that partitioning; the same spells as ``by_patient=False`` (grouping by
    spell key alone, the spell's ``HESID`` from its first episode) unless
    :func:`spell_keys_span_patients` of the result is true.
    """
    absent = [c for c in OPTIONAL_EPISODE_FIELDS if c not in episodes.columns]
    finished = episodes.withColumns({c: F.lit(None).cast("string") for c in absent}).where(
        F.col("EPISTAT") == FINISHED)
    if by_patient:
        finished = finished.repartition("HESID")
    order = F.struct(
        F.coalesce(F.col("EPIORDER"), F.lit(1 << 30)).alias("O1"),
        F.coalesce(F.col("EPISTART"), F.lit(_FAR_DATE).cast("date")).alias("O2"),
        F.col("EPIKEY").alias("O3"),
        *[F.col(c) for c in EPISODE_FIELDS],
    )
    patient = [F.col("HESID")] if by_patient else []
    grouped = finished.groupBy(*patient, spell_key().alias("SPELL_ID"), F.col("PROCODE3")).agg(
        F.sort_array(F.collect_list(order)).alias("EPS"),
        F.max(episode_is_palliative()).alias("PALLIATIVE"),
    )
    first = F.element_at(F.col("EPS"), 1)
    last = F.element_at(F.col("EPS"), -1)
    second = F.try_element_at(F.col("EPS"), F.lit(2))
    exclusion = (
        F.when(last["DISDATE"].isNull(), F.lit("NO_DISCHARGE_DATE"))
        .when(first["CLASSPAT"].isin(*DAY_CASE_OR_REGULAR), F.lit("DAY_CASE_OR_REGULAR_ATTENDER"))
        .when(last["DISMETH"] == STILLBIRTH, F.lit("STILLBIRTH"))
        .when(~F.col("PROCODE3").isin(*acute_trusts) if acute_trusts else F.lit(True),
              F.lit("NOT_ACUTE_TRUST"))
    )
    spells = grouped.select(
        F.col("SPELL_ID"),
        # the grouping column itself when by patient, so that Spark knows the partitioning holds
        F.col("HESID") if by_patient else first["HESID"].alias("HESID"),
        F.col("PROCODE3"),
        first["ADMIDATE"].alias("ADMIDATE"),
        last["DISDATE"].alias("DISDATE"),
        last["DISMETH"].alias("DISMETH"),
        first["CLASSPAT"].alias("CLASSPAT"),
        first["STARTAGE"].alias("STARTAGE"),
        first["SEX"].alias("SEX"),
        first["ADMIMETH"].alias("ADMIMETH"),
        first["ADMISORC"].alias("ADMISORC"),
        last["DISDEST"].alias("DISDEST"),
        first["DIAG_PRIMARY_RAW"].alias("DIAG_FIRST"),
        second["DIAG_PRIMARY_RAW"].alias("DIAG_SECOND"),
        first["DIAG_SECONDARY"].alias("DIAG_SECONDARY"),
        first["BIRWEIT_1"].alias("BIRWEIT_1"),
        first["IMD_QUINTILE_RAW"].alias("IMD_QUINTILE_RAW"),
        F.size(F.col("EPS")).alias("N_EPISODES"),
        F.col("PALLIATIVE").cast("int").alias("PALLIATIVE"),
        exclusion.alias("EXCLUSION"),
    ).withColumn(ADMISSION_DAY, admission_day())
    marked = mark_duplicate_spells(spells)
    return prior_emergency_admissions(marked, included=F.col("EXCLUSION").isNull()).drop(ADMISSION_DAY)


def mark_duplicate_spells(spells: DataFrame) -> DataFrame:
    """``EXCLUSION = DUPLICATE_SPELL`` on every kept spell but the first (by ``SPELL_ID``) of its key.

    When ``spells`` carry the admission day number
    (:data:`shmi_spark.hes.prior_admissions.ADMISSION_DAY`) the window
    partitions by it instead of ``ADMIDATE``: the same grouping (one day
    number per date), and its sort then serves the prior-admission window.
    """
    day = ADMISSION_DAY in spells.columns
    key = [F.col(ADMISSION_DAY) if c == "ADMIDATE" and day else F.col(c) for c in DUPLICATE_SPELL_KEY]
    copies = Window.partitionBy(*key, F.col("EXCLUSION").isNull()).orderBy("SPELL_ID")
    duplicate = F.col("EXCLUSION").isNull() & (F.row_number().over(copies) > 1)
    return spells.withColumn("EXCLUSION", F.when(duplicate, F.lit("DUPLICATE_SPELL"))
                             .otherwise(F.col("EXCLUSION")))


def spell_keys_span_patients(spells: DataFrame) -> bool:
    """True when a spell key (``SPELL_ID``, ``PROCODE3``) of ``build_spells(by_patient=True)`` has two patients.

    Only then does grouping within each patient differ from grouping by spell
    key alone (METHOD.md §2: a spell is one patient's); one narrow aggregate.
    """
    return not (spells.groupBy("SPELL_ID", "PROCODE3").agg(F.count(F.lit(1)).alias("N"))
                .where(F.col("N") > 1).isEmpty())
