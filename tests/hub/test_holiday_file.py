"""The holiday-file parser: good files round-trip, every kind of bad file is refused with its
place named, and no input makes it raise anything but HolidayFileError."""

from __future__ import annotations

import io
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hub.holiday_file import (
    Holiday,
    HolidayFileError,
    HolidayYear,
    load_holiday_dir,
    load_holiday_file,
    main,
    parse_holiday_year,
)

FIXTURE = Path(__file__).parent / "holiday_fixtures" / "2027.json"


def good_doc() -> dict[str, Any]:
    return {
        "year": 2026,
        "source": "国务院办公厅关于2026年部分节假日安排的通知 (2025-11-04)",
        "holidays": [
            {"name": "元旦", "dates": ["2026-01-01", "2026-01-02", "2026-01-03"]},
            {"name": "春节", "dates": [f"2026-02-{d}" for d in range(15, 24)]},
        ],
        "workdays": ["2026-01-04", "2026-02-14", "2026-02-28"],
    }


def problems_of(doc: Any) -> list[str]:
    with pytest.raises(HolidayFileError) as e:
        parse_holiday_year(json.dumps(doc, ensure_ascii=False), origin="t.json")
    assert str(e.value).startswith("t.json: ")
    return e.value.problems


def test_a_good_file_parses() -> None:
    year = parse_holiday_year(json.dumps(good_doc()))
    assert year.year == 2026
    assert [h.name for h in year.holidays] == ["元旦", "春节"]
    assert year.holidays[1].dates[0] == date(2026, 2, 15)
    assert len(year.rest_days) == 12
    assert year.workdays == {date(2026, 1, 4), date(2026, 2, 14), date(2026, 2, 28)}
    assert year.holiday_name(date(2026, 2, 17)) == "春节"
    assert year.holiday_name(date(2026, 2, 24)) is None
    assert year.is_workday(date(2026, 2, 14)) and not year.is_workday(date(2026, 2, 16))


def test_the_fixture_is_labelled_as_a_test() -> None:
    year = load_holiday_file(FIXTURE)
    assert "TEST FIXTURE" in year.source and "NOT the official" in year.source


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d.update(extra=1), "unknown keys ['extra']"),
    (lambda d: d["holidays"][0].update(note="x"), "holidays[0]: unknown keys ['note']"),
    (lambda d: d.pop("workdays"), "missing keys ['workdays']"),
    (lambda d: d.update(year="2026"), 'year: must be an integer'),
    (lambda d: d.update(year=True), "year: must be an integer"),
    (lambda d: d.update(source="  "), "source: must name the notice"),
    (lambda d: d.update(holidays=[]), "holidays: must be a non-empty list"),
    (lambda d: d["holidays"][0].update(name=""), "holidays[0].name: must be non-empty"),
    (lambda d: d["holidays"][0].update(dates=[]), "holidays[0].dates: must be a non-empty list"),
    (lambda d: d["holidays"][1]["dates"].append("2027-02-24"),
     "holidays[1].dates[9]: 2027-02-24 is not in 2026"),
    (lambda d: d["workdays"].append("2025-12-28"), "workdays[3]: 2025-12-28 is not in 2026"),
    (lambda d: d["holidays"][0]["dates"].append("2026-02-30"),
     "holidays[0].dates[3]: '2026-02-30' is no such date"),
    (lambda d: d["holidays"][0]["dates"].append("20260105"),
     'holidays[0].dates[3]: must be a date written YYYY-MM-DD, not "20260105"'),
    (lambda d: d["holidays"][0]["dates"].append(20260105), "holidays[0].dates[3]: must be a date"),
    (lambda d: d["workdays"].append("2026-02-16"),
     "workdays[3]: 2026-02-16 is listed twice (also at holidays[1].dates[1])"),
    (lambda d: d["holidays"][1]["dates"].append("2026-01-02"),
     "holidays[1].dates[9]: 2026-01-02 is listed twice (also at holidays[0].dates[1])"),
    (lambda d: d["workdays"].append("2026-01-04"), "workdays[3]: 2026-01-04 is listed twice"),
    (lambda d: d["workdays"].append("2026-02-27"),
     "workdays[3]: 2026-02-27 is a Friday: a make-up working day (调休上班) is a Saturday or Sunday"),
])
def test_each_kind_of_bad_file_is_refused_with_its_place(mutate: Any, expected: str) -> None:
    doc = good_doc()
    mutate(doc)
    problems = problems_of(doc)
    assert any(expected in p for p in problems), problems


