"""The report: plots and a self-contained HTML page set built from a run's output folder.

* :mod:`~shmi_spark.report.plots` — trend, drill-down, model quality and diffsum plots, and the SHMI beside
  the HSMR (their scatter, a trust's bridge from one to the other);
* :mod:`~shmi_spark.report.data` — a run's tables read back for the report;
* :mod:`~shmi_spark.report.pages` — the HTML pages (national summary, trust table, trust pages);
* :mod:`~shmi_spark.report.build` — :func:`write_report`, what ``shmi report`` and ``shmi run`` call.
"""
