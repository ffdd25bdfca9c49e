"""Continuous inpatient spells (CIPS, "superspells"): provider spells joined by transfers, for the HSMR.

Built from the spell table (docs/tables.md, "spells"; "superspells").  Rules:

* Each patient's spells are ordered by ``ADMIDATE``, then ``DISDATE``, then
  ``SPELL_ID`` (then ``PROCODE3``, a tie two spells of one patient cannot
  have), a deterministic order.
* A spell **continues** the previous spell's CIPS when it is admitted on or
  after the previous spell's discharge and at most ``max_gap_days`` days after
  it (default 2: the same day, the next day or the day after) **and** it is a
  transfer: the previous spell's ``DISDEST`` is an NHS hospital provider
  (49–53), or this spell's ``ADMISORC`` is (49–53), or this spell's
  ``ADMIMETH`` is 81 (:data:`shmi_spark.hes.codes.TRANSFER_HOSPITAL`,
  :data:`~shmi_spark.hes.codes.ADMIMETH_TRANSFER`).  Any other spell starts a
  new CIPS: a readmission without a transfer code, a transfer admitted more
  than ``max_gap_days`` after the discharge, a spell admitted before the
  previous one's discharge.  Whether the trusts differ does not matter (a
  transfer within one trust continues the CIPS too).
* Chains can be long (A → B → C): the running sum of the "starts a new CIPS"
  flags numbers them; ``CIPS_ID`` is the ``SPELL_ID`` of the chain's first
  spell, ``CIPS_SEQ`` the spell's place in it (1, 2, …).

One row per CIPS (:func:`superspell_table`): the case mix (diagnosis group,
Charlson, age, sex, admission method and source, ``ADMIDATE``, ``ADM_MONTH``,
prior emergency admissions …) is the first spell's; ``DISDATE``,
``DIS_FYEAR`` and ``DISDEST`` are the last spell's; ``DIED``, ``PALLIATIVE``,
``DEATH_IN_HOSPITAL`` and ``DOD`` are the greatest over the chain (a patient
has at most one spell with ``DIED`` = 1, so these are the dying spell's
values: the last spell's whenever the death is linked to it).  The trust
(``PROCODE3``) is chosen by ``attribution``: the first spell's (``first``),
the last spell's (``last``), or one row for each distinct trust of the chain
(``each``), every such row with the whole CIPS's outcome.

Partitioning: one window over each patient's spells (``partitionBy(HESID)``)
and a grouping by ``HESID`` and ``CIPS_ID``: one shuffle of the spell table by
``HESID``, one sort.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window, WindowSpec
from pyspark.sql import functions as F

from shmi_spark.hes.codes import ADMIMETH_TRANSFER, TRANSFER_HOSPITAL
from shmi_spark.hes.spell_table import SPELL_COLUMNS

__all__ = ["ATTRIBUTIONS", "DEFAULT_MAX_GAP_DAYS", "SUPERSPELL_COLUMNS", "FROM_LAST_SPELL", "MAX_OVER_CHAIN",
           "is_transfer", "link_superspells", "superspell_table"]

#: How a CIPS is attributed to trusts.
ATTRIBUTIONS = ("first", "last", "each")
#: A transfer continues the CIPS when admitted at most this many days after the previous discharge.
DEFAULT_MAX_GAP_DAYS = 2
#: The superspell table: the spell table's columns and the number of provider spells in the CIPS.
SUPERSPELL_COLUMNS = (*SPELL_COLUMNS, "N_SPELLS")
#: Columns taken from the chain's last spell (the others but these and :data:`MAX_OVER_CHAIN`: its first).
FROM_LAST_SPELL = ("DISDATE", "DIS_FYEAR", "DISDEST")
#: Columns that are their greatest value over the chain's spells.
MAX_OVER_CHAIN = ("DIED", "DEATH_IN_HOSPITAL", "DOD", "PALLIATIVE")


def _patient_order() -> WindowSpec:
    return Window.partitionBy("HESID").orderBy(
        F.col("ADMIDATE").asc_nulls_last(), F.col("DISDATE").asc_nulls_last(), F.col("SPELL_ID").asc_nulls_last(),
        F.col("PROCODE3").asc_nulls_last())


def is_transfer(previous_disdest: Column, admisorc: Column, admimeth: Column) -> Column:
    """The previous spell's ``DISDEST`` or this ``ADMISORC`` in 49–53, or this ``ADMIMETH`` 81 (nulls: false)."""
    return F.coalesce(
        previous_disdest.isin(*TRANSFER_HOSPITAL) | admisorc.isin(*TRANSFER_HOSPITAL)
        | admimeth.isin(*ADMIMETH_TRANSFER),
        F.lit(False))