def test_every_problem_is_reported_at_once() -> None:
    doc = good_doc()
    doc["extra"] = 1
    doc["workdays"] = ["2026-03-02", "2025-01-01"]
    problems = problems_of(doc)
    assert len(problems) == 3, problems


@pytest.mark.parametrize("text, expected", [
    ("", "not JSON"),
    ("{", "not JSON"),
    ("[]", "must hold a JSON object, not a list"),
    ('"2027"', "must hold a JSON object, not text"),
    ('{"year": 2026, "year": 2027}', "key 'year' appears twice"),
    ('{"year": ' + "9" * 5000 + "}", "not usable JSON"),
    ("[" * 20_000, "nested too deeply"),
])
def test_unreadable_text_is_refused(text: str, expected: str) -> None:
    with pytest.raises(HolidayFileError) as e:
        parse_holiday_year(text)
    assert expected in str(e.value)


def test_bytes_must_be_utf8_and_a_bom_is_accepted() -> None:
    text = json.dumps(good_doc(), ensure_ascii=False)
    assert parse_holiday_year(b"\xef\xbb\xbf" + text.encode()).year == 2026
    with pytest.raises(HolidayFileError, match="not UTF-8"):
        parse_holiday_year(text.encode("gb18030"))
    with pytest.raises(HolidayFileError, match="larger than"):
        parse_holiday_year(b" " * 70_000)
    with pytest.raises(HolidayFileError, match="larger than"):
        parse_holiday_year(text + " " * 70_000)


