"""shmi-spark: the Summary Hospital-level Mortality Indicator computed with PySpark.

The packages draw the pipeline, data flowing one way (``METHOD.md`` in
``shared/`` is the specification; every docstring cites its section):

* :mod:`shmi_spark.io` — reading the inputs against their contract, reference tables, writing outputs;
* :mod:`shmi_spark.hes` — HES preparation: validation, spells, diagnosis groups, Charlson, covariates,
  death linkage → the spell table;
* :mod:`shmi_spark.model` — covariate cells, per-group logistic regressions, expected deaths, model quality;
* :mod:`shmi_spark.indicator` — periods, SHMI, funnel limits and banding, contextual tables, plots;
* :mod:`shmi_spark.pipeline` wires the stages; :mod:`shmi_spark.cli` and :mod:`shmi_spark.commands`
  are the ``shmi`` command; :mod:`shmi_spark.synth` writes synthetic worlds with a known truth.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
