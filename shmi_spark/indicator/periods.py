"""Reporting periods and modelling windows, chosen from the data (METHOD.md §5, §6).

A period is a run of whole calendar months by discharge date.  The default
(§6) is the ``method.period_months`` (12) months ending ``method.period_end``,
or, when that is empty, ending with the data's last complete month with a
normal volume; its models (§5) are fitted on the ``method.modelling_window_months``
(36) ending with it.  The paper's five-year design: each financial year
2005/06–2009/10 fitted and scored on its own, then the pooled five years.

Periods follow the data, not a stray record.  The pipeline counts the included
spells' discharges per calendar month (one small Spark aggregation, see
:data:`MONTHLY_VOLUME_COLUMNS`) and passes the table here as a
:class:`MonthlyVolume`.  Everything below is plain Python.

Rules (``min_month_share`` defaults to 0.5):

* **Normal volume.**  A month with data is *normal* when its spells are at
  least ``min_month_share`` × the *usual* volume: the median spells of the
  months with data among the 12 calendar months before it.  When fewer than 3
  of those 12 have data (the first months of an extract, which are as likely
  to be partial as its last), the median of the months with data among the 12
  after it is used instead; when fewer than 3 of those have data either (an
  isolated stray month far from the rest), the median of all months with data.
  A month without data is *missing*; one with data but below the share is
  *thin*.  A run of thin months longer than about half a year becomes the
  new usual volume (the rule finds partial months and strays, not trends).
* **Complete.**  A normal month is *complete* when the data reach both its
  ends: its last discharge is on its last calendar day or the next month is
  normal, and its first discharge is on the 1st or the previous month is
  normal.  "On the last day" allows the gap a small extract shows by chance
  (:attr:`MonthVolume.edge_slack_days`: six mean gaps between discharges,
  none at national volumes).  Months that are normal and complete are
  *covered*.
* **Default period end** (:func:`default_period_end`): the last normal month M
  if its last discharge is on its last day, else the month before M, which
  must itself be normal.  Months after the chosen end (strays, a partial or
  thin tail) are ignored and their spells counted in ``spells_after``.
* **Periods** (:func:`plan_periods`): every month of a reporting period must
  be covered, otherwise :class:`~shmi_spark.errors.InputError` before any
  fitting.  The modelling window may reach before the data or over thin
  months: the models are fitted on what there is and the plan carries a
  warning.
"""

from __future__ import annotations

import calendar
import datetime as dt
import statistics
from dataclasses import dataclass

import pandas as pd

from shmi_spark.config import MethodConfig
from shmi_spark.errors import InputError

__all__ = [
    "MONTHLY_VOLUME_COLUMNS", "DEFAULT_MIN_MONTH_SHARE", "REFERENCE_MONTHS", "MIN_REFERENCE_MONTHS", "Period",
    "month_end", "add_months", "month_index", "month_of", "month_label", "span_label", "parse_month",
    "financial_year_label", "MonthVolume", "MonthlyVolume", "MonthStatus", "usual_volume", "assess_months",
    "covered_spans", "describe_coverage", "month_problems", "PeriodEnd", "default_period_end", "period_ending",
    "five_year_periods", "PeriodPlan", "plan_periods",
]

# The monthly table the pipeline passes in: included spells by calendar month of
# DISDATE.  YEAR, MONTH int; SPELLS int (> 0); FIRST_DISCHARGE, LAST_DISCHARGE the
# earliest and latest DISDATE of the month (dates).
MONTHLY_VOLUME_COLUMNS = ("YEAR", "MONTH", "SPELLS", "FIRST_DISCHARGE", "LAST_DISCHARGE")
DEFAULT_MIN_MONTH_SHARE = 0.5
REFERENCE_MONTHS = 12   # months either side a month's volume is compared with
MIN_REFERENCE_MONTHS = 3  # months with data needed for a side to be used


@dataclass(frozen=True)
class Period:
    """One reporting period and the window its models are fitted on."""

    label: str
    start: dt.date
    end: dt.date
    window_start: dt.date
    window_end: dt.date


# ---------------------------------------------------------------- months

def month_end(year: int, month: int) -> dt.date:
    """The last calendar day of a month."""
    return dt.date(year, month, calendar.monthrange(year, month)[1])


