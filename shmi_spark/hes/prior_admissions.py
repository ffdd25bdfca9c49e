"""Prior emergency admissions: the patient's emergency admissions in the year before a spell (HSMR case mix).

Rule.  A spell's ``PRIOR_EMERGENCY`` is the number of the same patient's
*other* included spells that are emergency admissions (``ADMIMETH`` 21–25,
2A–2D, 28: :func:`shmi_spark.hes.covariates.emergency_admission`) admitted in
the 365 days before this spell's admission: the prior spell's ``ADMIDATE`` in
``[ADMIDATE − 365 days, ADMIDATE − 1 day]``.  So an admission 365 days before
counts and one 366 days before does not; a spell admitted on the same day (the
spell itself, a transfer the same day) is not prior; an elective or other
non-emergency admission, an excluded spell and another patient's spell never
count.  Whether the prior spell was discharged before this admission does not
matter.  ``PRIOR_EMERGENCY_BAND`` is ``0``, ``1``, ``2`` or ``3+``.

A window over each patient's spells (``partitionBy(HESID)``), ordered by the
admission date as a day number (:func:`admission_day`, days since 1970-01-01),
with the range frame ``[−365, −1]``.

Partitioning (performance, not a rule): :func:`shmi_spark.hes.spells.build_spells`
runs this window where the spells are built, in their partitioning by
``HESID``, over the kept spells only (``included``), and gives its
duplicate-spell window the same day-number column (:data:`ADMISSION_DAY`),
whose sort by ``HESID`` then admission day then serves this window too: no
shuffle and no sort of its own.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from shmi_spark.hes.covariates import emergency_admission

__all__ = ["PRIOR_EMERGENCY_DAYS", "ADMISSION_DAY", "admission_day", "prior_emergency_band",
           "prior_emergency_admissions"]

#: The look-back: emergency admissions from this many days before the admission to the day before.
PRIOR_EMERGENCY_DAYS = 365
#: The internal column holding :func:`admission_day` (shared with the duplicate-spell window).
ADMISSION_DAY = "_ADMIDAY"


def admission_day() -> Column:
    """``ADMIDATE`` as a day number (days since 1970-01-01), for range windows in days."""
    return F.unix_date(F.col("ADMIDATE"))


def prior_emergency_band(count: Column) -> Column:
    """``0``, ``1``, ``2``, ``3+`` (null stays null)."""
    return F.when(count >= 3, F.lit("3+")).otherwise(count.cast("string"))


def prior_emergency_admissions(spells: DataFrame, *, included: Column | None = None,
                               days: int = PRIOR_EMERGENCY_DAYS) -> DataFrame:
    """Add ``PRIOR_EMERGENCY`` (int) and ``PRIOR_EMERGENCY_BAND`` (string) (module docstring).

    ``spells`` needs ``HESID, ADMIDATE, ADMIMETH``.  Only the spells where
    ``included`` is true (all when None) count and are counted; the others
    get nulls.  When ``spells`` already has :data:`ADMISSION_DAY` the window
    is ordered by it (and the column is kept); otherwise it is computed here
    and dropped.
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, not {days}")
    day_given = ADMISSION_DAY in spells.columns
    with_day = spells if day_given else spells.withColumn(ADMISSION_DAY, admission_day())
    kept = F.coalesce(included, F.lit(False)) if included is not None else F.lit(True)
    year_before = Window.partitionBy("HESID").orderBy(F.col(ADMISSION_DAY)).rangeBetween(-days, -1)
    counted = F.sum(F.when(kept, emergency_admission(F.col("ADMIMETH"))).otherwise(0)).over(year_before)
    result = (with_day
              .withColumn("PRIOR_EMERGENCY", F.when(kept, F.coalesce(counted, F.lit(0))).cast("int"))
              .withColumn("PRIOR_EMERGENCY_BAND", prior_emergency_band(F.col("PRIOR_EMERGENCY"))))
    return result if day_given else result.drop(ADMISSION_DAY)
