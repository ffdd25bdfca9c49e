"""Add SHMI, funnel limits and banding to a trust-level CSV (no Spark).

Reads any CSV with one row per trust holding observed and expected deaths (a
published SHMI file, or this project's output), and writes it back with the
columns SHMI, Z, KEPT_IN_TRIM, OD95_LL/UL, OD998_LL/UL (over-dispersed limits),
PO998_LL/UL (exact Poisson limits), BANDING (1 higher, 2 as expected, 3 lower
than expected), BANDING_LABEL, OUTLIER_998 and FLAG, values rounded to 4 dp
(METHOD.md §6).  Prints the number of trusts, how many were kept by the 10%
trim, the over-dispersion phi and the between-trust variance tau^2.

Bad input: a missing or unreadable file, a missing column, an empty or
duplicate id, or fewer than 10 trusts with valid values end with exit code 2
and a message naming the file and the column.  A row whose observed or
expected deaths are missing, non-numeric, negative or (expected) zero is
flagged in FLAG, its limits left empty and it is left out of the statistics;
--strict makes such a row an error instead.

example:
  shmi band --input shmi_2024.csv --out shmi_2024_banded.csv \\
            --id-col PROVIDER_CODE --plot funnel.png
"""

from __future__ import annotations

import argparse


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text!r}")
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
    parser.add_argument("--strict", action="store_true",
                        help="treat any row with bad observed/expected values as an error")
    parser.add_argument("--plot", default=None, metavar="FILE.png",
                        help="also draw the funnel plot to this PNG")
    parser.add_argument("--title", default=None, help="funnel plot title")


def _read_csv(path: str):
    import pandas as pd

    from ..errors import InputError
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


def run(args) -> int:
    from ..banding import band_table
    from ..errors import InputError

    df = _read_csv(args.input)
    try:
        out, summary = band_table(df, args.id_col, args.observed_col, args.expected_col,
                                  trim_fraction=args.trim, round_expected=args.round_expected,
                                  strict=args.strict)
    except InputError as exc:
        raise InputError(f"{args.input}: {exc}") from None
    try:
        out.to_csv(args.out, index=False)
    except OSError as exc:
        raise InputError(f"{args.out}: cannot write: {exc.strerror or exc}") from None
    if args.plot:
        from ..funnel_plot import funnel_plot
        try:
            funnel_plot(out, args.plot, args.title or f"SHMI funnel plot: {args.input}",
                        id_col=args.id_col, expected_col=args.expected_col, tau2=summary["tau2"])
        except OSError as exc:
            raise InputError(f"{args.plot}: cannot write: {exc.strerror or exc}") from None

    s = summary
    flagged = f" ({s['rows_flagged']} row(s) flagged, see FLAG)" if s["rows_flagged"] else ""
    trim = f"the {args.trim:.0%} trim" if args.trim else "no trim"
    print(f"shmi band: {s['n_trusts']} trusts{flagged}; {s['n_kept']} kept after {trim}")
    print(f"  phi = {s['phi']:.4f}   tau^2 = {s['tau2']:.6f}   national SHMI = "
          f"{s['national_shmi']:.4f}")
    print(f"  banding: {s['n_higher']} higher, {s['n_as_expected']} as expected, "
          f"{s['n_lower']} lower than expected; {s['n_outliers_998']} above the 99.8% limit")
    print(f"  wrote {args.out}" + (f" and {args.plot}" if args.plot else ""))
    return 0
