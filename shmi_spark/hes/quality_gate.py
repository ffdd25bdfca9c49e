"""The data-quality gate: report what validation rejected, and stop a run whose input is too damaged.

METHOD.md §1–§2.  A few rejected rows are ordinary; a reason that rejects a
sizeable share of an input means the input changed shape (dates in a new
format, a new trust missing from the reference, a file cut short), and an
indicator computed from the rest would be quietly wrong.  The gate works on
small pandas tables aggregated by Spark from the validated rows:

``counts``  one row per ``SOURCE_FILE, FYEAR, REASON, FIELD`` (``REASON`` null
            for accepted rows) with ``N`` rows and ``EXAMPLE``, the commonest value;
``invalid`` one row per ``FIELD, VALUE`` of invalid codes among accepted
            episodes, with ``N``.

A run fails (:class:`DataQualityError`, exit code 2, one line naming the
reason, the field and an example value) when

* a reject reason (per field) takes more than ``max_reject_share`` of an
  input's rows;
* invalid codes in one field exceed ``max_invalid_share`` of the accepted
  episodes (METHOD.md §2 makes them ``unknown`` levels: a column that is
  mostly invalid would silently become mostly ``unknown``);
* a file has rows and none is accepted;
* no row of an input is accepted;
* a financial year inside the data (between the first and the last year with
  a substantial number of rows) has fewer than ``min_year_share`` of the
  median year's accepted rows — for episodes, and for deaths over the
  episodes' years.

Every failure is listed on the console and in summary.json before the run stops.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from shmi_spark.config import QualityConfig
from shmi_spark.errors import InputError

__all__ = ["DataQualityError", "InputReport", "input_report", "invalid_report", "gate_failures",
           "check_quality", "interior_years", "format_report"]

COUNT_COLUMNS = ("SOURCE_FILE", "FYEAR", "REASON", "FIELD", "N", "EXAMPLE")


class DataQualityError(InputError):
    """The input is too damaged for a trustworthy indicator (exit code 2)."""


@dataclass(frozen=True)
class InputReport:
    """What validation did with one input (episodes or deaths)."""

    what: str
    read: int
    accepted: int
    by_reason: pd.DataFrame    # REASON, FIELD, N, EXAMPLE, FILE (one file holding the example)
    by_file: pd.DataFrame      # SOURCE_FILE, READ, ACCEPTED, REJECTED
    by_year: pd.Series         # accepted rows by financial year (index: first calendar year)

    @property
    def rejected(self) -> int:
        return self.read - self.accepted

    def to_dict(self) -> dict:
        """The summary.json form: counts by reason and field, per file, per financial year."""
        files = []
        for f in self.by_file.itertuples(index=False):
            files.append({"file": f.SOURCE_FILE, "read": int(f.READ), "accepted": int(f.ACCEPTED),
                          "rejected": int(f.REJECTED)})
        return {
            "read": self.read, "accepted": self.accepted, "rejected": self.rejected,
            "rejects_by_reason": {f"{r.REASON}:{r.FIELD}" if r.FIELD else r.REASON: int(r.N)
                                  for r in self.by_reason.itertuples(index=False)},
            "reject_examples": {f"{r.REASON}:{r.FIELD}" if r.FIELD else r.REASON: r.EXAMPLE
                                for r in self.by_reason.itertuples(index=False)},
            "files": files,
            "accepted_by_financial_year": {_fy_label(int(y)): int(n) for y, n in self.by_year.items()},
        }


def _fy_label(year: int) -> str:
    return f"{year}/{(year + 1) % 100:02d}"


def input_report(what: str, counts: pd.DataFrame) -> InputReport:
    """Summarise an input's ``counts`` table (module docstring)."""
    counts = counts.copy()
    counts["N"] = counts["N"].astype("int64")
    accepted_rows = counts["REASON"].isna()
    rejected = counts[~accepted_rows]
    # the example of a reason is the one from its biggest (file, year) group
    by_reason = (rejected.sort_values(["REASON", "FIELD", "N", "SOURCE_FILE"], ascending=[True, True, False, True],
                                      kind="mergesort")
                 .groupby(["REASON", "FIELD"], dropna=False, sort=True)
                 .agg(N=("N", "sum"), EXAMPLE=("EXAMPLE", "first"), FILE=("SOURCE_FILE", "first"))
                 .reset_index().sort_values(["N", "REASON"], ascending=[False, True], kind="mergesort")
                 .reset_index(drop=True))
    by_reason["FIELD"] = by_reason["FIELD"].fillna("")
    read = counts.groupby("SOURCE_FILE")["N"].sum()
    acc = counts[accepted_rows].groupby("SOURCE_FILE")["N"].sum().reindex(read.index, fill_value=0)
    by_file = pd.DataFrame({"SOURCE_FILE": read.index, "READ": read.to_numpy(), "ACCEPTED": acc.to_numpy()})
    by_file["REJECTED"] = by_file["READ"] - by_file["ACCEPTED"]
    by_year = (counts[accepted_rows & counts["FYEAR"].notna()].groupby("FYEAR")["N"].sum()
               .sort_index().astype("int64"))
    by_year.index = by_year.index.astype(int)
    return InputReport(what=what, read=int(counts["N"].sum()), accepted=int(counts.loc[accepted_rows, "N"].sum()),
                       by_reason=by_reason, by_file=by_file.sort_values("SOURCE_FILE").reset_index(drop=True),
                       by_year=by_year)


