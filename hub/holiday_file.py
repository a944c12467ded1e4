"""One year of China's official holiday schedule, as a JSON file an operator loads.

Why: the `chinese-calendar` package only knows the years up to its release (1.11: 2004–2026) and
the State Council publishes the next year's schedule each November (国务院办公厅关于YYYY年部分
节假日安排的通知), weeks before it is needed. The hub cannot wait for a package release, so an
operator types the notice into one file per year; this module parses and checks such a file and
says exactly what is wrong with a bad one (docs/hub.md, "Working days and default ratings").

The format (all four keys required, no others)::

    {
      "year": 2027,
      "source": "国务院办公厅关于2027年部分节假日安排的通知（国办发明电〔2026〕N号），URL",
      "holidays": [{"name": "春节", "dates": ["2027-02-..", ...]}, ...],
      "workdays": ["2027-02-.."]
    }

`holidays` lists every day off of each festival as the notice states it, weekend days inside the
range included; `workdays` the make-up working days (调休上班), each a Saturday or Sunday.
Any other day is a working day Monday to Friday and a rest day at the weekend.

`python -m hub.holiday_file FILE...` checks files before they are deployed.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

MIN_YEAR = 1949  # the first national holiday rules (政务院, 1949); anything earlier is a typo
MAX_YEAR = 2199  # well past any deployment; a larger number is a typo too
MAX_FILE_BYTES = 64 * 1024  # a real year is ~1 KiB; a bigger file is not a holiday schedule
MAX_NAME_CHARS = 64
_KEYS = ("year", "source", "holidays", "workdays")
_HOLIDAY_KEYS = ("name", "dates")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)  # fromisoformat alone takes 20270101 too


class HolidayFileError(ValueError):
    """A holiday file that cannot be used; `problems` lists every reason, each naming its place."""

    def __init__(self, origin: str, problems: list[str]) -> None:
        self.origin = origin
        self.problems = problems
        super().__init__(f"{origin}: " + "; ".join(problems))


@dataclass(frozen=True)
class Holiday:
    """One festival's days off as the notice gives them (weekend days in the range included)."""

    name: str
    dates: tuple[date, ...]


@dataclass(frozen=True)
class HolidayYear:
    """A checked year: days off by festival and the make-up working days."""

    year: int
    source: str
    holidays: tuple[Holiday, ...]
    workdays: frozenset[date]

    @property
    def rest_days(self) -> frozenset[date]:
        """Every day off listed under a holiday."""
        return frozenset(d for h in self.holidays for d in h.dates)

    def is_workday(self, day: date) -> bool:
        """True for a make-up working day or a weekday that is no holiday. `day` in `year`."""
        if day.year != self.year:
            raise ValueError(f"{day} is not in {self.year}")
        if day in self.workdays:
            return True
        return day.weekday() < 5 and day not in self.rest_days

    def holiday_name(self, day: date) -> str | None:
        """The festival `day` is a day off of, or None."""
        for h in self.holidays:
            if day in h.dates:
                return h.name
        return None

    def to_json(self) -> str:
        """The file text (UTF-8, Chinese unescaped); `parse_holiday_year` gives this year back."""
        doc = {
            "year": self.year,
            "source": self.source,
            "holidays": [{"name": h.name, "dates": [d.isoformat() for d in h.dates]}
                         for h in self.holidays],
            "workdays": [d.isoformat() for d in sorted(self.workdays)],
        }
        return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


