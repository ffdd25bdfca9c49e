"""HES preparation: input rows → validated episodes → provider spells → the linked spell table.

In pipeline order (METHOD.md §1–§4):

* :mod:`~shmi_spark.hes.codes` — the HES code sets and ICD-10 normalisation (the one home of the codes);
* :mod:`~shmi_spark.hes.levels` — the covariate levels (the one home, shared with the model and the generator);
* :mod:`~shmi_spark.hes.validate` — every row accepted or rejected with a reason; invalid codes counted (§1–§2);
* :mod:`~shmi_spark.hes.quality_gate` — when the input is too damaged to trust;
* :mod:`~shmi_spark.hes.spells` — episodes → spells, with the exclusions (§2);
* :mod:`~shmi_spark.hes.prior_admissions` — the patient's emergency admissions in the year before (HSMR);
* :mod:`~shmi_spark.hes.diagnosis` — the primary diagnosis and its group (§2);
* :mod:`~shmi_spark.hes.charlson`, :mod:`~shmi_spark.hes.covariates` — comorbidity and covariate levels (§4);
* :mod:`~shmi_spark.hes.linkage` — deaths in hospital or within 30 days (§3);
* :mod:`~shmi_spark.hes.spell_table` — the spell table, composed;
* :mod:`~shmi_spark.hes.superspells` — continuous inpatient spells from the spell table (HSMR);
* :mod:`~shmi_spark.hes.prepare` — the stage: the steps above run, counted and reconciled.
"""

__all__: list[str] = []
