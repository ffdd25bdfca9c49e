"""SHMI banding and the trust-level funnel table (METHOD.md §6), no I/O.

Banding is on the 95% over-dispersed limits: 1 "Higher than expected" if SHMI is
above the upper limit, 3 "Lower than expected" if below the lower limit, else 2
"As expected".  The paper's outlier flag is SHMI above the 99.8% over-dispersed
upper limit; both are reported.

Rounding rule: NHS England publishes SHMI and its limits rounded to 4 decimal
places, and so does :func:`band_table`.  By default (``decimals=4``) the
comparisons are made on those rounded values, so that every published row is
self-consistent: a reader who compares the printed SHMI with the printed limits
gets the printed banding.  A SHMI equal to a limit at 4 dp is "As expected"
(the comparisons are strict).  ``decimals=None`` compares unrounded values.
Rounding is numpy's (``np.round``), the same used for the printed values.

:func:`band_table` is what both ``shmi band`` and the Spark pipeline (on
collected trust-level rows) call.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import funnel
from .errors import InputError

BANDING_LABELS = {1: "Higher than expected", 2: "As expected", 3: "Lower than expected"}
OUTPUT_DECIMALS = 4
MIN_TRUSTS = 10
LIMIT_COLUMNS = ["OD95_LL", "OD95_UL", "OD998_LL", "OD998_UL", "PO998_LL", "PO998_UL"]
OUTPUT_COLUMNS = (["SHMI", "Z", "KEPT_IN_TRIM"] + LIMIT_COLUMNS
                  + ["BANDING", "BANDING_LABEL", "OUTLIER_998", "FLAG"])


def _rounded(values, decimals: int | None) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if decimals is None:
        return arr
    with np.errstate(over="ignore", invalid="ignore"):  # a limit near the float maximum stays huge
        return np.round(arr, decimals)


def band(shmi, lower95, upper95, *, decimals: int | None = OUTPUT_DECIMALS) -> np.ndarray:
    """Banding 1/2/3 (labels in :data:`BANDING_LABELS`) from the 95% OD limits.

    1 if ``SHMI > upper``, 3 if ``SHMI < lower``, else 2; compared after
    rounding to ``decimals`` places (``None``: unrounded; module docstring).
    """
    s = _rounded(shmi, decimals)
    if np.any(np.isnan(s)):
        raise ValueError("SHMI values must not be NaN")
    lo, hi = _rounded(lower95, decimals), _rounded(upper95, decimals)
    return np.where(s > hi, 1, np.where(s < lo, 3, 2))


def outlier_998(shmi, upper998, *, decimals: int | None = OUTPUT_DECIMALS) -> np.ndarray:
    """The paper's outlier flag: SHMI above the 99.8% over-dispersed upper limit."""
    return _rounded(shmi, decimals) > _rounded(upper998, decimals)


