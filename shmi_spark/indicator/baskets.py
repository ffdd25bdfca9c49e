"""Baskets of diagnoses: a user's drill-down of either indicator, from the fitted models (no refit).

README "SHMI and HSMR".  A basket file (``--basket FILE``, ``hsmr.basket_file``)
is a CSV with columns ``BASKET`` (a name) and ``CODE``: an ICD-10 code or
prefix (``I21``, ``I219``, ``J18``: normalised as the episodes' codes are,
upper case without ``.``, ``-`` or spaces, and matched as a prefix of the
spell's primary diagnosis ``DIAG_PRIMARY``) or a diagnosis group number
(digits only: the spell's ``DIAG_GROUP``).  A spell is in a basket when any
of the basket's codes matches it; it may be in several baskets.

:func:`basket_rows` tags the spells of an indicator's table with their
baskets (a higher-order array expression, no join), and the indicator's
models score them through counts by trust × basket × cell, so each basket's
``E`` is the sum of the same probabilities as the indicator's; ``E`` is
rescaled by the indicator's national factor.  :func:`basket_table` gives per
indicator, basket and trust ``O``, ``E``, ``RATIO`` and the banding on the
exact Poisson 95% limits (as the HSMR's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from shmi_spark.errors import InputError
from shmi_spark.indicator.hsmr import observed_ratio, poisson_banding, ratio_limits
from shmi_spark.indicator.periods import Period

__all__ = ["Basket", "BASKET_COLUMNS", "read_baskets", "basket_rows", "basket_table"]

BASKET_COLUMNS = ["PERIOD", "INDICATOR", "BASKET", "PROVIDER_CODE", "SPELLS", "OBSERVED", "EXPECTED", "RATIO",
                  "LL95", "UL95", "BANDING"]
_ICD10 = re.compile(r"^[A-Z][0-9][0-9A-Z]{0,2}$")


@dataclass(frozen=True)
class Basket:
    """A named basket: ICD-10 prefixes and diagnosis groups."""

    name: str
    prefixes: tuple[str, ...]
    groups: tuple[int, ...]


def read_baskets(path: str) -> list[Basket]:
    """The baskets of a CSV file (module doc); a bad file or value is an :class:`InputError` naming it."""
    file = Path(path)
    try:
        table = pd.read_csv(file, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"basket file {path}: cannot be read ({exc})") from None
    table.columns = [c.strip().upper() for c in table.columns]
    missing = {"BASKET", "CODE"} - set(table.columns)
    if missing:
        raise InputError(f"basket file {path}: no column {', '.join(sorted(missing))} (it needs BASKET and CODE)")
    baskets: dict[str, tuple[list[str], list[int]]] = {}
    for line, (name, raw) in enumerate(table[["BASKET", "CODE"]].itertuples(index=False), start=2):
        name, code = str(name).strip(), re.sub(r"[.\-\s]", "", str(raw)).upper()
        if not name:
            raise InputError(f"basket file {path}, line {line}: field BASKET is empty")
        prefixes, groups = baskets.setdefault(name, ([], []))
        if code.isdigit():
            groups.append(int(code))
        elif _ICD10.match(code):
            prefixes.append(code)
        else:
            raise InputError(f"basket file {path}, line {line}: field CODE {raw!r} is neither an ICD-10 code "
                             f"or prefix nor a diagnosis group number")
    if not baskets:
        raise InputError(f"basket file {path}: no basket")
    return [Basket(n, tuple(sorted(set(p))), tuple(sorted(set(g)))) for n, (p, g) in baskets.items()]


def _matches(basket: Basket) -> Column:
    conditions = [F.col("DIAG_PRIMARY").startswith(p) for p in basket.prefixes]
    if basket.groups:
        conditions.append(F.col("DIAG_GROUP").isin(*basket.groups))
    cond = conditions[0]
    for c in conditions[1:]:
        cond = cond | c
    return F.coalesce(cond, F.lit(False))


def basket_rows(table: DataFrame, baskets: list[Basket]) -> DataFrame:
    """``table``'s rows in at least one basket, one row per (row, basket), with ``BASKET`` (no join)."""
    names = F.array(*[F.when(_matches(b), F.lit(b.name)) for b in baskets])
    return (table.withColumn("BASKET", F.explode(F.filter(names, lambda n: n.isNotNull()))))


def basket_table(sums: pd.DataFrame, period: Period, *, indicator: str, factor: float,
                 min_expected: float) -> pd.DataFrame:
    """Per basket and trust (``BASKET, PROCODE3, SPELLS, OBSERVED, EXPECTED`` unscaled): :data:`BASKET_COLUMNS`."""
    out = sums.rename(columns={"PROCODE3": "PROVIDER_CODE"}).copy()
    e = out["EXPECTED"].astype(float).to_numpy() * factor
    ratio = observed_ratio(out["OBSERVED"], e)
    lower, upper = ratio_limits(e, 0.95)
    out["BANDING"] = poisson_banding(ratio, lower, upper, e, min_expected=min_expected).to_numpy()
    out["EXPECTED"], out["RATIO"] = np.round(e, 4), np.round(ratio, 4)
    out["LL95"], out["UL95"] = np.round(lower, 4), np.round(upper, 4)
    out["PERIOD"], out["INDICATOR"] = period.label, indicator
    return out[BASKET_COLUMNS].sort_values(["BASKET", "PROVIDER_CODE"], kind="mergesort").reset_index(drop=True)
