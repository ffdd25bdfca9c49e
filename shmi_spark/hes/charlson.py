"""Charlson comorbidity score with the SHMI weights (METHOD.md §4).

Conditions come from the secondary diagnoses (``DIAG_4_02`` … ``DIAG_4_20``)
of the first episode; a code matches a condition when it starts with one of
the condition's 3- or 4-character prefixes.  Each condition counts once; the
total is floored at 0 (diabetes complications weigh −1).  **[choice]**
``method.charlson_hierarchy``: metastatic cancer supersedes cancer and severe
liver disease supersedes mild liver disease before summing.

Higher-order array functions against map literals built from the small
Charlson table: no join, no Python per row.

Bands: ``0``, ``1-5``, ``>5``.
"""

from __future__ import annotations

from itertools import chain

import pandas as pd
from pyspark.sql import Column
from pyspark.sql import functions as F

__all__ = ["HIERARCHY", "charlson_maps", "charlson_conditions", "charlson_score", "charlson_band"]

#: (superseding condition, superseded condition) for the optional hierarchy.
HIERARCHY = (("metacanc", "canc"), ("msld", "mld"))


def charlson_maps(charlson: pd.DataFrame) -> tuple[Column, Column, Column]:
    """(prefix4 → conditions, prefix3 → conditions, condition → weight) map literals."""
    by_prefix: dict[str, set] = {}
    for row in charlson.itertuples(index=False):
        by_prefix.setdefault(str(row.PREFIX).upper(), set()).add(str(row.CONDITION))
    p4 = {k: F.array(*[F.lit(c) for c in sorted(v)]) for k, v in by_prefix.items() if len(k) == 4}
    p3 = {k: F.array(*[F.lit(c) for c in sorted(v)]) for k, v in by_prefix.items() if len(k) == 3}
    weights = charlson.drop_duplicates("CONDITION").set_index("CONDITION")["WEIGHT"].astype(int)

    def build(d: dict) -> Column:
        if not d:
            return F.create_map().cast("map<string,array<string>>")
        return F.create_map(*chain.from_iterable((F.lit(k), v) for k, v in sorted(d.items())))

    w = F.create_map(*chain.from_iterable((F.lit(k), F.lit(int(v))) for k, v in sorted(weights.items())))
    return build(p4), build(p3), w


def charlson_conditions(codes: Column, charlson: pd.DataFrame, *, hierarchy: bool) -> Column:
    """Distinct, sorted Charlson conditions present in an array of normalised codes."""
    p4, p3, _ = charlson_maps(charlson)
    empty = F.array().cast("array<string>")
    per_code = F.transform(codes, lambda c: F.concat(
        F.coalesce(F.try_element_at(p4, F.substring(c, 1, 4)), empty),
        F.coalesce(F.try_element_at(p3, F.substring(c, 1, 3)), empty)))
    conds = F.array_sort(F.array_distinct(F.flatten(per_code)))
    if hierarchy:
        for top, below in HIERARCHY:
            conds = F.when(F.array_contains(conds, top), F.array_remove(conds, below)).otherwise(conds)
    return conds


def charlson_score(codes: Column, charlson: pd.DataFrame, *, hierarchy: bool) -> Column:
    """Integer score: sum of the weights of the distinct conditions, floored at 0."""
    _, _, weights = charlson_maps(charlson)
    conds = charlson_conditions(codes, charlson, hierarchy=hierarchy)
    total = F.aggregate(conds, F.lit(0), lambda acc, c: acc + F.coalesce(F.try_element_at(weights, c), F.lit(0)))
    return F.greatest(total, F.lit(0)).cast("int")


def charlson_band(score: Column) -> Column:
    """``0``, ``1-5`` or ``>5``."""
    return F.when(score <= 0, "0").when(score <= 5, "1-5").otherwise(">5")
