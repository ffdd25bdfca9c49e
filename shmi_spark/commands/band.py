"""Add SHMI, funnel limits and banding to a trust-level CSV (no Spark).

Reads any CSV with one row per trust holding observed and expected deaths (a
published SHMI file, or this project's output), and writes it back with the
columns SHMI, Z, KEPT_IN_TRIM, OD95_LL/UL, OD998_LL/UL (over-dispersed limits),
PO998_LL/UL (exact Poisson limits), BANDING (1 higher, 2 as expected, 3 lower
than expected), BANDING_LABEL, OUTLIER_998 and FLAG, values rounded to 4 dp
(METHOD.md §6).  The banding compares the unrounded SHMI with the unrounded
limits, as NHS England does (a SHMI that prints equal to a limit can be
outside it); --compare-rounded compares the printed values.  Prints the number of trusts, how many were banded and kept
by the 10% trim, the over-dispersion phi and the between-trust variance tau^2.

Small trusts and zero deaths: a trust with fewer than --min-expected (default
1) expected deaths is reported with SHMI = O/E and its limits but not banded
(BANDING and OUTLIER_998 empty, BANDING_LABEL "Not banded: fewer than 1
expected death") and takes no part in the trim, phi or tau^2.  A trust with
no deaths and enough expected deaths is banded by comparing SHMI = 0 with its
limits; its Z (ln 0) is left empty.  No value is ever written as inf: a value
that is not finite (such as the 99.8% upper limit of a tiny E) is left empty.

Counts: observed deaths must be whole numbers >= 0 written in digits ("12" or
"12.0"; not "2.5", "-3", "1e9", "inf", "12,0") and not above the spells
(column SPELLS if present, or --spells-col); expected deaths must be finite
numbers >= 0.  An impossible count ends with exit code 2 and one line naming
the file, the row (line and id), the column and the value; --skip-bad-rows
flags such rows in FLAG and leaves them out instead.  A blank observed or
expected value, or zero expected deaths, is flagged in FLAG and the row left
out of the statistics; --strict makes those errors too.  A warning is printed
when the national SHMI (sum O / sum E) is outside [0.5, 2.0].

Other bad input: a missing or unreadable file, a missing column, an empty or
duplicate id, or fewer than 10 trusts to band end with exit code 2 and a
message naming the file and the column.

example:
  shmi band --input shmi_2024.csv --out shmi_2024_banded.csv \\
            --id-col PROVIDER_CODE --plot funnel.png
"""

from __future__ import annotations

import argparse
import math

__all__ = ["NATIONAL_SHMI_RANGE", "add_arguments", "default_title", "national_shmi_warning", "run"]

NATIONAL_SHMI_RANGE = (0.5, 2.0)


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0: {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, metavar="FILE.csv",
                        help="trust-level CSV with observed and expected deaths")
    parser.add_argument("--out", required=True, metavar="FILE.csv",
                        help="where to write the CSV with the added columns")
    parser.add_argument("--id-col", default="PROVIDER", metavar="C",
                        help="trust id column (default: PROVIDER)")
    parser.add_argument("--observed-col", default="OBSERVED", metavar="C",
                        help="observed deaths column (default: OBSERVED)")
    parser.add_argument("--expected-col", default="EXPECTED", metavar="C",
                        help="expected deaths column (default: EXPECTED)")
    parser.add_argument("--round-expected", type=_non_negative_int, default=None, metavar="N",
                        help="round expected deaths to N decimal places first")
    parser.add_argument("--trim", type=float, default=0.10, metavar="F",
                        help="fraction trimmed from each end before estimating "
                             "over-dispersion: 1/k, e.g. 0.10 (default), or 0 for none")
    parser.add_argument("--spells-col", default=None, metavar="C",
                        help="spells column: observed deaths above it are impossible "
                             "(default: SPELLS if the file has it)")
    parser.add_argument("--min-expected", type=_non_negative_float, default=1.0, metavar="E",
                        help="band only trusts with at least E expected deaths; smaller ones "
                             "get SHMI and limits but no banding and no part in the trim, phi "
                             "or tau^2 (default: 1; 0 bands every trust)")
    bad = parser.add_mutually_exclusive_group()
    bad.add_argument("--skip-bad-rows", action="store_true",
                     help="flag rows with impossible counts (negative, not whole, non-finite, "
                          "non-numeric, above the spells) in FLAG and leave them out, "
                          "instead of stopping with an error")
    bad.add_argument("--strict", action="store_true",
                     help="also treat a blank observed/expected value or zero expected deaths "
                          "as an error (by default such rows are flagged and left out)")
    parser.add_argument("--compare-rounded", action="store_true",
                        help="band on SHMI and limits rounded to 4 dp, as printed (default: on the "
                             "unrounded values, as NHS England does; METHOD.md §6)")
    parser.add_argument("--plot", default=None, metavar="FILE.png",
                        help="also draw the funnel plot to this PNG")
    parser.add_argument("--title", default=None,
                        help="funnel plot title (default: 'SHMI funnel plot', with the period when the input's "
                             "PERIOD column holds one)")


