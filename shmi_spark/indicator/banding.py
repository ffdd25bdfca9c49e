"""SHMI banding and the trust-level funnel table (METHOD.md §6), no I/O.

Banding is on the 95% over-dispersed limits: 1 "Higher than expected" if SHMI is
above the upper limit, 3 "Lower than expected" if below the lower limit, else 2
"As expected".  The paper's outlier flag is SHMI above the 99.8% over-dispersed
upper limit; both are reported.

Rounding rule (METHOD.md §6): NHS England publishes SHMI and its limits
rounded to 4 decimal places, and so does :func:`band_table`, but the banding
compares the **unrounded** SHMI with the unrounded limits (the default,
``decimals=None``): a trust whose SHMI prints equal to its lower limit (both
0.8903) is "Lower than expected" when its unrounded SHMI is below the
unrounded limit.  The comparisons are strict: a SHMI exactly equal to a limit
is "As expected".  ``decimals=4`` compares the printed values instead (each
printed row then reads consistently; an earlier rule of this module, not
NHS England's).  Rounding is numpy's (``np.round``), the same used for the
printed values; values of 1e15 or more are left unrounded (4 dp means nothing
there, and ``np.round`` would overflow them to ``inf``).

Small trusts and zero deaths (the rule; METHOD.md §6 does not band what it
cannot estimate):

* A trust whose expected deaths ``E`` (as used for banding: after any rescaling
  or ``round_expected``) are below ``min_expected`` (default 1) is reported with
  ``O``, ``E`` and ``SHMI = O/E`` but not banded: ``BANDING`` and
  ``OUTLIER_998`` are empty, ``BANDING_LABEL`` reads "Not banded: fewer than 1
  expected death", ``KEPT_IN_TRIM`` is empty, and it takes no part in the trim
  ranking, ``φ`` or ``τ²``.  Its limits are still given (they depend only on
  ``E`` and ``τ²``).  ``min_expected = 0`` bands every trust with ``E > 0``.
* A trust with ``O = 0`` and ``E >= min_expected`` has an undefined ``z``
  (``ln 0``): ``Z`` is empty.  It is ranked lowest in the trim (so it is
  usually trimmed), never enters ``φ`` or ``τ²``, and is banded by comparing
  ``SHMI = 0`` with its limits.
* No infinities: every computed value that is not finite (``Z`` of a
  zero-death trust, a 99.8% upper limit that overflows for a tiny ``E``) is
  written empty (``NaN``: an empty CSV cell, a parquet null), never ``±inf``.

Counts (see :func:`band_table`): observed deaths must be whole numbers >= 0
(text written in digits, "12" or "12.0") and not above the spells, expected
deaths finite numbers >= 0.  An *impossible* count (negative, not whole,
non-finite, non-numeric, ``O > SPELLS``) is an error unless ``skip_bad_rows``;
a *missing* one (blank), or ``E = 0``, leaves the row out with a ``FLAG``
unless ``strict``.

:func:`band_table` is what both ``shmi band`` and the Spark pipeline (on
collected trust-level rows) call.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from shmi_spark.errors import InputError
from shmi_spark.indicator import funnel

__all__ = [
    "BANDING_LABELS", "OUTPUT_DECIMALS", "MIN_TRUSTS", "DEFAULT_MIN_EXPECTED", "LIMIT_COLUMNS",
    "OUTPUT_COLUMNS", "band", "outlier_998", "count_flags", "BadCountError", "TooFewTrustsError",
    "not_banded_label", "printed", "band_table",
]

BANDING_LABELS = {1: "Higher than expected", 2: "As expected", 3: "Lower than expected"}
OUTPUT_DECIMALS = 4
MIN_TRUSTS = 10
DEFAULT_MIN_EXPECTED = 1.0
LIMIT_COLUMNS = ["OD95_LL", "OD95_UL", "OD998_LL", "OD998_UL", "PO998_LL", "PO998_UL"]
OUTPUT_COLUMNS = (["SHMI", "Z", "KEPT_IN_TRIM"] + LIMIT_COLUMNS
                  + ["BANDING", "BANDING_LABEL", "OUTLIER_998", "FLAG"])


def _rounded(values, decimals: int | None) -> np.ndarray:
    """``np.round`` to ``decimals`` places, leaving values of 1e15 or more as they are."""
    arr = np.asarray(values, dtype=float)
    if decimals is None:
        return arr
    with np.errstate(over="ignore", invalid="ignore"):  # np.round would overflow a huge value to inf
        return np.where(np.abs(arr) < 1e15, np.round(arr, decimals), arr)


def band(shmi, lower95, upper95, *, decimals: int | None = None) -> np.ndarray:
    """Banding 1/2/3 (labels in :data:`BANDING_LABELS`) from the 95% OD limits.

    1 if ``SHMI > upper``, 3 if ``SHMI < lower``, else 2; compared unrounded
    (METHOD.md §6), or after rounding to ``decimals`` places (module docstring).
    """
    s = _rounded(shmi, decimals)
    if np.any(np.isnan(s)):
        raise ValueError("SHMI values must not be NaN")
    lo, hi = _rounded(lower95, decimals), _rounded(upper95, decimals)
    return np.where(s > hi, 1, np.where(s < lo, 3, 2))


def outlier_998(shmi, upper998, *, decimals: int | None = None) -> np.ndarray:
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


_DIGITS = r"[0-9]+(?:\.0+)?"


def _written_in_digits(column: pd.Series) -> pd.Series:
    """True where a text value is a whole number in digits ("12", "12.0"); numeric columns: all True."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return pd.Series(True, index=column.index)
    return column.astype("string").str.strip().str.fullmatch(_DIGITS).fillna(False).astype(bool)


