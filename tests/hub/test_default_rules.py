"""Default-rating deadlines on real dates: the 2025 and 2026 Spring Festival and National Day
holidays with their make-up working days, and 2027 with and without a holiday file.

The rule under test (hub/default_rules.py): the finishing day D never counts; the last day is D+N
(calendar days) or the N-th working day after D; the default applies from 00:00 China time
the day after the last day."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.default_rules import (
    CHINA_TZ,
    PRESETS,
    DefaultRule,
    RuleError,
    default_deadline,
    default_due,
    service_day,
)
from hub.workdays import WorkCalendar

FIXTURES = Path(__file__).parent / "holiday_fixtures"  # 2027.json: invented, labelled TEST
CST = timezone(timedelta(hours=8))
FIVE_WORKING = DefaultRule("working_days", 5)
SEVEN_DAYS = DefaultRule("calendar_days", 7)


def at(y: int, m: int, d: int, hh: int = 10, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=CST)


def midnight(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=CST)


@pytest.fixture
def cal() -> WorkCalendar:
    return WorkCalendar()


def test_presets_follow_the_regions_documents() -> None:
    assert PRESETS["jilin"].rule == DefaultRule("calendar_days", 7)
    assert "7日内" in PRESETS["jilin"].source
    assert PRESETS["dehong"].rule == DefaultRule("working_days", 5)
    assert "5个工作日内" in PRESETS["dehong"].source
    assert PRESETS["xpcc-9th-division"].rule == DefaultRule("working_days", 5)
    assert "师办发〔2020〕8号" in PRESETS["xpcc-9th-division"].source
    assert all("基本满意" in p.source for p in PRESETS.values())


@pytest.mark.parametrize("finished, due, why", [
    # 2025 春节: off 1-28..2-4, make-up Sun 1-26 and Sat 2-8
    (at(2025, 1, 24, 16), midnight(2025, 2, 8), "1-26 Sun, 1-27, 2-5, 2-6, 2-7"),
    (at(2025, 1, 26), midnight(2025, 2, 9), "finished on the make-up Sunday: 1-27, 2-5..2-8"),
    (at(2025, 1, 29), midnight(2025, 2, 11), "finished on a holiday: 2-5, 2-6, 2-7, 2-8 Sat, 2-10"),
    (at(2025, 2, 4, 23, 59), midnight(2025, 2, 11), "last holiday, late evening: same as above"),
    # 2025 国庆节、中秋节: off 10-1..10-8, make-up Sun 9-28 and Sat 10-11
    (at(2025, 9, 26), midnight(2025, 10, 11), "9-28 Sun, 9-29, 9-30, 10-9, 10-10"),
    (at(2025, 9, 30, 17), midnight(2025, 10, 15), "10-9, 10-10, 10-11 Sat, 10-13, 10-14"),
    (at(2025, 10, 3), midnight(2025, 10, 15), "finished on a holiday: as from 9-30"),
    # 2026 春节: off 2-15..2-23, make-up Sat 2-14 and Sat 2-28
    (at(2026, 2, 13), midnight(2026, 2, 28), "2-14 Sat, 2-24, 2-25, 2-26, 2-27"),
    (at(2026, 2, 20), midnight(2026, 3, 1), "finished on a holiday: 2-24..2-27, 2-28 Sat"),
    # 2026 国庆节: off 10-1..10-7, make-up Sun 9-20 and Sat 10-10
    (at(2026, 9, 18), midnight(2026, 9, 25), "9-20 Sun, 9-21..9-24"),
    (at(2026, 9, 30), midnight(2026, 10, 14), "10-8, 10-9, 10-10 Sat, 10-12, 10-13"),
])
def test_five_working_days_around_the_holidays(cal: WorkCalendar, finished: datetime,
                                               due: datetime, why: str) -> None:
    deadline = default_deadline(finished, FIVE_WORKING, cal)
    assert deadline.due == due, why
    assert deadline.last_day == (due - timedelta(days=1)).date()
    assert deadline.estimated is False
    assert default_due(finished, FIVE_WORKING, cal) == due
    assert cal.uncovered_years() == ()


def test_in_time_means_before_due(cal: WorkCalendar) -> None:
    due = default_due(at(2026, 2, 13), FIVE_WORKING, cal)
    assert due == datetime(2026, 2, 27, 23, 59, 59, 999999, tzinfo=CST) + timedelta(microseconds=1)
    assert due.utcoffset() == timedelta(hours=8)


def test_seven_calendar_days_ignore_holidays() -> None:
    # Jilin: finished 2025-01-27 (the day before 春节): 1-28 .. 2-3 are the 7 days, holidays or not
    assert default_due(at(2025, 1, 27, 23, 59), SEVEN_DAYS) == midnight(2025, 2, 4)
    assert default_due(at(2026, 9, 30), SEVEN_DAYS) == midnight(2026, 10, 8)
    d = default_deadline(at(2026, 12, 28), SEVEN_DAYS, WorkCalendar())
    assert d.last_day == date(2027, 1, 4) and d.estimated is False  # calendar days need no data


def test_the_day_is_chinas_whatever_the_offset_given() -> None:
    # 2025-01-27T16:30Z is 2025-01-28 00:30 in China: day D is 1-28
    finished = datetime(2025, 1, 27, 16, 30, tzinfo=timezone.utc)
    assert service_day(finished) == date(2025, 1, 28)
    assert default_due(finished, SEVEN_DAYS) == midnight(2025, 2, 5)
    assert default_due(finished, FIVE_WORKING, WorkCalendar()) == midnight(2025, 2, 11)


def test_a_naive_time_or_a_missing_calendar_is_refused() -> None:
    with pytest.raises(ValueError, match="offset"):
        default_due(datetime(2026, 1, 5, 10), SEVEN_DAYS)
    with pytest.raises(TypeError):
        default_due(date(2026, 1, 5), SEVEN_DAYS)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs a WorkCalendar"):
        default_due(at(2026, 1, 5), FIVE_WORKING)


# -- 2027: no data in chinese-calendar 1.11 ----------------------------------------------------

def test_2027_without_a_file_falls_back_and_reports_the_year() -> None:
    seen: list[int] = []
    cal = WorkCalendar(on_uncovered=seen.append)
    # finished Wed 2026-12-30: 12-31, then 2027 counted Monday–Friday: 1-1, 1-4, 1-5, 1-6
    d = default_deadline(at(2026, 12, 30), FIVE_WORKING, cal)
    assert d.due == midnight(2027, 1, 7)
    assert d.estimated is True
    assert cal.uncovered_years() == (2027,) and seen == [2027]


def test_2027_with_the_fixture_file_follows_the_file() -> None:
    seen: list[int] = []
    cal = WorkCalendar.load(FIXTURES, on_uncovered=seen.append)
    # the fixture's 元旦 1-1..1-3: 12-31, 1-4, 1-5, 1-6, 1-7
    d = default_deadline(at(2026, 12, 30), FIVE_WORKING, cal)
    assert d.due == midnight(2027, 1, 8) and d.estimated is False
    # the fixture's 春节 2-5..2-12: finished Thu 2-4, counts 2-15..2-19
    assert default_due(at(2027, 2, 4), FIVE_WORKING, cal) == midnight(2027, 2, 20)
    assert cal.uncovered_years() == () and seen == []


def test_2027_spring_without_a_file_is_an_estimate() -> None:
    cal = WorkCalendar()
    d = default_deadline(at(2027, 2, 4), FIVE_WORKING, cal)
    assert d.due == midnight(2027, 2, 12)  # 2-5, 2-8, 2-9, 2-10, 2-11: a guess, flagged
    assert d.estimated is True and cal.uncovered_years() == (2027,)


# -- rules ----------------------------------------------------------------------------------

def test_rule_from_dict_round_trips() -> None:
    for preset in PRESETS.values():
        assert DefaultRule.from_dict(preset.rule.to_dict()) == preset.rule


@pytest.mark.parametrize("doc, expected", [
    ({"kind": "working_days"}, "missing keys ['days']"),
    ({"kind": "weeks", "days": 1}, "kind must be one of"),
    ({"kind": "working_days", "days": 0}, "days must be an integer 1..366"),
    ({"kind": "working_days", "days": 5.0}, "days must be an integer"),
    ({"kind": "working_days", "days": True}, "days must be an integer"),
    ({"kind": "working_days", "days": 400}, "days must be an integer 1..366"),
    ({"kind": "working_days", "days": 5, "hours": 1}, "unknown keys ['hours']"),
    (["working_days", 5], "a rule is an object"),
])
def test_a_bad_rule_is_refused(doc: object, expected: str) -> None:
    with pytest.raises(RuleError) as e:
        DefaultRule.from_dict(doc)
    assert expected in str(e.value)


# -- properties -----------------------------------------------------------------------------

SHARED = WorkCalendar()
FINISHED = st.datetimes(min_value=datetime(2004, 1, 1), max_value=datetime(2026, 11, 30),
                        timezones=st.just(CHINA_TZ))
RULES = st.builds(DefaultRule, kind=st.sampled_from(["calendar_days", "working_days"]),
                  days=st.integers(1, 20))


@settings(max_examples=300, deadline=None)
@given(finished=FINISHED, rule=RULES)
def test_a_deadline_ends_on_the_last_counted_day(finished: datetime, rule: DefaultRule) -> None:
    d = default_deadline(finished, rule, SHARED)
    day = finished.date()
    assert d.due == datetime.combine(d.last_day + timedelta(days=1), datetime.min.time(), CHINA_TZ)
    assert d.due > finished and not d.estimated
    if rule.kind == "calendar_days":
        assert (d.last_day - day).days == rule.days
    else:
        assert SHARED.is_workday(d.last_day)
        assert SHARED.workdays_between(day, d.last_day) == rule.days


@settings(max_examples=200, deadline=None)
@given(a=FINISHED, b=FINISHED, rule=RULES)
def test_a_later_service_never_has_an_earlier_deadline(a: datetime, b: datetime,
                                                       rule: DefaultRule) -> None:
    a, b = min(a, b), max(a, b)
    assert default_due(a, rule, SHARED) <= default_due(b, rule, SHARED)