def _read_csv(path: str):
    import pandas as pd

    from shmi_spark.errors import InputError
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a CSV file") from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: cannot read as CSV: {first}") from None


def national_shmi_warning(national_shmi: float) -> str | None:
    """A warning when ΣO/ΣE is implausible for expected deaths scaled as in METHOD.md §6."""
    low, high = NATIONAL_SHMI_RANGE
    if low <= national_shmi <= high:
        return None
    return (f"national SHMI (sum observed / sum expected) is {national_shmi:.4g}, outside "
            f"[{low}, {high}]: expected deaths look unscaled or the columns are swapped")


def default_title(rows) -> str:
    """The funnel plot's title: it names the period (the input's one ``PERIOD``), never a file path."""
    periods = rows["PERIOD"].dropna().astype(str).unique() if "PERIOD" in rows.columns else []
    return f"SHMI funnel plot, {periods[0]}" if len(periods) == 1 else "SHMI funnel plot"


def run(args) -> int:
    import sys

    from shmi_spark.errors import InputError
    from shmi_spark.indicator.banding import OUTPUT_DECIMALS, BadCountError, band_table

    df = _read_csv(args.input)
    spells_col = args.spells_col or ("SPELLS" if "SPELLS" in df.columns else None)
    try:
        out, summary = band_table(df, args.id_col, args.observed_col, args.expected_col,
                                  trim_fraction=args.trim, round_expected=args.round_expected,
                                  strict=args.strict, skip_bad_rows=args.skip_bad_rows,
                                  min_expected=args.min_expected, spells_col=spells_col,
                                  decimals=OUTPUT_DECIMALS if args.compare_rounded else None, first_line=2)
    except BadCountError as exc:
        hint = ("an impossible count; --skip-bad-rows flags and leaves out such rows"
                if exc.impossible else "--strict makes a missing value an error")
        raise InputError(f"{args.input}: {exc} ({hint})") from None
    except InputError as exc:
        raise InputError(f"{args.input}: {exc}") from None
    warning = national_shmi_warning(summary["national_shmi"])
    if warning:
        print(f"shmi band: warning: {warning}", file=sys.stderr)
    try:
        out.to_csv(args.out, index=False)
    except OSError as exc:
        raise InputError(f"{args.out}: cannot write: {exc.strerror or exc}") from None
    if args.plot:
        from shmi_spark.indicator.plots import funnel_plot
        try:
            funnel_plot(out, args.plot, args.title or default_title(out),
                        id_col=args.id_col, expected_col=args.expected_col, tau2=summary["tau2"])
        except OSError as exc:
            raise InputError(f"{args.plot}: cannot write: {exc.strerror or exc}") from None

    s = summary
    flagged = f" ({s['rows_flagged']} row(s) flagged, see FLAG)" if s["rows_flagged"] else ""
    trim = f"the {args.trim:.0%} trim" if args.trim else "no trim"
    print(f"shmi band: {s['n_trusts']} trusts{flagged}; {s['n_kept']} kept after {trim}")
    if s["n_not_banded_small"]:
        print(f"  not banded: {s['n_not_banded_small']} trust(s) with fewer than "
              f"{s['min_expected']:g} expected death(s)")
    print(f"  phi = {s['phi']:.4f}   tau^2 = {s['tau2']:.6f}   national SHMI = "
          f"{s['national_shmi']:.4f}")
    print(f"  banding: {s['n_higher']} higher, {s['n_as_expected']} as expected, "
          f"{s['n_lower']} lower than expected; {s['n_outliers_998']} above the 99.8% limit")
    print(f"  wrote {args.out}" + (f" and {args.plot}" if args.plot else ""))
    return 0