def invalid_report(invalid: pd.DataFrame, *, top: int = 10) -> dict:
    """``{FIELD: {"total": n, "values": {VALUE: n, ...}}}`` (the ``top`` values per field)."""
    out: dict = {}
    for field, rows in invalid.sort_values(["FIELD", "N", "VALUE"], ascending=[True, False, True]).groupby(
            "FIELD", sort=True):
        out[field] = {"total": int(rows["N"].sum()),
                      "values": {str(v): int(n)
                                 for v, n in zip(rows["VALUE"].head(top), rows["N"].head(top), strict=True)}}
    return out


def interior_years(by_year: pd.Series, *, share: float) -> list[int]:
    """The financial years strictly between the first and last year with at least ``share`` × the median."""
    if by_year.empty:
        return []
    median = float(by_year.median())
    substantial = [int(y) for y, n in by_year.items() if n >= share * median]
    if len(substantial) < 3:
        return []
    return list(range(substantial[0] + 1, substantial[-1]))


def _share(n: int, of: int) -> str:
    return f"{n / of:.1%}" if of else "-"


def gate_failures(episodes: InputReport, deaths: InputReport, invalid: dict,
                  quality: QualityConfig) -> list[str]:
    """Every reason the input is too damaged, as one-line messages (empty: it passes)."""
    failures: list[str] = []
    for rep in (episodes, deaths):
        if rep.read and rep.accepted == 0:
            worst = rep.by_reason.iloc[0] if len(rep.by_reason) else None
            why = f": {worst.REASON} {worst.FIELD}, e.g. {worst.EXAMPLE!r}" if worst is not None else ""
            failures.append(f"{rep.what}: none of the {rep.read:,} rows was accepted{why}")
        elif not rep.read:
            failures.append(f"{rep.what}: the input has no rows")
        for r in rep.by_reason.itertuples(index=False):
            if rep.read and r.N > quality.max_reject_share * rep.read:
                field = f" on {r.FIELD}" if r.FIELD else ""
                failures.append(
                    f"{rep.what}: {r.REASON}{field} rejects {r.N:,} of {rep.read:,} rows "
                    f"({_share(r.N, rep.read)}; limit {quality.max_reject_share:.1%}), "
                    f"e.g. {r.EXAMPLE!r} in {r.FILE}")
        for f in rep.by_file.itertuples(index=False):
            if f.READ and f.ACCEPTED == 0 and rep.accepted:
                failures.append(f"{rep.what} file {f.SOURCE_FILE}: all {f.READ:,} rows rejected")
    for field, info in invalid.items():
        if episodes.accepted and info["total"] > quality.max_invalid_share * episodes.accepted:
            value, n = next(iter(info["values"].items()))
            failures.append(
                f"hes episodes: {info['total']:,} of {episodes.accepted:,} accepted episodes "
                f"({_share(info['total'], episodes.accepted)}; limit {quality.max_invalid_share:.1%}) have "
                f"an invalid {field}, e.g. {value!r} ({n:,} rows)")
    years = interior_years(episodes.by_year, share=quality.min_year_share)
    for rep in (episodes, deaths):
        if not years:
            break
        inside = rep.by_year.reindex(years, fill_value=0)
        median = float(inside.median())
        for year, n in inside.items():
            if n < quality.min_year_share * median:
                failures.append(f"{rep.what}: financial year {_fy_label(int(year))} has {int(n):,} accepted "
                                f"rows against a median of {median:,.0f} for the years "
                                f"{_fy_label(years[0])}..{_fy_label(years[-1])}: a year of data is missing")
    return failures


def format_report(rep: InputReport, *, top: int = 8, top_files: int = 5) -> list[str]:
    """Console lines: rows read, accepted, rejected; the main reasons; the files with most rejects."""
    lines = [f"{rep.what}: {rep.read:,} rows read, {rep.accepted:,} accepted, {rep.rejected:,} rejected"]
    for r in rep.by_reason.head(top).itertuples(index=False):
        field = f" {r.FIELD}" if r.FIELD else ""
        lines.append(f"    {r.N:>10,}  {r.REASON}{field}  e.g. {r.EXAMPLE!r}")
    if len(rep.by_reason) > top:
        lines.append(f"    ... and {len(rep.by_reason) - top} more reasons (summary.json)")
    files = rep.by_file[rep.by_file["REJECTED"] > 0].sort_values(["REJECTED", "SOURCE_FILE"],
                                                                 ascending=[False, True], kind="mergesort")
    if len(rep.by_file) > 1:
        for f in files.head(top_files).itertuples(index=False):
            lines.append(f"    {f.REJECTED:>10,}  of {f.READ:,} rejected in {f.SOURCE_FILE}")
        if len(files) > top_files:
            lines.append(f"    ... and {len(files) - top_files} more files with rejects (summary.json)")
    return lines


def check_quality(failures: list[str]) -> None:
    """Raise :class:`DataQualityError` with the first of :func:`gate_failures` (and a count of the others)."""
    if failures:
        more = f" (and {len(failures) - 1} more problem(s), listed above)" if len(failures) > 1 else ""
        raise DataQualityError(f"data-quality gate: {failures[0]}{more}")