def parse_holiday_year(text: str | bytes, origin: str = "<holiday file>") -> HolidayYear:
    """Parse and check one year's file; raise `HolidayFileError` listing every problem.

    Checked: JSON object with exactly the keys `year`, `source`, `holidays`, `workdays`; `year` an
    integer in [MIN_YEAR, MAX_YEAR]; `source` and each holiday `name` non-empty text; dates written
    `YYYY-MM-DD`, real, and in `year`; no date twice (within or across the lists); every make-up
    working day a Saturday or Sunday; at least one holiday, each with at least one date.
    """
    if len(text) > MAX_FILE_BYTES:
        raise HolidayFileError(origin, [f"larger than {MAX_FILE_BYTES}: not a holiday schedule"])
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")  # a BOM, as some Windows editors write, is fine
        except UnicodeDecodeError as e:
            raise HolidayFileError(origin, [f"not UTF-8 ({e.reason} at byte {e.start})"]) from None
    try:
        doc = json.loads(text.removeprefix("\ufeff"), object_pairs_hook=_no_repeated_keys)
    except json.JSONDecodeError as e:
        problem = f"not JSON: {e.msg} at line {e.lineno} column {e.colno}"
        raise HolidayFileError(origin, [problem]) from None
    except _RepeatedKey as e:
        raise HolidayFileError(origin, [f"key {e.args[0]!r} appears twice in one object"]) from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise HolidayFileError(origin, [f"not usable JSON: {e}"]) from None
    except RecursionError:
        raise HolidayFileError(origin, ["not JSON: nested too deeply"]) from None
    return _check(doc, origin)


class _RepeatedKey(Exception):
    pass


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads keeps the last of two equal keys; in a schedule that would drop days unseen."""
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise _RepeatedKey(key)
        doc[key] = value
    return doc


def load_holiday_file(path: str | Path) -> HolidayYear:
    """Read and check one file; an unreadable file is a `HolidayFileError` too."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise HolidayFileError(str(path), [f"cannot read: {e.strerror or e}"]) from None
    return parse_holiday_year(data, origin=str(path))


