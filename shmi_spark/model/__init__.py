"""The model stage (METHOD.md §5, §8): covariate cells → per-group risk models → expected deaths.

* :mod:`~shmi_spark.model.cells` — spells aggregated to (group × covariate cell), ``YEAR_INDEX``;
* :mod:`~shmi_spark.model.design` — :class:`~shmi_spark.model.design.GroupDesign`, one group's encoding;
* :mod:`~shmi_spark.model.batches` — many groups in one block-diagonal Spark ML fit;
* :mod:`~shmi_spark.model.fit` — :func:`~shmi_spark.model.fit.fit_group_models`, the rules, the two tables;
* :mod:`~shmi_spark.model.scoring` — each spell's expected probability of death, expected deaths per trust;
* :mod:`~shmi_spark.model.quality` — C statistics, R², model-against-model comparisons.

Imports go one way: ``cells ← design ← batches ← fit``; ``scoring`` reads ``cells``
and ``design``; ``quality`` stands alone.
"""

__all__: list[str] = []