def add_months(year: int, month: int, delta: int) -> tuple[int, int]:
    """``(year, month)`` moved by ``delta`` months."""
    index = year * 12 + (month - 1) + delta
    return index // 12, index % 12 + 1


def month_index(year: int, month: int) -> int:
    """Months since year 0: consecutive months have consecutive indices."""
    return year * 12 + month - 1


def month_of(index: int) -> tuple[int, int]:
    """``(year, month)`` of a :func:`month_index`."""
    return index // 12, index % 12 + 1


def month_label(index: int) -> str:
    """``'YYYY-MM'`` of a :func:`month_index`."""
    year, month = month_of(index)
    return f"{year:04d}-{month:02d}"


def span_label(first: int, last: int) -> str:
    """``'YYYY-MM..YYYY-MM'`` (or one month) for a run of month indices."""
    return month_label(first) if first == last else f"{month_label(first)}..{month_label(last)}"


def parse_month(text: str) -> int:
    """``'YYYY-MM'`` → :func:`month_index` (the format is checked by the config)."""
    year, month = (int(x) for x in text.split("-"))
    return month_index(year, month)


def financial_year_label(first_year: int) -> str:
    """``2005`` → ``'2005/06'``."""
    return f"{first_year}/{(first_year + 1) % 100:02d}"


# ---------------------------------------------------------------- the data's months

def _as_date(value: object, column: str) -> dt.date:
    if value is None or pd.isna(value):
        raise ValueError(f"monthly volume: {column} is missing for a month with spells")
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return pd.Timestamp(value).date()


@dataclass(frozen=True)
class MonthVolume:
    """The included spells discharged in one calendar month."""

    year: int
    month: int
    spells: int
    first_discharge: dt.date
    last_discharge: dt.date

    @property
    def index(self) -> int:
        return month_index(self.year, self.month)

    @property
    def label(self) -> str:
        return month_label(self.index)

    @property
    def edge_slack_days(self) -> int:
        """Days without a discharge that a month's edge may show by chance (at most 10).

        Six mean gaps between discharges: with discharges arriving at random,
        a complete month shows a longer gap at an edge with probability about
        e⁻⁶ (0.25%).  Zero days at national volumes; a few in a small extract.
        """
        days = month_end(self.year, self.month).day
        return min(10, int(6 * days / max(self.spells, 1)))

    @property
    def reaches_first_day(self) -> bool:
        return self.first_discharge.day - 1 <= self.edge_slack_days

    @property
    def reaches_last_day(self) -> bool:
        return (month_end(self.year, self.month) - self.last_discharge).days <= self.edge_slack_days


@dataclass(frozen=True)
class MonthlyVolume:
    """The data's discharges per calendar month (months with data only, in order)."""

    months: tuple[MonthVolume, ...]

    def __post_init__(self) -> None:
        indices = [m.index for m in self.months]
        if indices != sorted(set(indices)):
            raise ValueError("monthly volume: months must be unique and in order")
        for m in self.months:
            if m.spells <= 0:
                raise ValueError(f"monthly volume: {m.label} has {m.spells} spells")
            if not (dt.date(m.year, m.month, 1) <= m.first_discharge <= m.last_discharge
                    <= month_end(m.year, m.month)):
                raise ValueError(f"monthly volume: {m.label} has discharges "
                                 f"{m.first_discharge}..{m.last_discharge} outside the month")

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> MonthlyVolume:
        """From a table with :data:`MONTHLY_VOLUME_COLUMNS` (rows with 0 spells dropped)."""
        missing = [c for c in MONTHLY_VOLUME_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"monthly volume: missing column(s) {', '.join(missing)}")
        rows = [MonthVolume(int(r.YEAR), int(r.MONTH), int(r.SPELLS),
                            _as_date(r.FIRST_DISCHARGE, "FIRST_DISCHARGE"),
                            _as_date(r.LAST_DISCHARGE, "LAST_DISCHARGE"))
                for r in frame.itertuples(index=False) if int(r.SPELLS) > 0]
        return cls(tuple(sorted(rows, key=lambda m: m.index)))

    @property
    def total_spells(self) -> int:
        return sum(m.spells for m in self.months)


    def spells_after(self, index: int) -> int:
        """Spells discharged after month ``index``."""
        return sum(m.spells for m in self.months if m.index > index)


