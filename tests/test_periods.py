"""Reporting periods chosen from the data's monthly volume (METHOD.md §5, §6); no Spark."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pandas as pd
import pytest

from shmi_spark.config import MethodConfig
from shmi_spark.errors import InputError
from shmi_spark.indicator.periods import (MONTHLY_VOLUME_COLUMNS, MonthlyVolume, assess_months, default_period_end,
                                five_year_periods, month_end, month_index, plan_periods, usual_volume)

USUAL = 300


def months(first: str, last: str) -> list[tuple[int, int]]:
    fy, fm = (int(x) for x in first.split("-"))
    ly, lm = (int(x) for x in last.split("-"))
    return [(i // 12, i % 12 + 1) for i in range(fy * 12 + fm - 1, ly * 12 + lm)]


def volume(first: str = "2005-04", last: str = "2010-09", *, drop: tuple[str, ...] = (),
           change: dict[str, tuple] | None = None, extra: dict[str, tuple] | None = None) -> MonthlyVolume:
    """Months ``first..last`` at USUAL spells, discharges on every day.

    ``change``/``extra`` map 'YYYY-MM' to ``(spells, first_day, last_day)`` (a day
    None = the month's first/last day); ``drop`` removes months.
    """
    rows = {}
    for y, m in months(first, last):
        rows[f"{y:04d}-{m:02d}"] = (USUAL, None, None)
    rows.update(change or {})
    rows.update(extra or {})
    data = []
    for key, (spells, d0, d1) in rows.items():
        if key in drop:
            continue
        y, m = (int(x) for x in key.split("-"))
        data.append({"YEAR": y, "MONTH": m, "SPELLS": spells,
                     "FIRST_DISCHARGE": dt.date(y, m, d0 or 1),
                     "LAST_DISCHARGE": dt.date(y, m, d1) if d1 else month_end(y, m)})
    return MonthlyVolume.from_frame(pd.DataFrame(data, columns=list(MONTHLY_VOLUME_COLUMNS)))


def end_of(v: MonthlyVolume, **kw) -> tuple[str, int]:
    e = default_period_end(v, **kw)
    return e.label, e.spells_after


ROLLING = MethodConfig()
FIVE = MethodConfig(five_year=True)


# ---------------------------------------------------------------- the monthly table

def test_from_frame_accepts_spark_like_values_and_drops_empty_months():
    frame = pd.DataFrame({"YEAR": [2010, 2010, 2010], "MONTH": [9, 8, 7], "SPELLS": [5, 4, 0],
                          "FIRST_DISCHARGE": [pd.Timestamp("2010-09-01"), "2010-08-02", None],
                          "LAST_DISCHARGE": [dt.datetime(2010, 9, 30, 0, 0), dt.date(2010, 8, 31), None]})
    v = MonthlyVolume.from_frame(frame)
    assert [m.label for m in v.months] == ["2010-08", "2010-09"]
    assert v.months[0].first_discharge == dt.date(2010, 8, 2) and v.months[1].reaches_last_day
    assert v.total_spells == 9


def test_from_frame_rejects_a_bad_table():
    with pytest.raises(ValueError, match="FIRST_DISCHARGE"):
        MonthlyVolume.from_frame(pd.DataFrame({"YEAR": [2010], "MONTH": [9], "SPELLS": [1],
                                               "LAST_DISCHARGE": [dt.date(2010, 9, 3)]}))
    with pytest.raises(ValueError, match="outside the month"):
        MonthlyVolume.from_frame(pd.DataFrame({"YEAR": [2010], "MONTH": [9], "SPELLS": [1],
                                               "FIRST_DISCHARGE": [dt.date(2010, 9, 3)],
                                               "LAST_DISCHARGE": [dt.date(2010, 10, 3)]}))


def test_usual_volume_looks_back_then_forward():
    v = volume("2005-04", "2006-12", change={"2005-04": (100, None, None), "2005-05": (200, None, None),
                                           "2006-01": (900, None, None)})
    assert usual_volume(v, month_index(2005, 4)) == USUAL   # no months before: the next 12
    assert usual_volume(v, month_index(2005, 6)) == USUAL   # 2 before (100, 200): the next 12
    assert usual_volume(v, month_index(2005, 7)) == 200     # 3 before: 100, 200, 300
    assert usual_volume(v, month_index(2006, 2)) == USUAL


# ---------------------------------------------------------------- default period end

def test_clean_data_end_with_their_last_month():
    assert end_of(volume()) == ("2010-09", 0)


def test_the_synthetic_worlds_default_period_is_unchanged():
    plan = plan_periods(ROLLING, volume())
    (p,) = plan.periods
    assert (p.label, p.start, p.end) == ("2009-10..2010-09", dt.date(2009, 10, 1), dt.date(2010, 9, 30))
    assert (p.window_start, p.window_end) == (dt.date(2007, 10, 1), dt.date(2010, 9, 30))
    assert plan.warnings == () and plan.data_cover == "2005-04..2010-09" and plan.spells_after == 0


def test_one_stray_spell_after_the_data_does_not_move_the_period():
    v = volume(extra={"2011-06": (1, 14, 14)})
    assert end_of(v) == ("2010-09", 1)
    plan = plan_periods(ROLLING, v)
    assert plan.periods[0].label == "2009-10..2010-09" and plan.spells_after == 1
    (warning,) = plan.warnings
    assert "1 spell discharged after 2010-09 (in 2011-06)" in warning


def test_a_stray_spell_years_away_is_ignored_too():
    v = volume(extra={"2019-01": (1, 5, 5), "1999-12": (2, 3, 3)})
    assert end_of(v) == ("2010-09", 1)
    assert plan_periods(ROLLING, v).data_cover == "2005-04..2010-09"


def test_a_partial_last_month_at_half_volume_is_left_out():
    v = volume(change={"2010-09": (USUAL // 2, None, 15)})
    assert end_of(v) == ("2010-08", USUAL // 2)
    plan = plan_periods(ROLLING, v)
    assert plan.periods[0].label == "2009-09..2010-08"
    # the extract's last, incomplete month left out: routine, no warning (a stray spell later is warned of)
    assert plan.warnings == () and plan.spells_after == USUAL // 2


def test_a_last_month_at_90_percent_ending_on_the_28th_is_incomplete():
    v = volume(change={"2010-09": (int(USUAL * 0.9), None, 28)})
    assert end_of(v) == ("2010-08", 270)


def test_a_thin_last_month_ending_on_its_last_day_is_left_out():
    v = volume(change={"2010-09": (USUAL // 10, None, None)})
    assert end_of(v) == ("2010-08", 30)


def test_no_complete_month_is_an_input_error():
    v = volume("2010-09", "2010-09", change={"2010-09": (USUAL, None, 20)})
    with pytest.raises(InputError, match="2010-09, is incomplete .* 2010-08 before it has no data"):
        default_period_end(v)
    with pytest.raises(InputError, match="nothing to model"):
        plan_periods(ROLLING, MonthlyVolume(()))


def test_the_share_is_a_setting():
    v = volume(change={"2010-09": (int(USUAL * 0.6), None, None)})
    assert end_of(v)[0] == "2010-09"
    assert end_of(v, min_month_share=0.7)[0] == "2010-08"
    with pytest.raises(ValueError):
        default_period_end(v, min_month_share=0)


# ---------------------------------------------------------------- the start of the extract

def test_an_extract_starting_mid_month():
    v = volume(change={"2005-04": (USUAL * 2 // 3, 11, None)})
    status = assess_months(v)
    april = status[month_index(2005, 4)]
    assert april.normal and not april.complete      # 2/3 of the volume, but from the 11th
    assert status[month_index(2005, 5)].covered
    plan = plan_periods(ROLLING, v)
    assert plan.data_cover == "2005-05..2010-09" and plan.periods[0].label == "2009-10..2010-09"
    with pytest.raises(InputError, match=r"--period-end 2006-03: the 2005-04..2006-03 reporting period "
                                         r"starts before the data, which begin 2005-05"):
        plan_periods(dataclasses.replace(ROLLING, period_end="2006-03"), v)
    assert plan_periods(dataclasses.replace(ROLLING, period_end="2006-04"), v).periods[0].label == \
        "2005-05..2006-04"
    with pytest.raises(InputError, match=r"financial year 2005/06 is not fully covered "
                                         r"\(2005-04 incomplete \(first discharge 2005-04-11\)\)"):
        plan_periods(FIVE, v)


def test_a_thin_first_month_is_not_the_start():
    v = volume(change={"2005-04": (USUAL // 5, 20, None)})
    assert not assess_months(v)[month_index(2005, 4)].normal
    assert plan_periods(ROLLING, v).data_cover == "2005-05..2010-09"


# ---------------------------------------------------------------- --period-end

def test_period_end_after_the_data():
    with pytest.raises(InputError, match=r"^--period-end 2011-06: the data's last complete month "
                                         r"with a normal volume is 2010-09$"):
        plan_periods(dataclasses.replace(ROLLING, period_end="2011-06"), volume())


def test_period_end_on_a_partial_last_month():
    v = volume(change={"2010-09": (USUAL // 2, None, 15)})
    with pytest.raises(InputError, match="last complete month with a normal volume is 2010-08"):
        plan_periods(dataclasses.replace(ROLLING, period_end="2010-09"), v)


def test_period_end_before_the_data():
    with pytest.raises(InputError, match=r"^--period-end 2005-12: the 2005-01..2005-12 reporting period "
                                         r"starts before the data, which begin 2005-04$"):
        plan_periods(dataclasses.replace(ROLLING, period_end="2005-12"), volume())
    with pytest.raises(InputError, match="starts before the data"):
        plan_periods(dataclasses.replace(ROLLING, period_end="2001-03"), volume())


def test_period_end_inside_the_data():
    plan = plan_periods(dataclasses.replace(ROLLING, period_end="2008-03"), volume())
    (p,) = plan.periods
    assert (p.label, p.start, p.end) == ("2007-04..2008-03", dt.date(2007, 4, 1), dt.date(2008, 3, 31))
    assert p.window_start == dt.date(2005, 4, 1)
    assert plan.warnings == () and plan.spells_after == 30 * USUAL  # data after a chosen end: no warning


def test_a_gap_inside_the_reporting_period():
    v = volume(drop=("2010-02",))
    with pytest.raises(InputError) as err:
        plan_periods(ROLLING, v)
    msg = str(err.value)
    assert msg.startswith("the default reporting period 2009-10..2010-09 has months missing, thin or "
                          "incomplete: 2010-02 missing;") and "the data cover 2005-04..2010-01, 2010-03..2010-09" in msg
    assert "\n" not in msg


def test_a_short_extract_has_no_default_period():
    with pytest.raises(InputError, match=r"^the default reporting period 2009-10..2010-09 starts before the "
                                         r"data, which begin 2010-01; set --period-end or a shorter "
                                         r"method.period_months$"):
        plan_periods(ROLLING, volume("2010-01"))
    plan = plan_periods(dataclasses.replace(ROLLING, period_months=9, modelling_window_months=9),
                        volume("2010-01"))
    assert plan.periods[0].label == "2010-01..2010-09" and plan.warnings == ()


def test_a_thin_month_inside_a_chosen_period():
    v = volume(change={"2008-02": (USUAL // 10, None, None)})
    with pytest.raises(InputError, match=r"^--period-end 2008-03: the 2007-04..2008-03 reporting period has "
                                         r"months missing, thin or incomplete: 2008-02 thin \(30 spells, 10% "
                                         r"of the usual 300\); the data cover 2005-04..2008-01, 2008-03..2010-09$"):
        plan_periods(dataclasses.replace(ROLLING, period_end="2008-03"), v)


# ---------------------------------------------------------------- the modelling window

def test_a_window_starting_before_the_data_is_a_warning():
    plan = plan_periods(dataclasses.replace(ROLLING, period_end="2006-09"), volume())
    (p,) = plan.periods
    assert p.label == "2005-10..2006-09" and p.window_start == dt.date(2003, 10, 1)
    (warning,) = plan.warnings
    assert warning.startswith("the modelling window 2003-10..2006-09 begins before the data, "
                              "which begin 2005-04")


def test_a_thin_month_in_the_window_is_a_warning():
    v = volume(change={"2008-06": (USUAL // 10, None, None)})
    plan = plan_periods(ROLLING, v)
    (warning,) = plan.warnings
    assert "2008-06 thin (30 spells, 10% of the usual 300)" in warning


# ---------------------------------------------------------------- five-year runs

def test_five_year_on_clean_data():
    plan = plan_periods(FIVE, volume())
    assert list(plan.periods) == five_year_periods(FIVE)
    assert [p.label for p in plan.periods] == ["2005/06", "2006/07", "2007/08", "2008/09", "2009/10",
                                               "2005/06-2009/10"]
    assert plan.warnings == () and plan.spells_after == 6 * USUAL


def test_five_year_with_a_financial_year_missing():
    v = volume(drop=tuple(f"{y:04d}-{m:02d}" for y, m in months("2007-04", "2008-03")))
    with pytest.raises(InputError, match=r"^five-year run: financial year 2007/08 has no data "
                                         r"\(months 2007-04..2008-03 missing\); the data cover "
                                         r"2005-04..2007-03, 2008-04..2010-09$"):
        plan_periods(FIVE, v)


def test_five_year_with_the_data_ending_in_february_2010():
    with pytest.raises(InputError, match=r"^five-year run: financial year 2009/10 is not fully covered "
                                         r"\(2010-03 missing\); the data cover 2005-04..2010-02$"):
        plan_periods(FIVE, volume(last="2010-02"))


def test_five_year_with_the_last_month_incomplete():
    v = volume(last="2010-03", change={"2010-03": (USUAL, None, 30)})
    with pytest.raises(InputError, match=r"2009/10 is not fully covered \(2010-03 incomplete "
                                         r"\(last discharge 2010-03-30\)\)"):
        plan_periods(FIVE, v)
    # the same month is complete when the data go on
    assert plan_periods(FIVE, volume(change={"2010-03": (USUAL, None, 30)})).periods


def test_five_year_with_a_thin_month_in_the_middle():
    v = volume(change={"2007-11": (USUAL // 10, None, None)})
    with pytest.raises(InputError, match=r"^five-year run: financial year 2007/08 is not fully covered "
                                         r"\(2007-11 thin \(30 spells, 10% of the usual 300\)\); "
                                         r"the data cover 2005-04..2007-10, 2007-12..2010-09$"):
        plan_periods(FIVE, v)


def test_five_year_names_every_bad_year():
    v = volume(last="2009-12", drop=("2006-05", "2006-06"))
    with pytest.raises(InputError) as err:
        plan_periods(FIVE, v)
    msg = str(err.value)
    assert "financial year 2006/07 is not fully covered (2006-05..2006-06 missing)" in msg
    assert "financial year 2009/10 is not fully covered (2010-01..2010-03 missing)" in msg


def test_a_small_extract_may_start_and_end_a_few_days_in_by_chance():
    """About 37 discharges a month: no discharge on the 1st or 2nd of a complete month is ordinary."""
    rows = []
    for i in range(month_index(2005, 4), month_index(2010, 9) + 1):
        y, m = i // 12, i % 12 + 1
        rows.append((y, m, 37, dt.date(y, m, 3), month_end(y, m) - dt.timedelta(days=3)))
    v = MonthlyVolume.from_frame(pd.DataFrame(rows, columns=list(MONTHLY_VOLUME_COLUMNS)))
    assert v.months[0].edge_slack_days == 4
    plan = plan_periods(MethodConfig(five_year=True), v)
    assert len(plan.periods) == 6
    assert end_of(v) == ("2010-09", 0)
    # a gap of a week at 37 a month is not chance: the extract ends early
    late = MonthlyVolume.from_frame(pd.DataFrame(rows[:-1] + [(2010, 9, 37, dt.date(2010, 9, 3),
                                                              dt.date(2010, 9, 22))],
                                                 columns=list(MONTHLY_VOLUME_COLUMNS)))
    assert end_of(late) == ("2010-08", 37)
