"""The covariate levels of the model and the contextual tables (METHOD.md §4, §7): one home.

Used by the spell stage (:mod:`shmi_spark.hes.covariates`), the model, the
contextual indicators and the synthetic-world generator, so that every part
spells a level the same way.  Pure Python: no Spark.
"""

from __future__ import annotations

__all__ = ["UNKNOWN", "NOT_APPLICABLE", "AGE_LEVELS", "SEX_LEVELS", "ADMIMETH_LEVELS", "CHARLSON_LEVELS",
           "BIRWEIT_LEVELS", "IMD_LEVELS", "ADMISORC_LEVELS", "PRIOR_EMERGENCY_LEVELS"]

#: The level of a missing or invalid value (METHOD.md §2).
UNKNOWN = "unknown"
#: The birth-weight level outside the perinatal groups.
NOT_APPLICABLE = "n/a"

AGE_LEVELS = ("<1", "1-4", *[f"{a}-{a + 4}" for a in range(5, 90, 5)], "90+", UNKNOWN)
SEX_LEVELS = ("male", "female", UNKNOWN)
ADMIMETH_LEVELS = ("elective", "non-elective", UNKNOWN)
CHARLSON_LEVELS = ("0", "1-5", ">5")
#: Birth-weight bands in grams; ``n/a`` outside the perinatal groups.
BIRWEIT_LEVELS = ("<1000", "1000-2499", "2500-4499", "4500+", UNKNOWN, NOT_APPLICABLE)
#: Deprivation fifths, ``1`` least deprived … ``5`` most deprived (the paper's Table 3).
IMD_LEVELS = ("1", "2", "3", "4", "5", UNKNOWN)
#: Source of admission (the HSMR's case mix; codes: :mod:`shmi_spark.hes.codes`).
ADMISORC_LEVELS = ("home", "other_hospital", "care_home", "birth", "other", UNKNOWN)
#: Emergency admissions of the patient in the 365 days before the admission (the HSMR's case mix).
PRIOR_EMERGENCY_LEVELS = ("0", "1", "2", "3+")
