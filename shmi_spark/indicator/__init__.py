"""The indicator: periods, SHMI, funnel limits and banding, contextual tables, plots.

* :mod:`~shmi_spark.indicator.periods` — reporting periods and modelling windows that follow the data (§5–§6);
* :mod:`~shmi_spark.indicator.funnel` — z-scores, trim, over-dispersion, limits: one step per function (§6);
* :mod:`~shmi_spark.indicator.banding` — banding of a trust-level table, shared with ``shmi band`` (§6);
* :mod:`~shmi_spark.indicator.tables` — trust, diagnosis-group, area, panel and outlier tables (§6, paper Table 4);
* :mod:`~shmi_spark.indicator.contextual` — the contextual indicators (§7);
* :mod:`~shmi_spark.indicator.plots` — the funnel plot;
* :mod:`~shmi_spark.indicator.compute` — the stage: each period's models, expected deaths, banding and files.
"""

__all__: list[str] = []
