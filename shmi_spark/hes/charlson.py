"""Charlson comorbidity score with the SHMI weights (METHOD.md §4).

Conditions come from the secondary diagnoses (``DIAG_4_02`` … ``DIAG_4_20``)
of the first episode; a code matches a condition when it starts with one of
the condition's 3- or 4-character prefixes.  Each condition counts once; the
total is floored at 0 (diabetes complications weigh −1).  **[choice]**
``method.charlson_hierarchy``: metastatic cancer supersedes cancer and severe
liver disease supersedes mild liver disease before summing.

Per spell: the codes' 3- and 4-character prefixes (two array transforms)
intersected with the table's prefixes (``array_intersect``: one hash set a
spell), then only the prefixes found are mapped to their conditions.  Looking
every code up in a map literal instead (a linear search of its keys) cost
about twice as much; testing each condition with ``arrays_overlap`` too.  No
join, no Python per row.

Bands: ``0``, ``1-5``, ``>5``.
"""

from __future__ import annotations

from itertools import chain

import pandas as pd
from pyspark.sql import Column
from pyspark.sql import functions as F

__all__ = ["HIERARCHY", "condition_prefixes", "charlson_conditions", "charlson_score", "charlson_band"]

#: (superseding condition, superseded condition) for the optional hierarchy.
HIERARCHY = (("metacanc", "canc"), ("msld", "mld"))


def condition_prefixes(charlson: pd.DataFrame) -> dict[str, tuple[list[str], list[str], int]]:
    """condition → (its 3-character prefixes, its 4-character prefixes, weight), conditions sorted.

    Prefixes of other lengths match no code (as in the code lists' use).
    """
    out: dict[str, tuple[list[str], list[str], int]] = {}
    weights = charlson.drop_duplicates("CONDITION").set_index("CONDITION")["WEIGHT"].astype(int)
    for condition in sorted(weights.index.astype(str)):
        prefixes = {str(p).upper() for p in charlson.loc[charlson["CONDITION"].astype(str) == condition, "PREFIX"]}
        out[condition] = (sorted(p for p in prefixes if len(p) == 3), sorted(p for p in prefixes if len(p) == 4),
                          int(weights[condition]))
    return out


def _prefix_maps(charlson: pd.DataFrame) -> tuple[Column, Column, Column, Column, Column]:
    """(3-character prefixes, 4-character prefixes, prefix3 → conditions, prefix4 → conditions,
    condition → weight) as literals."""
    by3: dict[str, list[str]] = {}
    by4: dict[str, list[str]] = {}
    weights = {}
    for cond, (p3, p4, weight) in condition_prefixes(charlson).items():
        weights[cond] = weight
        for p in p3:
            by3.setdefault(p, []).append(cond)
        for p in p4:
            by4.setdefault(p, []).append(cond)

    def prefixes(d: dict[str, list[str]]) -> Column:
        return F.array(*[F.lit(p) for p in sorted(d)]).cast("array<string>")

    def conditions(d: dict[str, list[str]]) -> Column:
        if not d:
            return F.create_map().cast("map<string,array<string>>")
        return F.create_map(*chain.from_iterable((F.lit(p), F.array(*[F.lit(c) for c in cs]))
                                                 for p, cs in sorted(d.items())))

    weight_map = F.create_map(*chain.from_iterable((F.lit(c), F.lit(w)) for c, w in sorted(weights.items())))
    return prefixes(by3), prefixes(by4), conditions(by3), conditions(by4), weight_map


def charlson_conditions(codes: Column, charlson: pd.DataFrame, *, hierarchy: bool) -> Column:
    """Distinct, sorted Charlson conditions present in an array of normalised codes."""
    all3, all4, by3, by4, _ = _prefix_maps(charlson)
    found3 = F.array_intersect(all3, F.transform(codes, lambda c: F.substring(c, 1, 3)))
    found4 = F.array_intersect(all4, F.transform(codes, lambda c: F.substring(c, 1, 4)))
    conds = F.array_sort(F.array_distinct(F.flatten(F.concat(
        F.transform(found3, lambda p: F.element_at(by3, p)), F.transform(found4, lambda p: F.element_at(by4, p))))))
    if hierarchy:
        for top, below in HIERARCHY:
            conds = F.when(F.array_contains(conds, top), F.array_remove(conds, below)).otherwise(conds)
    return conds


def charlson_score(codes: Column, charlson: pd.DataFrame, *, hierarchy: bool) -> Column:
    """Integer score: sum of the weights of the distinct conditions, floored at 0."""
    weights = _prefix_maps(charlson)[4]
    conds = charlson_conditions(codes, charlson, hierarchy=hierarchy)
    total = F.aggregate(conds, F.lit(0), lambda acc, c: acc + F.coalesce(F.try_element_at(weights, c), F.lit(0)))
    return F.greatest(total, F.lit(0)).cast("int")


def charlson_band(score: Column) -> Column:
    """``0``, ``1-5`` or ``>5``."""
    return F.when(score <= 0, "0").when(score <= 5, "1-5").otherwise(">5")
