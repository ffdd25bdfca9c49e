"""Days of the world: day offsets (0 = the window's first day) → date, month, financial year.

The generator works in whole days counted from the window's start; this module
turns them into the ISO date strings written to the files and into the
admission month and financial year of the model (METHOD.md §4).  The date
vocabulary runs from :data:`DATE_PAD` days before the window to
:data:`DATE_AFTER` days after it, so that births, deaths and ONS dates after
the window have a string too.
"""

from __future__ import annotations

from datetime import date

import numpy as np

__all__ = ["DATE_PAD", "DATE_AFTER", "Calendar"]

DATE_PAD = 400      # date vocabulary starts DATE_PAD days before the window
DATE_AFTER = 900    # ... and ends this many days after it


class Calendar:
    """Day offsets (0 = window start) → ISO date string, month, financial year."""

    def __init__(self, start: date, last_day: int):
        first = np.datetime64(start.isoformat())
        offsets = np.arange(-DATE_PAD, last_day + DATE_AFTER + 1)
        days = first + offsets.astype("timedelta64[D]")
        self.last_day = last_day
        #: ISO date of each day of the vocabulary (index = day offset + DATE_PAD)
        self.strings = np.datetime_as_string(days, unit="D")
        months = days.astype("M8[M]").astype(np.int64)
        self.month = (months % 12 + 1).astype(np.int8)
        year = (months // 12 + 1970)
        self.fy = (year - (self.month < 4)).astype(np.int16)

    def index(self, day):
        """Index into :attr:`strings` of a day offset."""
        return day + DATE_PAD

    def month_of(self, day):
        return self.month[day + DATE_PAD]

    def fy_of(self, day):
        """Financial year (2005 = April 2005 - March 2006) of a day offset."""
        return self.fy[day + DATE_PAD]

    def fy_of_clipped(self, day):
        """Financial year of a day offset, days outside the vocabulary taken as its first or last day."""
        return self.fy_of(np.clip(day, -DATE_PAD, self.last_day + DATE_AFTER))