def link_superspells(spells: DataFrame, *, max_gap_days: int = DEFAULT_MAX_GAP_DAYS) -> DataFrame:
    """Add ``CIPS_ID`` (string: the chain's first ``SPELL_ID``) and ``CIPS_SEQ`` (int: 1, 2, … in the chain).

    ``spells`` needs ``HESID, SPELL_ID, PROCODE3, ADMIDATE, DISDATE, DISDEST,
    ADMISORC, ADMIMETH`` (the spell table has them).  The rules: module
    docstring.  One window ordering, so one sort of each patient's spells.
    """
    if max_gap_days < 0:
        raise ValueError(f"max_gap_days must be 0 or more, not {max_gap_days}")
    ordered = _patient_order()
    so_far = ordered.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    gap = F.datediff(F.col("ADMIDATE"), F.lag("DISDATE").over(ordered))
    transfer = is_transfer(F.lag("DISDEST").over(ordered), F.col("ADMISORC"), F.col("ADMIMETH"))
    continues = F.coalesce(gap.between(0, max_gap_days) & transfer, F.lit(False))
    return (
        spells
        .withColumn("_NEW", ~continues)
        .withColumn("_ROW", F.row_number().over(ordered))
        .withColumn("CIPS_ID", F.last(F.when(F.col("_NEW"), F.col("SPELL_ID")), ignorenulls=True).over(so_far))
        .withColumn("_START", F.last(F.when(F.col("_NEW"), F.col("_ROW")), ignorenulls=True).over(so_far))
        .withColumn("CIPS_SEQ", (F.col("_ROW") - F.col("_START") + 1).cast("int"))
        .drop("_NEW", "_ROW", "_START")
    )


def _chain_column(name: str, attribution: str) -> Column:
    if name == "SPELL_ID":
        return F.col("CIPS_ID").alias(name)
    if name == "PROCODE3":
        return (F.col("_TRUST") if attribution == "each" else F.col(f"_{attribution.upper()}.PROCODE3")).alias(name)
    if name in MAX_OVER_CHAIN:
        return F.col(f"_MAX_{name}").alias(name)
    if name in FROM_LAST_SPELL:
        return F.col(f"_LAST.{name}").alias(name)
    return F.col(f"_FIRST.{name}").alias(name)


def superspell_table(spells: DataFrame, *, attribution: str = "first",
                     max_gap_days: int = DEFAULT_MAX_GAP_DAYS) -> DataFrame:
    """The spell table's CIPS: :data:`SUPERSPELL_COLUMNS`, one row per CIPS (per CIPS and trust for ``each``).

    ``spells`` is the spell table (``SPELL_COLUMNS``).  ``SPELL_ID`` is the
    CIPS's ``CIPS_ID``; ``N_SPELLS`` (int) the number of provider spells in
    the CIPS (all of them, also for ``each``); the other columns: module
    docstring.  With ``attribution="each"`` the key is ``SPELL_ID`` and
    ``PROCODE3``.
    """
    if attribution not in ATTRIBUTIONS:
        raise ValueError(f"attribution must be one of {', '.join(ATTRIBUTIONS)}, not {attribution!r}")
    linked = link_superspells(spells, max_gap_days=max_gap_days)
    row = F.struct(*[F.col(c) for c in SPELL_COLUMNS])
    chains = linked.groupBy("HESID", "CIPS_ID").agg(
        F.min_by(row, F.col("CIPS_SEQ")).alias("_FIRST"),
        F.max_by(row, F.col("CIPS_SEQ")).alias("_LAST"),
        *[F.max(c).alias(f"_MAX_{c}") for c in MAX_OVER_CHAIN],
        F.count(F.lit(1)).cast("int").alias("N_SPELLS"),
        F.array_sort(F.collect_set("PROCODE3")).alias("_TRUSTS"),
    )
    if attribution == "each":
        chains = chains.withColumn("_TRUST", F.explode("_TRUSTS"))
    return chains.select(*[_chain_column(c, attribution) for c in SPELL_COLUMNS], F.col("N_SPELLS"))
