"""Reporting periods and modelling windows (METHOD.md §5, §6).

A period is a run of whole months by discharge date.  The default is the
12 months ending ``method.period_end`` (or the latest complete month in the
data), modelled on the ``method.modelling_window_months`` ending with it.  The
paper's five-year design: each financial year 2005/06–2009/10 fitted and scored
on its own, and the pooled five years.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

from .config import MethodConfig


@dataclass(frozen=True)
class Period:
    """One reporting period and the window its models are fitted on."""

    label: str
    start: dt.date
    end: dt.date
    window_start: dt.date
    window_end: dt.date

    @property
    def window_years(self) -> int:
        months = months_between(self.window_start, self.window_end)
        return max(1, -(-months // 12))


def month_end(year: int, month: int) -> dt.date:
    return dt.date(year, month, calendar.monthrange(year, month)[1])


def add_months(year: int, month: int, delta: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + delta
    return index // 12, index % 12 + 1


def months_between(start: dt.date, end: dt.date) -> int:
    """Whole months from the first day of ``start``'s month to ``end``'s, inclusive."""
    return (end.year - start.year) * 12 + end.month - start.month + 1


def latest_complete_month(max_discharge: dt.date) -> tuple[int, int]:
    """The last month fully covered by data whose latest discharge is ``max_discharge``."""
    if max_discharge == month_end(max_discharge.year, max_discharge.month):
        return max_discharge.year, max_discharge.month
    return add_months(max_discharge.year, max_discharge.month, -1)


def rolling_period(method: MethodConfig, max_discharge: dt.date) -> Period:
    """The period ending ``method.period_end`` (or the latest complete month)."""
    if method.period_end:
        year, month = (int(x) for x in method.period_end.split("-"))
    else:
        year, month = latest_complete_month(max_discharge)
    end = month_end(year, month)
    sy, sm = add_months(year, month, -(method.period_months - 1))
    wy, wm = add_months(year, month, -(method.modelling_window_months - 1))
    return Period(label=f"{sy:04d}-{sm:02d}..{year:04d}-{month:02d}", start=dt.date(sy, sm, 1), end=end,
                  window_start=dt.date(wy, wm, 1), window_end=end)


def financial_year_label(first_year: int) -> str:
    return f"{first_year}/{(first_year + 1) % 100:02d}"


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