@dataclass(frozen=True)
class MonthStatus:
    """One month with data, judged by the rules of the module docstring."""

    volume: MonthVolume
    usual: float      # the median it is compared with
    normal: bool      # spells >= min_month_share * usual
    complete: bool    # normal, and the data reach both its ends

    @property
    def covered(self) -> bool:
        return self.normal and self.complete


def usual_volume(volume: MonthlyVolume, index: int) -> float:
    """The volume month ``index`` is compared with (METHOD.md §6; module docstring).

    The median spells of the months with data among the 12 before it; with
    fewer than 3 of those, among the 12 after it; with fewer than 3 of those
    either, of all months with data.
    """
    before = [m.spells for m in volume.months if index - REFERENCE_MONTHS <= m.index < index]
    if len(before) >= MIN_REFERENCE_MONTHS:
        return float(statistics.median(before))
    after = [m.spells for m in volume.months if index < m.index <= index + REFERENCE_MONTHS]
    if len(after) >= MIN_REFERENCE_MONTHS:
        return float(statistics.median(after))
    return float(statistics.median(m.spells for m in volume.months))


def _check_share(min_month_share: float) -> None:
    if not 0 < min_month_share <= 1:
        raise ValueError(f"min_month_share must be in (0, 1], got {min_month_share}")


def assess_months(volume: MonthlyVolume, *,
                  min_month_share: float = DEFAULT_MIN_MONTH_SHARE) -> dict[int, MonthStatus]:
    """Each month with data, keyed by :func:`month_index`: normal? complete? (§6)."""
    _check_share(min_month_share)
    usual = {m.index: usual_volume(volume, m.index) for m in volume.months}
    normal = {m.index: m.spells >= min_month_share * usual[m.index] for m in volume.months}
    out = {}
    for m in volume.months:
        ends = m.reaches_last_day or normal.get(m.index + 1, False)
        starts = m.reaches_first_day or normal.get(m.index - 1, False)
        out[m.index] = MonthStatus(m, usual[m.index], normal[m.index], normal[m.index] and ends and starts)
    return out


def covered_spans(status: dict[int, MonthStatus]) -> list[tuple[int, int]]:
    """Runs of consecutive covered months, as ``(first, last)`` month indices."""
    spans: list[tuple[int, int]] = []
    for index in sorted(i for i, s in status.items() if s.covered):
        if spans and spans[-1][1] == index - 1:
            spans[-1] = (spans[-1][0], index)
        else:
            spans.append((index, index))
    return spans


def describe_coverage(status: dict[int, MonthStatus], limit: int = 4) -> str:
    """``'2005-04..2010-09'`` (runs joined by ', '), or a sentence when nothing is covered."""
    spans = covered_spans(status)
    if not spans:
        return "no month complete with a normal volume"
    text = ", ".join(span_label(a, b) for a, b in spans[:limit])
    return text + (f" and {len(spans) - limit} more runs" if len(spans) > limit else "")


def month_problems(status: dict[int, MonthStatus], first: int, last: int) -> list[str]:
    """What is wrong with the months ``first..last`` that are not covered (§6).

    Consecutive missing months are one item (``'2007-04..2008-03 missing'``);
    thin and incomplete months are one item each.
    """
    items: list[str] = []
    run: list[int] = []

    def flush() -> None:
        if run:
            items.append(f"{span_label(run[0], run[-1])} missing")
            run.clear()

    for index in range(first, last + 1):
        s = status.get(index)
        if s is None:
            run.append(index)
            continue
        flush()
        m = s.volume
        if not s.normal:
            share = m.spells / s.usual if s.usual else 0.0
            items.append(f"{m.label} thin ({m.spells:,} spells, {share:.0%} of the usual {s.usual:,.0f})")
        elif not s.complete:
            if not (m.reaches_last_day or (index + 1 in status and status[index + 1].normal)):
                items.append(f"{m.label} incomplete (last discharge {m.last_discharge.isoformat()})")
            else:
                items.append(f"{m.label} incomplete (first discharge {m.first_discharge.isoformat()})")
    flush()
    return items