def load_holiday_dir(folder: str | Path) -> dict[int, HolidayYear]:
    """Every `YYYY.json` in `folder` by year (other names are ignored: keep notes beside them).

    The name must match the year inside. All files are checked before any is returned: one bad file
    raises `HolidayFileError` with the problems of every bad file, so a deploy fails whole.
    A missing folder is an error (a typo in a setting must not look like "no holidays").
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise HolidayFileError(str(folder), ["not a folder"])
    years: dict[int, HolidayYear] = {}
    problems: list[str] = []
    for path in sorted(folder.glob("*.json")):
        try:
            year = load_holiday_file(path)
        except HolidayFileError as e:
            problems.append(str(e))
            continue
        if path.stem != str(year.year):
            problems.append(f"{path}: holds year {year.year}, so it must be named {year.year}.json")
            continue
        years[year.year] = year
    if problems:
        raise HolidayFileError(str(folder), problems)
    return years


def _check(doc: Any, origin: str) -> HolidayYear:
    if not isinstance(doc, dict):
        raise HolidayFileError(origin, [f"the file must hold a JSON object, not {_kind(doc)}"])
    problems: list[str] = []
    unknown = sorted(set(doc) - set(_KEYS))
    if unknown:
        problems.append(f"unknown keys {unknown} (allowed: {list(_KEYS)})")
    missing = [k for k in _KEYS if k not in doc]
    if missing:
        problems.append(f"missing keys {missing}")

    year = doc.get("year")
    if "year" in doc and not (type(year) is int and MIN_YEAR <= year <= MAX_YEAR):
        problems.append(f"year: must be an integer {MIN_YEAR}..{MAX_YEAR}, not {_show(year)}")
        year = None

    source = doc.get("source")
    if "source" in doc and not (isinstance(source, str) and source.strip()):
        problems.append("source: must name the notice (non-empty text), e.g. "
                        "国务院办公厅关于YYYY年部分节假日安排的通知 and its URL")

    seen: dict[date, str] = {}  # date -> where it was first listed
    holidays = _check_holidays(doc.get("holidays"), "holidays" in doc, year, seen, problems)
    workdays = _check_workdays(doc.get("workdays"), "workdays" in doc, year, seen, problems)
    if problems:
        raise HolidayFileError(origin, problems)
    assert isinstance(year, int) and isinstance(source, str)
    return HolidayYear(year=year, source=source.strip(), holidays=holidays, workdays=workdays)


def _check_holidays(value: Any, present: bool, year: int | None, seen: dict[date, str],
                    problems: list[str]) -> tuple[Holiday, ...]:
    if not present:
        return ()
    if not isinstance(value, list) or not value:
        problems.append(f"holidays: must be a non-empty list of {{name, dates}}, not {_show(value)}")
        return ()
    out: list[Holiday] = []
    for i, entry in enumerate(value):
        where = f"holidays[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be an object {{name, dates}}, not {_kind(entry)}")
            continue
        unknown = sorted(set(entry) - set(_HOLIDAY_KEYS))
        if unknown:
            problems.append(f"{where}: unknown keys {unknown} (allowed: {list(_HOLIDAY_KEYS)})")
        name = entry.get("name")
        if not (isinstance(name, str) and name.strip() and len(name) <= MAX_NAME_CHARS):
            problems.append(f"{where}.name: must be non-empty text of at most {MAX_NAME_CHARS} "
                            f"characters, not {_show(name)}")
            name = None
        dates = entry.get("dates")
        if not isinstance(dates, list) or not dates:
            problems.append(f"{where}.dates: must be a non-empty list of dates, not {_show(dates)}")
            continue
        days = _check_dates(dates, f"{where}.dates", year, seen, problems)
        if name is not None:
            out.append(Holiday(name=name.strip(), dates=tuple(days.values())))
    return tuple(out)


def _check_workdays(value: Any, present: bool, year: int | None, seen: dict[date, str],
                    problems: list[str]) -> frozenset[date]:
    if not present:
        return frozenset()
    if not isinstance(value, list):
        problems.append(f"workdays: must be a list of dates (may be empty), not {_show(value)}")
        return frozenset()
    days = _check_dates(value, "workdays", year, seen, problems)
    for i, day in days.items():
        if day.weekday() < 5:
            problems.append(f"workdays[{i}]: {day} is a {day:%A}: a make-up working day (调休上班) "
                            "is a Saturday or Sunday; a weekday is a working day already")
    return frozenset(days.values())


def _check_dates(values: list[Any], where: str, year: int | None, seen: dict[date, str],
                 problems: list[str]) -> dict[int, date]:
    """The good dates of `values` by index; every bad one adds a problem."""
    good: dict[int, date] = {}
    for i, raw in enumerate(values):
        place = f"{where}[{i}]"
        if not isinstance(raw, str) or not _DATE_RE.fullmatch(raw):
            problems.append(f"{place}: must be a date written YYYY-MM-DD, not {_show(raw)}")
            continue
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            problems.append(f"{place}: {raw!r} is no such date")
            continue
        if year is not None and day.year != year:
            problems.append(f"{place}: {raw} is not in {year}")
            continue
        if day in seen:
            problems.append(f"{place}: {raw} is listed twice (also at {seen[day]})")
            continue
        seen[day] = place
        good[i] = day
    return good


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "true/false",
            type(None): "null"}.get(type(value), "a number")


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if _jsonable(value) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def summary(year: HolidayYear) -> str:
    """A few lines an operator compares with the notice before deploying the file."""
    lines = [f"{year.year}: {year.source}"]
    for h in year.holidays:
        lines.append(f"  {h.name}: {_ranges(h.dates)} ({len(h.dates)} days)")
    lines.append("  make-up working days: " + (", ".join(
        f"{d} ({d:%a})" for d in sorted(year.workdays)) or "none"))
    return "\n".join(lines)


def _ranges(days: Iterable[date]) -> str:
    """'2027-02-06..2027-02-12, 2027-02-14' for a set of days."""
    runs: list[list[date]] = []
    for d in sorted(days):
        if runs and (d - runs[-1][-1]).days == 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}..{r[-1]}" for r in runs)


def main(argv: list[str] | None = None, out: Any = None) -> int:
    """`python -m hub.holiday_file FILE...`: check files; exit 0 when all are good, 1 otherwise."""
    out = out or sys.stdout
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m hub.holiday_file YYYY.json ...", file=out)
        return 2
    status = 0
    for p in paths:
        try:
            year = load_holiday_file(p)
        except HolidayFileError as e:
            print(f"BAD {e.origin}", file=out)
            for problem in e.problems:
                print(f"  - {problem}", file=out)
            status = 1
            continue
        if Path(p).stem != str(year.year):
            print(f"BAD {p}\n  - holds year {year.year}, so it must be named {year.year}.json", file=out)
            status = 1
            continue
        print(f"OK {p}\n{summary(year)}", file=out)
    return status


if __name__ == "__main__":
    sys.exit(main())