def test_load_holiday_dir_checks_names_and_reports_every_bad_file(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("ignored", encoding="utf-8")
    (tmp_path / "2026.json").write_text(json.dumps(good_doc()), encoding="utf-8")
    assert list(load_holiday_dir(tmp_path)) == [2026]
    (tmp_path / "2028.json").write_text(json.dumps(good_doc()), encoding="utf-8")  # holds 2026
    (tmp_path / "2029.json").write_text("{", encoding="utf-8")
    with pytest.raises(HolidayFileError) as e:
        load_holiday_dir(tmp_path)
    assert len(e.value.problems) == 2
    assert "must be named 2026.json" in e.value.problems[0]
    assert "2029.json: not JSON" in e.value.problems[1]


def test_the_check_command(tmp_path: Path) -> None:
    out = io.StringIO()
    assert main([str(FIXTURE)], out) == 0
    assert "OK " in out.getvalue()
    assert "TEST 春节: 2027-02-05..2027-02-12 (8 days)" in out.getvalue()
    assert "make-up working days: 2027-02-20 (Sat)" in out.getvalue()
    bad = tmp_path / "2026.json"
    bad.write_text('{"year": 2026}', encoding="utf-8")
    out = io.StringIO()
    assert main([str(FIXTURE), str(bad)], out) == 1
    assert f"BAD {bad}" in out.getvalue() and "missing keys" in out.getvalue()
    assert main([], io.StringIO()) == 2


# -- properties -----------------------------------------------------------------------------

@st.composite
def holiday_years(draw: st.DrawFn) -> HolidayYear:
    """A valid year: some days off grouped into named holidays, weekend make-up days apart."""
    year = draw(st.integers(1949, 2199))
    first = date(year, 1, 1)
    length = (date(year + 1, 1, 1) - first).days
    offsets = draw(st.lists(st.integers(0, length - 1), min_size=1, max_size=40, unique=True))
    off = [first + timedelta(days=i) for i in offsets]
    cuts = sorted(draw(st.lists(st.integers(1, len(off)), max_size=5, unique=True)))
    groups = [off[a:b] for a, b in zip([0, *cuts], [*cuts, len(off)], strict=True) if off[a:b]]
    names = draw(st.lists(st.text(min_size=1, max_size=20).filter(str.strip),
                          min_size=len(groups), max_size=len(groups)))
    weekend = [first + timedelta(days=i) for i in range(length)
               if (first + timedelta(days=i)).weekday() >= 5 and first + timedelta(days=i) not in off]
    work = draw(st.lists(st.sampled_from(weekend), max_size=6, unique=True))
    source = draw(st.text(min_size=1, max_size=80).filter(str.strip))
    return HolidayYear(year=year, source=source.strip(),
                       holidays=tuple(Holiday(n.strip(), tuple(g)) for n, g in zip(names, groups, strict=True)),
                       workdays=frozenset(work))


@settings(max_examples=200, deadline=None)
@given(holiday_years())
def test_a_good_year_round_trips(year: HolidayYear) -> None:
    assert parse_holiday_year(year.to_json()) == year
    assert parse_holiday_year(year.to_json().encode("utf-8")) == year


MUTATIONS = ["wrong_year", "in_both", "weekday_makeup", "unknown_key", "bad_date", "drop_key",
             "repeat"]


@settings(max_examples=300, deadline=None)
@given(year=holiday_years(), mutation=st.sampled_from(MUTATIONS), data=st.data())
def test_a_broken_year_is_refused_naming_the_fault(year: HolidayYear, mutation: str,
                                                   data: st.DataObject) -> None:
    doc = json.loads(year.to_json())
    dates = doc["holidays"][0]["dates"]
    if mutation == "wrong_year":
        assume(year.year < 2199)
        dates.append(f"{year.year + 1}-06-01")
        expected = f"is not in {year.year}"
    elif mutation == "in_both":
        doc["workdays"].append(dates[0])
        expected = "is listed twice"
    elif mutation == "weekday_makeup":
        first = date(year.year, 1, 1)
        candidates = [first + timedelta(days=i) for i in range(364)
                      if (first + timedelta(days=i)).weekday() < 5
                      and first + timedelta(days=i) not in year.rest_days]
        doc["workdays"].append(data.draw(st.sampled_from(candidates)).isoformat())
        expected = "is a Saturday or Sunday"
    elif mutation == "unknown_key":
        key = data.draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in doc))
        doc[key] = None
        expected = "unknown keys"
    elif mutation == "bad_date":
        dates.append(data.draw(st.sampled_from(
            [f"{year.year}-02-30", f"{year.year}-13-01", f"{year.year}/01/05", "", "2026-1-5"])))
        expected = "date"
    elif mutation == "drop_key":
        doc.pop(data.draw(st.sampled_from(["year", "source", "holidays", "workdays"])))
        expected = "missing keys"
    else:  # the same date twice in one holiday
        dates.append(dates[0])
        expected = "is listed twice"
    problems = problems_of(doc)
    assert any(expected in p for p in problems), (mutation, problems)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
NEAR_VALID = st.fixed_dictionaries(
    {},
    optional={"year": st.integers(1900, 2300) | JSON, "source": st.text(max_size=5) | JSON,
              "holidays": st.lists(st.fixed_dictionaries({}, optional={
                  "name": st.text(max_size=4) | JSON,
                  "dates": st.lists(st.dates().map(date.isoformat) | JSON, max_size=4)}), max_size=3)
              | JSON,
              "workdays": st.lists(st.dates().map(date.isoformat) | JSON, max_size=4) | JSON},
)


@settings(max_examples=500, deadline=None)
@given(st.one_of(JSON, NEAR_VALID))
def test_any_json_is_a_year_or_a_holiday_file_error(doc: Any) -> None:
    try:
        year = parse_holiday_year(json.dumps(doc))
    except HolidayFileError as e:
        assert e.problems and all(isinstance(p, str) and p for p in e.problems)
    else:
        assert parse_holiday_year(year.to_json()) == year


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_any_text_is_a_year_or_a_holiday_file_error(raw: bytes | str) -> None:
    try:
        parse_holiday_year(raw)
    except HolidayFileError:
        pass
