"""WorkCalendar: the official 2025 and 2026 schedules, holiday files over the package, and the
Monday–Friday fallback that is recorded, reported once, and never raises."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.holiday_file import HolidayFileError, load_holiday_file, parse_holiday_year
from hub.workdays import WorkCalendar, packaged_years

FIXTURES = Path(__file__).parent / "holiday_fixtures"  # 2027.json: invented, labelled TEST

# The State Council's notices, as published (光明网/新华社 copies):
# 2025: 国办发明电〔2024〕12号, 2024-11-12.  2026: notice of 2025-11-04.
# (rest-day ranges, make-up working days); a range of another holiday that falls within three
# weeks is listed too (2026: 中秋节 9-25..9-27 just before 国庆节).
NOTICES = {
    "2025 春节": ([(date(2025, 1, 28), date(2025, 2, 4))], [date(2025, 1, 26), date(2025, 2, 8)]),
    "2025 国庆节、中秋节": ([(date(2025, 10, 1), date(2025, 10, 8))],
                     [date(2025, 9, 28), date(2025, 10, 11)]),
    "2026 元旦": ([(date(2026, 1, 1), date(2026, 1, 3))], [date(2026, 1, 4)]),
    "2026 春节": ([(date(2026, 2, 15), date(2026, 2, 23))], [date(2026, 2, 14), date(2026, 2, 28)]),
    "2026 国庆节": ([(date(2026, 10, 1), date(2026, 10, 7)), (date(2026, 9, 25), date(2026, 9, 27))],
                 [date(2026, 9, 20), date(2026, 10, 10)]),
}


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


@pytest.fixture
def cal() -> WorkCalendar:
    return WorkCalendar()


@pytest.mark.parametrize("holiday", sorted(NOTICES))
def test_every_day_around_a_holiday_matches_the_notice(cal: WorkCalendar, holiday: str) -> None:
    ranges, makeup = NOTICES[holiday]
    first, last = ranges[0]
    rest = {d for a, b in ranges for d in _days(a, b)}
    # three weeks either side covers the make-up days and the plain weeks around them
    for day in _days(first - timedelta(days=21), last + timedelta(days=21)):
        expected = day in makeup or (day.weekday() < 5 and day not in rest)
        assert cal.is_workday(day) is expected, day
    assert all(d.weekday() >= 5 for d in makeup)  # the notice's make-up days are weekend days
    assert cal.source(first.year) == "chinese_calendar"
    assert cal.uncovered_years() == ()


def test_add_workdays_across_the_2025_spring_festival(cal: WorkCalendar) -> None:
    fri = date(2025, 1, 24)
    assert [cal.add_workdays(fri, n) for n in range(1, 7)] == [
        date(2025, 1, 26),  # Sunday, make-up working day
        date(2025, 1, 27),
        date(2025, 2, 5),  # the first day back after 1-28..2-4
        date(2025, 2, 6),
        date(2025, 2, 7),
        date(2025, 2, 8),  # Saturday, make-up working day
    ]


def test_add_workdays_from_a_holiday_counts_from_the_next_working_day(cal: WorkCalendar) -> None:
    assert cal.add_workdays(date(2026, 10, 3), 1) == date(2026, 10, 8)
    assert cal.add_workdays(date(2026, 10, 3), 3) == date(2026, 10, 10)  # Saturday, make-up
    assert cal.add_workdays(date(2026, 10, 3), 4) == date(2026, 10, 12)


def test_next_workday(cal: WorkCalendar) -> None:
    assert cal.next_workday(date(2026, 2, 14)) == date(2026, 2, 14)  # make-up Saturday
    assert cal.next_workday(date(2026, 2, 15)) == date(2026, 2, 24)
    assert cal.next_workday(date(2026, 2, 24)) == date(2026, 2, 24)


def test_workdays_between(cal: WorkCalendar) -> None:
    # (2025-09-26, 2025-10-12]: 9-28 Sun, 9-29, 9-30, 10-9, 10-10, 10-11 Sat
    assert cal.workdays_between(date(2025, 9, 26), date(2025, 10, 12)) == 6
    assert cal.workdays_between(date(2025, 10, 12), date(2025, 9, 26)) == -6
    assert cal.workdays_between(date(2025, 10, 1), date(2025, 10, 1)) == 0
    # a whole year: 2026 has 365 days, 104 weekend days, 19 weekday holidays, 6 make-up days
    assert cal.workdays_between(date(2025, 12, 31), date(2026, 12, 31)) == 365 - 104 - 19 + 6


@pytest.mark.parametrize("n", [0, -1, 1.0, True])
def test_add_workdays_refuses_a_count_below_one(cal: WorkCalendar, n: object) -> None:
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        cal.add_workdays(date(2026, 1, 5), n)  # type: ignore[arg-type]


def test_a_datetime_is_refused_because_its_day_depends_on_its_zone(cal: WorkCalendar) -> None:
    with pytest.raises(TypeError, match="local date in China"):
        cal.is_workday(datetime(2026, 1, 5, 23, 0))
    with pytest.raises(TypeError):
        cal.add_workdays("2026-01-05", 1)  # type: ignore[arg-type]


# -- no data: Monday–Friday, recorded and reported ---------------------------------------------

def test_a_2027_date_without_a_file_falls_back_to_weekdays_and_is_reported(
        caplog: pytest.LogCaptureFixture) -> None:
    seen: list[int] = []
    cal = WorkCalendar(on_uncovered=seen.append)
    assert cal.source(2027) == "weekdays"
    assert cal.uncovered_years() == ()  # asking about coverage records nothing
    with caplog.at_level(logging.WARNING, logger="hub.workdays"):
        assert cal.is_workday(date(2027, 1, 1)) is True  # a Friday: the guess, whatever the notice says
        assert cal.is_workday(date(2027, 1, 2)) is False
        assert cal.add_workdays(date(2026, 12, 31), 2) == date(2027, 1, 4)
    assert cal.uncovered_years() == (2027,)
    assert seen == [2027]  # once per year, however many dates
    assert cal.fallback_counts()[2027] >= 5
    warnings = [r for r in caplog.records if "no holiday data for 2027" in r.getMessage()]
    assert len(warnings) == 1


def test_years_before_the_package_fall_back_too_and_each_year_is_reported_once() -> None:
    seen: list[int] = []
    cal = WorkCalendar(on_uncovered=seen.append)
    assert cal.is_workday(date(2003, 12, 31)) is True
    assert cal.is_workday(date(2004, 1, 1)) is False  # 2004 is the package's first year: 元旦
    assert cal.is_workday(date(2199, 6, 1)) is False  # a Saturday
    assert cal.is_workday(date(2028, 6, 1)) is True
    assert seen == [2003, 2199, 2028]
    assert cal.uncovered_years() == (2003, 2028, 2199)


def test_a_failing_alert_callback_does_not_reach_the_caller(caplog: pytest.LogCaptureFixture) -> None:
    def broken(year: int) -> None:
        raise RuntimeError("alert sink down")

    cal = WorkCalendar(on_uncovered=broken)
    with caplog.at_level(logging.ERROR, logger="hub.workdays"):
        assert cal.add_workdays(date(2027, 3, 5), 1) == date(2027, 3, 8)
    assert cal.uncovered_years() == (2027,)
    assert any("on_uncovered(2027) failed" in r.getMessage() for r in caplog.records)


def test_missing_years_looks_ahead_without_recording(cal: WorkCalendar) -> None:
    assert cal.missing_years(date(2026, 11, 21), date(2027, 1, 31)) == [2027]
    assert cal.missing_years(date(2026, 1, 1), date(2026, 12, 31)) == []
    assert cal.uncovered_years() == ()


# -- holiday files --------------------------------------------------------------------------

def test_a_loaded_2027_file_is_used_and_nothing_is_uncovered() -> None:
    seen: list[int] = []
    cal = WorkCalendar.load(FIXTURES, on_uncovered=seen.append)
    assert cal.source(2027) == "file"
    assert cal.file_years() == (2027,)
    assert cal.is_workday(date(2027, 1, 1)) is False  # the fixture's 元旦
    assert cal.is_workday(date(2027, 2, 8)) is False  # a Monday inside the fixture's 春节
    assert cal.is_workday(date(2027, 2, 20)) is True  # the fixture's make-up Saturday
    assert cal.is_workday(date(2027, 2, 21)) is False  # a plain Sunday
    assert cal.is_workday(date(2027, 2, 15)) is True  # a plain Monday
    assert cal.add_workdays(date(2027, 2, 4), 1) == date(2027, 2, 15)
    assert cal.uncovered_years() == () and seen == []
    assert cal.source(2026) == "chinese_calendar"  # the file adds a year, it replaces no other


def test_a_file_overrides_the_package_for_its_year() -> None:
    # An operator's correction for 2026: 2026-03-02 (a Monday) off, 2026-03-07 (a Saturday) worked,
    # and no 春节 at all. The file replaces the year whole: what it does not list is a plain day.
    fixed = parse_holiday_year("""{"year": 2026, "source": "test correction",
        "holidays": [{"name": "TEST", "dates": ["2026-03-02"]}], "workdays": ["2026-03-07"]}""")
    cal = WorkCalendar([fixed])
    assert cal.source(2026) == "file"
    assert cal.is_workday(date(2026, 3, 2)) is False
    assert cal.is_workday(date(2026, 3, 7)) is True
    assert cal.is_workday(date(2026, 2, 16)) is True  # the package says 春节; the file wins
    assert WorkCalendar().is_workday(date(2026, 2, 16)) is False


def test_the_operator_folder_wins_over_the_shipped_files(tmp_path: Path) -> None:
    text = (FIXTURES / "2027.json").read_text(encoding="utf-8").replace(
        '"workdays": ["2027-02-20"]', '"workdays": []')
    (tmp_path / "2027.json").write_text(text, encoding="utf-8")
    cal = WorkCalendar.load(tmp_path)
    assert cal.is_workday(date(2027, 2, 20)) is False


def test_a_year_given_twice_is_refused() -> None:
    year = load_holiday_file(FIXTURES / "2027.json")
    with pytest.raises(HolidayFileError, match="given twice"):
        WorkCalendar([year, year])


def test_a_bad_operator_folder_stops_the_load(tmp_path: Path) -> None:
    (tmp_path / "2027.json").write_text('{"year": 2027}', encoding="utf-8")
    with pytest.raises(HolidayFileError, match="missing keys"):
        WorkCalendar.load(tmp_path)
    with pytest.raises(HolidayFileError, match="not a folder"):
        WorkCalendar.load(tmp_path / "nope")


def test_shipped_holiday_files_are_valid_and_cite_the_notice() -> None:
    # hub/holidays/ ships a year only once the State Council's notice is out (none for 2027 yet).
    folder = Path(__file__).resolve().parents[2] / "hub" / "holidays"
    assert (folder / "README.md").is_file()
    shipped = packaged_years()
    assert sorted(shipped) == sorted(int(p.stem) for p in folder.glob("*.json"))
    for year in shipped.values():
        assert "国务院办公厅" in year.source and "TEST" not in year.source


# -- properties -----------------------------------------------------------------------------

DAYS = st.dates(min_value=date(2003, 6, 1), max_value=date(2028, 6, 30))
SHARED = WorkCalendar.load(FIXTURES)  # 2004–2026 package, 2027 fixture, 2003/2028 fallback


@settings(max_examples=300, deadline=None)
@given(start=DAYS, n=st.integers(1, 40))
def test_add_workdays_lands_on_the_nth_working_day(start: date, n: int) -> None:
    end = SHARED.add_workdays(start, n)
    assert end > start
    assert SHARED.is_workday(end)
    assert SHARED.workdays_between(start, end) == n
    assert SHARED.workdays_between(start, end - timedelta(days=1)) == n - 1


# 50 examples: each walks three spans of up to 25 years day by day (about 0.12 s of CPU; 200 took
# 25 s), and of 50, 12 to 19 reach a fallback year (2003 or 2028) in five runs of the strategy.
@settings(max_examples=50, deadline=None)
@given(a=DAYS, b=DAYS, c=DAYS)
def test_workdays_between_adds_up(a: date, b: date, c: date) -> None:
    assert SHARED.workdays_between(a, b) + SHARED.workdays_between(b, c) == SHARED.workdays_between(a, c)
