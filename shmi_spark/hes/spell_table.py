"""The spell table: included spells with group, Charlson, covariates and outcome.

Composes METHOD.md §2 (diagnosis group), §4 (Charlson and covariates) and §3
(death linkage) on the spells that survived the exclusions, and ends with the
``select`` that is the table's contract (docs/tables.md, "spells").  The HSMR's
case-mix fields ride along (:data:`HSMR_COLUMNS`): the raw ``ADMIMETH``,
``ADMISORC`` and ``DISDEST``, the source-of-admission level, the emergency flag
and the prior emergency admissions (:mod:`shmi_spark.hes.prior_admissions`).
"""

from __future__ import annotations

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shmi_spark.config import MethodConfig
from shmi_spark.hes.charlson import charlson_band, charlson_score
from shmi_spark.hes.codes import financial_year
from shmi_spark.hes.covariates import (
    admission_method_category,
    admission_source_category,
    age_band,
    birth_weight_band,
    emergency_admission,
    imd_fifth,
    sex_category,
)
from shmi_spark.hes.diagnosis import assign_diag_group
from shmi_spark.hes.linkage import death_outcome, link_deaths
from shmi_spark.hes.prior_admissions import prior_emergency_admissions

__all__ = ["SPELL_COLUMNS", "HSMR_COLUMNS", "add_covariates", "with_prior_emergency", "spell_table",
           "flagged_spell_table"]

#: Added to the spell table for the HSMR (issue 16); a table written before lacks them.
HSMR_COLUMNS = (
    "ADMIMETH", "ADMISORC", "DISDEST", "ADMISORC_CAT", "EMERGENCY", "PRIOR_EMERGENCY", "PRIOR_EMERGENCY_BAND",
)
SPELL_COLUMNS = (
    "HESID", "SPELL_ID", "PROCODE3", "ADMIDATE", "DISDATE", "DIS_FYEAR", "DIAG_PRIMARY",
    "DIAG_GROUP", "CHARLSON_SCORE", "CHARLSON_BAND", "AGE_BAND", "SEX_CAT", "ADMIMETH_CAT",
    "ADM_MONTH", "BIRWEIT_BAND", "DIED", "DEATH_IN_HOSPITAL", "DOD", "PALLIATIVE", "IMD_FIFTH",
    "N_SECONDARY", *HSMR_COLUMNS,
)


def add_covariates(spells: DataFrame, *, charlson: pd.DataFrame, perinatal_groups: list[int],
                   method: MethodConfig) -> DataFrame:
    """Charlson score and band, and every covariate level (METHOD.md §4); the HSMR's ``ADMISORC_CAT``, ``EMERGENCY``.

    The spell table keeps every spell's Charlson score, including those of the
    invalid-primary-diagnosis group, whose model does not use it
    (:func:`shmi_spark.model.cells.covariate_cells`).
    """
    score = charlson_score(F.col("DIAG_SECONDARY"), charlson, hierarchy=method.charlson_hierarchy)
    perinatal = F.col("DIAG_GROUP").isin(*perinatal_groups) if perinatal_groups else F.lit(False)
    return (
        spells
        .withColumn("CHARLSON_SCORE", score)
        .withColumn("CHARLSON_BAND", charlson_band(F.col("CHARLSON_SCORE")))
        .withColumn("AGE_BAND", age_band(F.col("STARTAGE")))
        .withColumn("SEX_CAT", sex_category(F.col("SEX")))
        .withColumn("ADMIMETH_CAT", admission_method_category(F.col("ADMIMETH")))
        .withColumn("ADMISORC_CAT", admission_source_category(F.col("ADMISORC")))
        .withColumn("EMERGENCY", emergency_admission(F.col("ADMIMETH")))
        .withColumn("ADM_MONTH", F.month(F.col("ADMIDATE")))
        .withColumn("BIRWEIT_BAND", birth_weight_band(F.col("BIRWEIT_1"), perinatal))
        .withColumn("IMD_FIFTH", imd_fifth(F.col("IMD_QUINTILE_RAW")))
        .withColumn("N_SECONDARY", F.size(F.col("DIAG_SECONDARY")))
        .withColumn("DIS_FYEAR", financial_year(F.col("DISDATE")))
    )


def with_prior_emergency(included: DataFrame) -> DataFrame:
    """Included spells with ``PRIOR_EMERGENCY`` and its band.

    The spells of :func:`shmi_spark.hes.spells.build_spells` carry them
    (counted where the spells are built, in their partitioning by patient,
    over the kept spells): kept as they are.  Other included spells get them
    here, over all of them (:func:`shmi_spark.hes.prior_admissions.prior_emergency_admissions`).
    """
    if "PRIOR_EMERGENCY" in included.columns and "PRIOR_EMERGENCY_BAND" in included.columns:
        return included
    return prior_emergency_admissions(included)


def _grouped_covariates(included: DataFrame, *, lookup4: DataFrame, lookup3: DataFrame,
                        charlson: pd.DataFrame, perinatal_groups: list[int], method: MethodConfig) -> DataFrame:
    grouped = assign_diag_group(
        with_prior_emergency(included), lookup4, lookup3, invalid_group=method.invalid_diagnosis_group,
        symptom_second_episode=method.symptom_second_episode)
    return add_covariates(grouped, charlson=charlson, perinatal_groups=perinatal_groups, method=method)


def spell_table(included: DataFrame, deaths: DataFrame, *, lookup4: DataFrame, lookup3: DataFrame,
                charlson: pd.DataFrame, perinatal_groups: list[int], method: MethodConfig) -> DataFrame:
    """Included spells (``EXCLUSION`` null) + valid deaths → linked spells.

    The result carries the linkage's internal flags (for
    :func:`shmi_spark.hes.linkage.linkage_counts`); ``select(*SPELL_COLUMNS)`` of it
    is the spell table.
    """
    covariates = _grouped_covariates(included, lookup4=lookup4, lookup3=lookup3, charlson=charlson,
                                     perinatal_groups=perinatal_groups, method=method)
    return link_deaths(covariates, deaths, window_days=method.death_window_days)


def flagged_spell_table(included: DataFrame, *, lookup4: DataFrame, lookup3: DataFrame,
                        charlson: pd.DataFrame, perinatal_groups: list[int], method: MethodConfig) -> DataFrame:
    """The same as :func:`spell_table` for included spells that already carry the death flags.

    ``included`` has :func:`shmi_spark.hes.linkage.death_flags`' columns (computed
    where the spells were built, over the included spells); what is left is row
    by row: group, Charlson, covariates and the outcome for
    ``method.death_window_days`` (no join, no shuffle).
    """
    covariates = _grouped_covariates(included, lookup4=lookup4, lookup3=lookup3, charlson=charlson,
                                     perinatal_groups=perinatal_groups, method=method)
    return death_outcome(covariates, window_days=method.death_window_days)