def count_flags(name: str, column: pd.Series, *, observed: bool,
                round_to: int | None = None) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Check one count column (METHOD.md §6 needs ``O`` whole and >= 0, ``E`` finite and > 0).

    Returns ``(values, flags, impossible)``: the values as float (rounded to
    ``round_to`` places if given), one message per bad value ('' where good),
    and a mask of the *impossible* ones: non-numeric, non-finite, negative and,
    for observed deaths (``observed=True``), not a whole number or (text) not
    written in digits.  A blank value ("missing") and ``E = 0`` ("is zero":
    SHMI undefined) are flagged but possible.
    """
    values, missing, nonnumeric = _parse_numeric(column)
    nan_text = nonnumeric & column.astype(str).str.strip().str.lower().isin(["nan", "+nan", "-nan"])
    nonnumeric = nonnumeric & ~nan_text
    if round_to is not None:
        values = values.round(round_to)
    raw = column.astype(str)
    flags = pd.Series("", index=column.index, dtype=object)
    impossible = pd.Series(False, index=column.index)
    finite = ~missing & ~nonnumeric & np.isfinite(values)
    rules = [
        (missing, "missing", False),
        (nonnumeric, "not numeric", True),
        (nan_text | (~missing & ~nonnumeric & ~np.isfinite(values)), "not finite", True),
        (finite & (values < 0), "negative", True),
    ]
    if observed:
        whole = finite & (values >= 0)
        rules += [(whole & (values != np.floor(values)), "not a whole number", True),
                  (whole & (values == np.floor(values)) & ~_written_in_digits(column),
                   "not written in digits", True)]
    else:
        rules.append((finite & (values == 0), "is zero", False))
    for mask, what, bad in reversed(rules):     # first matching rule wins
        mask = mask.astype(bool)
        flags[mask] = [f"{name} {what}" + (f" ({v!r})" if bad else "") for v in raw[mask]]
        impossible[mask] = bad
    return values, flags, impossible


def _above_spells(observed_col: str, raw_o: pd.Series, o: pd.Series, o_flags: pd.Series,
                  spells_col: str, spells: pd.Series) -> pd.Series:
    """Flag ``O > SPELLS`` (an impossible count: a death ends one spell) where both are numbers.

    A spells value that is blank or not a finite number is not checked.
    """
    s, _, _ = _parse_numeric(spells)
    over = (o_flags == "") & np.isfinite(s) & (o > s)
    return pd.Series([f"{observed_col} greater than {spells_col} ({a!r} > {b!r})" if bad else ""
                      for bad, a, b in zip(over, raw_o.astype(str), spells.astype(str), strict=True)],
                     index=o.index, dtype=object)


class BadCountError(InputError):
    """A row with a bad count (its message names the row, column and value).

    ``impossible``: whether the named row's count is impossible (negative, not
    whole, non-finite, non-numeric, above the spells) rather than merely
    missing (or ``E = 0``).
    """

    def __init__(self, message: str, *, impossible: bool):
        super().__init__(message)
        self.impossible = impossible


class TooFewTrustsError(InputError):
    """Too few trusts to estimate the funnel's over-dispersion."""


