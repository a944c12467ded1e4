"""China's working days for the hub's deadlines: default ratings now, bad-review handling later.

Why one place: "5 working days" (德宏, 第九师 default ratings; the "2、5、15" bad-review limits) means
the official calendar with its holidays and make-up working days (调休), which changes every
year by State Council notice. Each year is answered from the first source that has it:

1. an operator-loaded holiday file for that year (`hub.holiday_file`; it overrides the rest);
2. the `chinese-calendar` package, for the years it covers (1.11: 2004–2026);
3. Monday–Friday. This is a guess, so it is never silent: the year is recorded
   (`uncovered_years`, `fallback_counts`), logged once as a warning, and `on_uncovered(year)` is
   called once per year so the hub can raise its alert. A date outside every source never raises.

Dates are local dates in China (the caller converts instants; `hub.default_rules` does).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Literal

import chinese_calendar

from hub.holiday_file import HolidayFileError, HolidayYear, load_holiday_dir, parse_holiday_year

log = logging.getLogger(__name__)

Source = Literal["file", "chinese_calendar", "weekdays"]
PACKAGE_DIR = "holidays"  # hub/holidays/YYYY.json, shipped with the hub (package data)
_DAY = timedelta(days=1)


class WorkCalendar:
    """Working days from holiday files, then `chinese-calendar`, then Monday–Friday (recorded).

    Safe to share between threads. `on_uncovered(year)` runs at most once per year, the first time
    a date of that year is answered by the Monday–Friday fallback; an exception in it is logged
    and does not reach the caller.
    """

    def __init__(self, years: Iterable[HolidayYear] = (), *,
                 on_uncovered: Callable[[int], None] | None = None) -> None:
        self._files: dict[int, HolidayYear] = {}
        for y in years:
            if y.year in self._files:
                raise HolidayFileError(f"year {y.year}", ["given twice"])
            self._files[y.year] = y
        self._on_uncovered = on_uncovered
        self._sources: dict[int, Source] = {}
        self._fallbacks: Counter[int] = Counter()
        self._lock = threading.Lock()

    @classmethod
    def load(cls, holiday_dir: str | Path | None = None, *,
             on_uncovered: Callable[[int], None] | None = None) -> WorkCalendar:
        """The hub's calendar: files shipped in `hub/holidays/`, then `holiday_dir`'s (they win).

        A bad file raises `HolidayFileError` (start-up should fail loudly, not run on a guess).
        """
        years = packaged_years()
        if holiday_dir is not None:
            years.update(load_holiday_dir(holiday_dir))
        return cls(years.values(), on_uncovered=on_uncovered)

    # -- what covers a year ------------------------------------------------------------------

    def source(self, year: int) -> Source:
        """Which source answers for `year`. Asking records nothing."""
        found = self._sources.get(year)
        if found is None:
            if year in self._files:
                found = "file"
            elif _package_covers(year):
                found = "chinese_calendar"
            else:
                found = "weekdays"
            self._sources[year] = found
        return found

    def file_years(self) -> tuple[int, ...]:
        """The years given by holiday files, ascending."""
        return tuple(sorted(self._files))

    def missing_years(self, start: date, end: date) -> list[int]:
        """Years from `start` to `end` (inclusive) with no data. Records nothing: for an early
        alert ("2027 begins in 40 days and no holiday file is loaded")."""
        _check_day(start, "start")
        _check_day(end, "end")
        return [y for y in range(start.year, end.year + 1) if self.source(y) == "weekdays"]

    def uncovered_years(self) -> tuple[int, ...]:
        """The years some answer was guessed Monday–Friday for, ascending."""
        with self._lock:
            return tuple(sorted(self._fallbacks))

    def fallback_counts(self) -> dict[int, int]:
        """How many dates of each uncovered year were answered by the fallback."""
        with self._lock:
            return dict(self._fallbacks)

    # -- working days ------------------------------------------------------------------------

    def is_workday(self, day: date) -> bool:
        """True if `day` is a working day in China."""
        _check_day(day, "day")
        src = self.source(day.year)
        if src == "file":
            return self._files[day.year].is_workday(day)
        if src == "chinese_calendar":
            try:
                return bool(chinese_calendar.is_workday(day))
            except NotImplementedError:  # its way of saying "no data for this year"
                self._sources[day.year] = "weekdays"
        return self._guess(day)

    def next_workday(self, day: date) -> date:
        """`day` itself if it is a working day, else the first working day after it."""
        while not self.is_workday(day):
            day += _DAY
        return day

    def add_workdays(self, start: date, n: int) -> date:
        """The `n`-th working day after `start` (`start` itself never counts, working day or
        not), n >= 1. "Within n working days of D" ends with the day this returns for D."""
        _check_day(start, "start")
        if type(n) is not int or n < 1:
            raise ValueError(f"n must be an integer >= 1, not {n!r}")
        day = start
        while n:
            day += _DAY
            if self.is_workday(day):
                n -= 1
        return day

    def workdays_between(self, start: date, end: date) -> int:
        """Working days in (start, end]: after `start`, up to and including `end`; negative when
        `end` is before `start`. So `workdays_between(d, add_workdays(d, n)) == n`."""
        _check_day(start, "start")
        _check_day(end, "end")
        if end < start:
            return -self.workdays_between(end, start)
        count = 0
        day = start + _DAY
        while day <= end:
            count += self.is_workday(day)
            day += _DAY
        return count

    def _guess(self, day: date) -> bool:
        with self._lock:
            first = day.year not in self._fallbacks
            self._fallbacks[day.year] += 1
        if first:
            log.warning("no holiday data for %d: counting Monday-Friday as working days until a "
                        "holiday file %d.json is loaded (docs/hub.md)", day.year, day.year)
            if self._on_uncovered is not None:
                try:
                    self._on_uncovered(day.year)
                except Exception:
                    log.exception("on_uncovered(%d) failed; the year stays in uncovered_years()",
                                  day.year)
        return day.weekday() < 5


def packaged_years() -> dict[int, HolidayYear]:
    """The holiday files shipped in the hub package (`hub/holidays/YYYY.json`), by year."""
    folder = resources.files("hub").joinpath(PACKAGE_DIR)
    years: dict[int, HolidayYear] = {}
    if not folder.is_dir():
        return years
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".json"):
            continue
        year = parse_holiday_year(entry.read_bytes(), origin=f"hub/{PACKAGE_DIR}/{entry.name}")
        if entry.name != f"{year.year}.json":
            raise HolidayFileError(f"hub/{PACKAGE_DIR}/{entry.name}",
                                   [f"holds year {year.year}, so it must be named {year.year}.json"])
        years[year.year] = year
    return years


def _package_covers(year: int) -> bool:
    try:
        chinese_calendar.is_workday(date(year, 1, 1))
    except NotImplementedError:
        return False
    return True


def _check_day(day: object, name: str) -> None:
    # A datetime is a date too, but which day it is depends on its zone: convert first.
    if isinstance(day, datetime) or not isinstance(day, date):
        raise TypeError(f"{name} must be a datetime.date (a local date in China), "
                        f"not {type(day).__name__}")