def _parse_numeric(column: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(values as float, missing mask, non-numeric mask) of a raw column."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        values = column.astype(float)
        return values, values.isna(), pd.Series(False, index=column.index)
    text = column.astype("string").str.strip()
    missing = (text.isna() | (text == "")).astype(bool)
    values = pd.to_numeric(text.where(~missing), errors="coerce").astype("Float64")
    values = values.astype(float)
    return values, missing, (~missing & values.isna())


def _row_flags(name: str, raw: pd.Series, values: pd.Series, missing: pd.Series,
               nonnumeric: pd.Series, *, zero_is_bad: bool) -> pd.Series:
    """One message per bad value of a count column, '' where the value is good."""
    flags = pd.Series("", index=raw.index, dtype=object)
    flags[missing] = f"{name} missing"
    flags[nonnumeric] = [f"{name} not numeric ({v!r})" for v in raw[nonnumeric].astype(str)]
    known = ~missing & ~nonnumeric
    flags[known & ~np.isfinite(values)] = f"{name} not finite"
    finite = known & np.isfinite(values)
    flags[finite & (values < 0)] = f"{name} negative"
    if zero_is_bad:
        flags[finite & (values == 0)] = f"{name} is zero"
    return flags


def _check_ids(ids: pd.Series, id_col: str) -> None:
    text = ids.astype("string").str.strip()
    blank = text.isna() | (text == "")
    if blank.any():
        rows = ", ".join(str(i + 1) for i in np.nonzero(blank.to_numpy())[0][:5])
        raise InputError(f"column {id_col!r} is empty in data row(s) {rows}")
    dup = text[text.duplicated(keep=False)].unique()
    if len(dup):
        raise InputError(f"column {id_col!r} has duplicate ids: {', '.join(map(str, dup[:5]))}")


def band_table(df: pd.DataFrame, id_col: str, observed_col: str, expected_col: str,
               trim_fraction: float = funnel.DEFAULT_TRIM, round_expected: int | None = None,
               *, decimals: int | None = OUTPUT_DECIMALS, strict: bool = False,
               min_trusts: int = MIN_TRUSTS) -> tuple[pd.DataFrame, dict]:
    """SHMI, funnel limits and banding for the trust-level rows of one period.

    Returns the input rows (in order, input columns unchanged; output columns
    already present are replaced) plus :data:`OUTPUT_COLUMNS`, values rounded
    to 4 dp, and a summary dict.  ``round_expected``: round ``E`` to that many
    places before anything else (to reproduce files that publish rounded E).
    ``decimals`` is the rounding used for the banding comparisons.
    ``KEPT_IN_TRIM`` marks the trusts used for ``φ`` and ``τ²``.

    Bad input, by case:

    * a missing column, an empty or duplicate id, a bad ``trim_fraction``:
      :class:`InputError` (the whole table is unusable);
    * a missing, non-numeric, non-finite or negative ``O`` or ``E``, or ``E = 0``:
      the row is flagged in ``FLAG``, its computed columns are left empty and
      it takes no part in the ranking, ``φ``, ``τ²`` or the national SHMI —
      unless ``strict``, which makes any such row an :class:`InputError`;
    * fewer than ``min_trusts`` (10) good rows: :class:`InputError`.

    The expected deaths are used as given: no rescaling to national
    ``ΣE = ΣO`` here; ``national_shmi`` in the summary reports ``ΣO/ΣE``.
    """
    missing_cols = [c for c in (id_col, observed_col, expected_col) if c not in df.columns]
    if missing_cols:
        raise InputError(f"missing column(s) {', '.join(map(repr, missing_cols))}"
                         f" (columns present: {', '.join(map(str, df.columns))})")
    clash = [c for c in (id_col, observed_col, expected_col) if c in OUTPUT_COLUMNS]
    if clash:
        raise InputError(f"input column {clash[0]!r} has the name of an output column")
    if len({id_col, observed_col, expected_col}) < 3:
        raise InputError("the id, observed and expected columns must be three different columns")
    if trim_fraction != 0:
        try:
            funnel._trim_groups(trim_fraction)
        except ValueError as exc:
            raise InputError(str(exc)) from None
    _check_ids(df[id_col], id_col)

    o, o_missing, o_nonnum = _parse_numeric(df[observed_col])
    e, e_missing, e_nonnum = _parse_numeric(df[expected_col])
    if round_expected is not None:
        e = e.round(round_expected)
    o_flags = _row_flags(observed_col, df[observed_col], o, o_missing, o_nonnum, zero_is_bad=False)
    e_flags = _row_flags(expected_col, df[expected_col], e, e_missing, e_nonnum, zero_is_bad=True)
    flags = (o_flags + "; " + e_flags).str.strip("; ")
    good = (flags == "").to_numpy()

    if strict and not good.all():
        bad = [f"{i}: {f}" for i, f in zip(df[id_col][~good], flags[~good])][:5]
        raise InputError(f"{(~good).sum()} bad row(s): {'; '.join(bad)}")
    if good.sum() < min_trusts:
        detail = f"; e.g. {df[id_col][~good].iloc[0]}: {flags[~good].iloc[0]}" if (~good).any() else ""
        raise InputError(f"only {good.sum()} trust(s) with valid {observed_col!r} and "
                         f"{expected_col!r} values; at least {min_trusts} are needed{detail}")

    o_good, e_good = o.to_numpy()[good], e.to_numpy()[good]
    try:
        res = funnel.funnel_limits(o_good, e_good, trim_fraction)
    except ValueError as exc:
        raise InputError(f"too few trusts with deaths to estimate the funnel's over-dispersion "
                         f"({int(good.sum())} trusts, {int((o_good > 0).sum())} with deaths): {exc}") from None
    banding = band(res.shmi, res.od95_ll, res.od95_ul, decimals=decimals)
    outlier = outlier_998(res.shmi, res.od998_ul, decimals=decimals)

    out = df.drop(columns=[c for c in OUTPUT_COLUMNS if c in df.columns]).copy()
    n_rows = len(out)

    def spread(values, dtype="float64"):
        col = pd.Series(pd.NA if dtype != "float64" else np.nan, index=out.index, dtype=dtype)
        col.iloc[np.nonzero(good)[0]] = values
        return col

    with np.errstate(over="ignore", invalid="ignore"):  # limits of a tiny E can be huge: rounding keeps them
        out["SHMI"] = spread(np.round(res.shmi, OUTPUT_DECIMALS))
        out["Z"] = spread(np.round(res.z, OUTPUT_DECIMALS))
        out["KEPT_IN_TRIM"] = spread(res.kept, "boolean")
        for name, values in zip(LIMIT_COLUMNS, (res.od95_ll, res.od95_ul, res.od998_ll,
                                                res.od998_ul, res.po998_ll, res.po998_ul)):
            out[name] = spread(np.round(values, OUTPUT_DECIMALS))
    out["BANDING"] = spread(banding, "Int64")
    out["BANDING_LABEL"] = spread([BANDING_LABELS[b] for b in banding], "string")
    out["OUTLIER_998"] = spread(outlier, "boolean")
    out["FLAG"] = flags.to_numpy()

    summary = {
        "n_rows": n_rows,
        "n_trusts": res.n,
        "rows_flagged": int((~good).sum()),
        "n_kept": res.n_kept,
        "phi": res.phi,
        "tau2": res.tau2,
        "national_shmi": float(o_good.sum() / e_good.sum()),
        "n_higher": int((banding == 1).sum()),
        "n_as_expected": int((banding == 2).sum()),
        "n_lower": int((banding == 3).sum()),
        "n_outliers_998": int(outlier.sum()),
    }
    return out, summary