def _bad_row_error(ids: pd.Series, id_col: str, flags: pd.Series, bad: np.ndarray,
                   impossible: np.ndarray, first_line: int | None) -> BadCountError:
    """The error for the first ``bad`` row: 'line 6, PROVIDER R004: OBSERVED negative ('-3')'."""
    rows = np.nonzero(bad)[0]
    i = int(rows[0])
    where = f"line {i + first_line}" if first_line is not None else f"data row {i + 1}"
    more = f" (and {len(rows) - 1} more bad row(s))" if len(rows) > 1 else ""
    return BadCountError(f"{where}, {id_col} {ids.iloc[i]}: {flags.iloc[i]}{more}",
                         impossible=bool(impossible[i]))


def not_banded_label(min_expected: float) -> str:
    """The ``BANDING_LABEL`` of a trust below ``min_expected`` expected deaths."""
    unit = "death" if min_expected == 1 else "deaths"
    return f"Not banded: fewer than {min_expected:g} expected {unit}"


def printed(values, decimals: int = OUTPUT_DECIMALS) -> np.ndarray:
    """Values as written to the output: rounded, and ``NaN`` (empty) where not finite."""
    arr = _rounded(values, decimals)
    return np.where(np.isfinite(arr), arr, np.nan)


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
               *, decimals: int | None = None, strict: bool = False,
               skip_bad_rows: bool = False, min_expected: float = DEFAULT_MIN_EXPECTED,
               spells_col: str | None = None, min_trusts: int = MIN_TRUSTS,
               first_line: int | None = None) -> tuple[pd.DataFrame, dict]:
    """SHMI, funnel limits and banding for the trust-level rows of one period (METHOD.md §6).

    Returns the input rows (in order, input columns unchanged; output columns
    already present are replaced) plus :data:`OUTPUT_COLUMNS`, values rounded
    to 4 dp, and a summary dict.  ``round_expected``: round ``E`` to that many
    places before anything else (to reproduce files that publish rounded E).
    ``decimals``: compare SHMI and limits rounded to that many places (default:
    unrounded, METHOD.md §6; the printed values are 4 dp either way).
    ``KEPT_IN_TRIM`` marks the trusts used for ``φ`` and ``τ²``.

    Small trusts and zero deaths (module docstring): a trust with ``E <
    min_expected`` gets SHMI and limits but no banding and takes no part in the
    trim, ``φ`` or ``τ²``; a zero-death trust's ``Z`` is empty; no output value
    is ever ``±inf``.

    Bad input, by case:

    * a missing column, an empty or duplicate id, a bad ``trim_fraction`` or
      ``min_expected``: :class:`InputError` (the whole table is unusable);
    * an impossible count — ``O`` or ``E`` non-numeric, non-finite or
      negative, ``O`` not a whole number or (text) not written in digits, or
      ``O`` above the value in ``spells_col`` (if given): a
      :class:`BadCountError` naming the row (by ``first_line``, the file line
      of the first data row, if given), column and value; with
      ``skip_bad_rows`` the row is flagged instead, as below;
    * a missing (blank) ``O`` or ``E``, or ``E = 0``: the row is flagged in
      ``FLAG``, its computed columns are left empty and it takes no part in the
      ranking, ``φ``, ``τ²`` or the national SHMI; ``strict`` makes any flagged
      row a :class:`BadCountError` instead;
    * fewer than ``min_trusts`` (10) good rows with ``E >= min_expected``, or
      too few with deaths to estimate ``φ`` and ``τ²``: :class:`TooFewTrustsError`.

    The expected deaths are used as given: no rescaling to national
    ``ΣE = ΣO`` here; ``national_shmi`` in the summary reports ``ΣO/ΣE`` over
    all good rows (small trusts included).
    """
    named = [id_col, observed_col, expected_col] + ([spells_col] if spells_col is not None else [])
    missing_cols = [c for c in named if c not in df.columns]
    if missing_cols:
        raise InputError(f"missing column(s) {', '.join(map(repr, missing_cols))}"
                         f" (columns present: {', '.join(map(str, df.columns))})")
    clash = [c for c in named if c in OUTPUT_COLUMNS]
    if clash:
        raise InputError(f"input column {clash[0]!r} has the name of an output column")
    if len(set(named)) < len(named):
        raise InputError("the id, observed, expected (and spells) columns must be different columns")
    if trim_fraction != 0:
        try:
            funnel.trim_groups(trim_fraction)
        except ValueError as exc:
            raise InputError(str(exc)) from None
    if not (np.isfinite(min_expected) and min_expected >= 0):
        raise InputError(f"the minimum expected deaths for banding must be a finite number >= 0, "
                         f"not {min_expected}")
    _check_ids(df[id_col], id_col)

    o, o_flags, o_impossible = count_flags(observed_col, df[observed_col], observed=True)
    e, e_flags, e_impossible = count_flags(expected_col, df[expected_col], observed=False,
                                           round_to=round_expected)
    if spells_col is not None:
        over = _above_spells(observed_col, df[observed_col], o, o_flags, spells_col, df[spells_col])
        o_impossible |= over != ""
        o_flags = o_flags.where(over == "", over)
    flags = (o_flags + "; " + e_flags).str.strip("; ")
    good = (flags == "").to_numpy()
    impossible = (o_impossible | e_impossible).to_numpy()

    if strict and not good.all():
        raise _bad_row_error(df[id_col], id_col, flags, ~good, impossible, first_line)
    if not skip_bad_rows and impossible.any():
        raise _bad_row_error(df[id_col], id_col, flags, impossible, impossible, first_line)

    o_good, e_good = o.to_numpy()[good], e.to_numpy()[good]
    ranked = e_good >= min_expected                  # the trusts that are banded
    if ranked.sum() < min_trusts:
        small = (f" and at least {min_expected:g} expected death(s)"
                 if (~ranked).any() else "")
        detail = (f"; e.g. {df[id_col][~good].iloc[0]}: {flags[~good].iloc[0]}"
                  if (~good).any() else "")
        raise TooFewTrustsError(
            f"only {int(ranked.sum())} trust(s) with valid {observed_col!r} and {expected_col!r} "
            f"values{small}; at least {min_trusts} are needed{detail}")
    try:
        res = funnel.funnel_limits(o_good, e_good, trim_fraction, ranked=ranked)
    except ValueError as exc:
        raise TooFewTrustsError(
            f"too few trusts with deaths to estimate the funnel's over-dispersion "
            f"({int(ranked.sum())} trusts, {int((o_good[ranked] > 0).sum())} with deaths): "
            f"{exc}") from None
    banding = band(res.shmi[ranked], res.od95_ll[ranked], res.od95_ul[ranked], decimals=decimals)
    outlier = outlier_998(res.shmi[ranked], res.od998_ul[ranked], decimals=decimals)

    out = df.drop(columns=[c for c in OUTPUT_COLUMNS if c in df.columns]).copy()
    good_at = np.nonzero(good)[0]
    banded_at = good_at[ranked]

    def spread(at, values, dtype="float64"):
        col = pd.Series(np.nan if dtype == "float64" else pd.NA, index=out.index, dtype=dtype)
        col.iloc[at] = values
        return col

    out["SHMI"] = spread(good_at, printed(res.shmi))
    out["Z"] = spread(good_at, printed(res.z))
    out["KEPT_IN_TRIM"] = spread(banded_at, res.kept[ranked], "boolean")
    for name, values in zip(LIMIT_COLUMNS, (res.od95_ll, res.od95_ul, res.od998_ll,
                                            res.od998_ul, res.po998_ll, res.po998_ul), strict=True):
        out[name] = spread(good_at, printed(values))
    out["BANDING"] = spread(banded_at, banding, "Int64")
    labels = spread(good_at[~ranked], not_banded_label(min_expected), "string")
    labels.iloc[banded_at] = [BANDING_LABELS[b] for b in banding]
    out["BANDING_LABEL"] = labels
    out["OUTLIER_998"] = spread(banded_at, outlier, "boolean")
    out["FLAG"] = flags.to_numpy()

    summary = {
        "n_rows": len(out),
        "n_trusts": res.n,
        "rows_flagged": int((~good).sum()),
        "min_expected": float(min_expected),
        "n_banded": res.n_ranked,
        "n_not_banded_small": res.n - res.n_ranked,
        "n_zero_deaths_banded": int((o_good[ranked] == 0).sum()),
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