# ---------------------------------------------------------------- choosing periods

@dataclass(frozen=True)
class PeriodEnd:
    """The default last month of the reporting period, and the spells after it."""

    year: int
    month: int
    spells_after: int  # included spells discharged after this month (ignored)

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def _require_data(volume: MonthlyVolume) -> None:
    if not volume.months:
        raise InputError("no spells left after exclusions: nothing to model")


def default_period_end(volume: MonthlyVolume, *,
                       min_month_share: float = DEFAULT_MIN_MONTH_SHARE) -> PeriodEnd:
    """The last month that is normal and complete, ignoring later stray months (§6).

    Take the last normal month M: it is the end when its last discharge is on
    its last calendar day, else the month before M is, which must itself be
    normal (it is then complete: the data go on into M).  Raises
    :class:`InputError` when neither qualifies.
    """
    _require_data(volume)
    status = assess_months(volume, min_month_share=min_month_share)
    last = max(i for i, s in status.items() if s.normal)  # the busiest month is always normal
    m = status[last].volume
    if m.reaches_last_day:
        end = last
    elif last - 1 in status and status[last - 1].normal:
        end = last - 1
    else:
        before = status.get(last - 1)
        why = "has no data" if before is None else "is thin"
        raise InputError(f"the data's last month with a normal volume, {m.label}, is incomplete "
                         f"(last discharge {m.last_discharge.isoformat()}) and {month_label(last - 1)} "
                         f"before it {why}: set --period-end")
    year, month = month_of(end)
    return PeriodEnd(year, month, volume.spells_after(end))


def period_ending(method: MethodConfig, end: int) -> Period:
    """The ``method.period_months`` ending month ``end``, modelled on the window ending with it (§5, §6)."""
    start = end - (method.period_months - 1)
    window = end - (method.modelling_window_months - 1)
    ey, em = month_of(end)
    return Period(label=f"{month_label(start)}..{month_label(end)}",
                  start=dt.date(*month_of(start), 1), end=month_end(ey, em),
                  window_start=dt.date(*month_of(window), 1), window_end=month_end(ey, em))



def five_year_periods(method: MethodConfig) -> list[Period]:
    """Each financial year fitted on itself, then the pooled years (the paper's design)."""
    first, count = method.five_year_first, method.five_year_count
    periods = []
    for y in range(first, first + count):
        start, end = dt.date(y, 4, 1), dt.date(y + 1, 3, 31)
        periods.append(Period(financial_year_label(y), start, end, start, end))
    start, end = dt.date(first, 4, 1), dt.date(first + count, 3, 31)
    label = f"{financial_year_label(first)}-{financial_year_label(first + count - 1)}"
    periods.append(Period(label, start, end, start, end))
    return periods


@dataclass(frozen=True)
class PeriodPlan:
    """The periods to compute, what the data cover, and warnings to print before fitting."""

    periods: tuple[Period, ...]
    warnings: tuple[str, ...]
    data_cover: str          # covered months, e.g. '2005-04..2010-09'
    spells_after: int        # included spells discharged after the last period's end


def _check_five_years(method: MethodConfig, status: dict[int, MonthStatus]) -> None:
    """Every month of every financial year covered, else one :class:`InputError` (§6)."""
    problems = []
    for y in range(method.five_year_first, method.five_year_first + method.five_year_count):
        first, last = month_index(y, 4), month_index(y + 1, 3)
        items = month_problems(status, first, last)
        if not any(first <= i <= last for i in status):
            problems.append(f"financial year {financial_year_label(y)} has no data "
                            f"(months {span_label(first, last)} missing)")
        elif items:
            problems.append(f"financial year {financial_year_label(y)} is not fully covered "
                            f"({'; '.join(items)})")
    if problems:
        raise InputError(f"five-year run: {', '.join(problems)}; "
                         f"the data cover {describe_coverage(status)}")


def _check_rolling(period: Period, status: dict[int, MonthStatus], period_end: str) -> None:
    """The reporting period lies within covered months, else :class:`InputError` (§6).

    ``period_end`` is ``method.period_end`` ('' for the default period).
    """
    first = month_index(period.start.year, period.start.month)
    last = month_index(period.end.year, period.end.month)
    if period_end:
        subject, hint = f"--period-end {period_end}: the {period.label} reporting period", ""
    else:
        subject = f"the default reporting period {period.label}"
        hint = "; set --period-end or a shorter method.period_months"
    spans = covered_spans(status)
    if not spans:
        raise InputError(f"{subject} cannot be computed: the data have no complete month "
                         f"with a normal volume{hint}")
    if last > spans[-1][1]:
        head = f"--period-end {period_end}" if period_end else f"{subject} ends too late"
        raise InputError(f"{head}: the data's last complete month with a normal volume is "
                         f"{month_label(spans[-1][1])}{hint}")
    if first < spans[0][0]:
        raise InputError(f"{subject} starts before the data, which begin {month_label(spans[0][0])}{hint}")
    items = month_problems(status, first, last)
    if items:
        raise InputError(f"{subject} has months missing, thin or incomplete: {'; '.join(items)}; "
                         f"the data cover {describe_coverage(status)}{hint}")


def _window_warnings(period: Period, status: dict[int, MonthStatus]) -> list[str]:
    """Warnings for a modelling window reaching before the data or over gaps (§5)."""
    first = month_index(period.window_start.year, period.window_start.month)
    last = month_index(period.start.year, period.start.month) - 1  # the period itself is checked
    if first > last:
        return []
    begin = covered_spans(status)[0][0]
    window = span_label(first, month_index(period.window_end.year, period.window_end.month))
    out = []
    if first < begin:
        out.append(f"the modelling window {window} begins before the data, which begin "
                   f"{month_label(begin)} (the models are fitted on what there is)")
    items = month_problems(status, max(first, begin), last)
    if items:
        out.append(f"the modelling window {window} has months missing, thin or incomplete "
                   f"(the models are fitted on what there is): {'; '.join(items)}")
    return out


def _stray_warning(end: PeriodEnd, volume: MonthlyVolume) -> list[str]:
    after = [m for m in volume.months if m.index > month_index(end.year, end.month)]
    if not after or [m.index for m in after] == [month_index(end.year, end.month) + 1]:
        return []  # none, or only the extract's last, incomplete month: routine
    months = after[0].label if len(after) == 1 else f"{len(after)} months, {after[0].label}..{after[-1].label}"
    noun = "spell" if end.spells_after == 1 else "spells"
    return [f"{end.spells_after:,} {noun} discharged after {end.label} (in {months}) are left out of the "
            f"default reporting period: those months are incomplete or have too few spells; "
            f"set --period-end to choose the period"]


def plan_periods(method: MethodConfig, volume: MonthlyVolume, *,
                 min_month_share: float = DEFAULT_MIN_MONTH_SHARE) -> PeriodPlan:
    """The periods a run computes, checked against the data before any fitting (§5, §6).

    * ``method.five_year``: :func:`five_year_periods`; every month of every
      financial year must be covered, else :class:`InputError` naming the
      years and months.
    * ``method.period_end`` set: the period ending it must lie within covered
      months, else :class:`InputError`.
    * otherwise: the period ending :func:`default_period_end`, checked the
      same way; spells after it are reported in a warning.

    A modelling window reaching before the data or over missing/thin months is
    a warning, not an error.
    """
    _require_data(volume)
    status = assess_months(volume, min_month_share=min_month_share)
    cover = describe_coverage(status)
    if method.five_year:
        _check_five_years(method, status)
        periods = five_year_periods(method)
        last = periods[-1].end
        return PeriodPlan(tuple(periods), (), cover, volume.spells_after(month_index(last.year, last.month)))
    warnings: list[str] = []
    if method.period_end:
        end = parse_month(method.period_end)
    else:
        chosen = default_period_end(volume, min_month_share=min_month_share)
        end = month_index(chosen.year, chosen.month)
        warnings += _stray_warning(chosen, volume)
    period = period_ending(method, end)
    _check_rolling(period, status, method.period_end)
    warnings = _window_warnings(period, status) + warnings
    return PeriodPlan((period,), tuple(warnings), cover, volume.spells_after(end))
