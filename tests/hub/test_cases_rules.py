"""Bad-review deadlines (hub/cases.py), pure: each region's preset over real dates of China's
calendar, the 2025 and 2026 Spring Festival and National Day holidays and their make-up working
days (调休) included; what a limit means at the edges (the start day never counts, the end is
00:00 China time after the last day, hours are exact, months clamp); rules as regions set them."""

from __future__ import annotations

from datetime import datetime

import pytest

from hub import cases
from hub.cases import CaseError, CaseRules, Limit, PRESETS, due_dates
from hub.workdays import WorkCalendar

CAL = WorkCalendar.load()  # the shipped data: chinese-calendar 1.11 (2004-2026)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def dues(preset: str, opened: str) -> dict[str, str | None]:
    """Each deadline as China time, to read against the calendar."""
    found, estimated = due_dates(PRESETS[preset].rules, at(opened), CAL)
    assert not estimated
    return {k: (v.astimezone(cases.CHINA_TZ).isoformat() if v is not None else None) for k, v in found.items()}


def test_2_5_15_before_the_2025_spring_festival():
    # Monday 01-27 is the last working day before 春节 (01-28..02-04); 02-08 (Saturday) is worked.
    assert dues("2-5-15", "2025-01-27T10:00:00+08:00") == {
        "route": None,
        "contact": "2025-02-07T00:00:00+08:00",  # 02-05, 02-06
        "fix": "2025-02-11T00:00:00+08:00",  # 02-05, 06, 07, 08 (make-up Saturday), 10
        "ledger": "2025-02-25T00:00:00+08:00"}  # the 15th working day after is 02-24


def test_a_case_opened_on_a_make_up_sunday_counts_from_the_next_working_day():
    # 2025-01-26 is a Sunday worked (调休): the day itself never counts, 01-27 is day 1
    assert dues("2-5-15", "2025-01-26T15:00:00+08:00")["contact"] == "2025-02-06T00:00:00+08:00"


def test_a_case_opened_in_the_2026_spring_festival_waits_for_its_end():
    # 02-15..02-23 off; 02-24 is day 1; 02-28 (Saturday) is a make-up working day
    found = dues("2-5-15", "2026-02-17T09:00:00+08:00")
    assert found["contact"] == "2026-02-26T00:00:00+08:00"  # 02-24, 02-25
    assert found["fix"] == "2026-03-01T00:00:00+08:00"  # 24, 25, 26, 27, 28


def test_jilin_across_national_day_2025():
    # 10-01..10-08 off; 10-11 (Saturday) worked
    found = dues("jilin", "2025-09-30T16:00:00+08:00")
    assert found["contact"] == "2025-10-22T00:00:00+08:00"  # 10-09, 10, 11, 13..17, 20, 21
    assert found["fix"] == "2025-10-29T00:00:00+08:00"  # ... 22, 23, 24, 27, 28
    assert found["ledger"] == "2026-03-31T00:00:00+08:00"  # six calendar months: the last day is 2026-03-30
    assert found["route"] is None


def test_the_day_is_chinas_whatever_the_offset_the_hub_stored():
    # 15:30 UTC on Friday 10-10 is 23:30 that day in China: day 1 is Saturday 10-11 (worked)
    assert dues("2-5-15", "2025-10-10T15:30:00+00:00")["contact"] == "2025-10-14T00:00:00+08:00"
    # an hour later it is 00:30 on 10-11 in China: that day never counts, day 1 is Monday 10-13
    assert dues("2-5-15", "2025-10-10T16:30:00+00:00")["contact"] == "2025-10-15T00:00:00+08:00"


def test_1_5_15_pushes_within_24_hours_and_fixes_across_the_2026_spring_festival():
    found = dues("1-5-15", "2026-02-13T18:00:00+08:00")
    assert found["route"] == "2026-02-14T18:00:00+08:00"  # 24 hours, not a day
    assert found["contact"] is None
    assert found["fix"] == "2026-02-28T00:00:00+08:00"  # 02-14 (Saturday, worked), 24, 25, 26, 27
    assert found["ledger"] == "2026-03-13T00:00:00+08:00"  # ... 28, 03-02..06, 09..12


def test_feedback_after_the_fix_across_mid_autumn_and_national_day_2026():
    # 09-25 (中秋) and 10-01..10-07 off; 10-10 (Saturday) worked
    assert dues("2-5-15", "2026-09-24T12:00:00+08:00")["fix"] == "2026-10-10T00:00:00+08:00"  # 28, 29, 30, 10-08, 09
    feedback = PRESETS["2-5-15"].rules.feedback
    assert feedback is not None
    due, estimated = feedback.due(at("2026-09-30T17:00:00+08:00"), CAL)
    assert due.astimezone(cases.CHINA_TZ).isoformat() == "2026-10-14T00:00:00+08:00"  # 10-08, 09, 10, 12, 13
    assert not estimated


def test_month_limits_clamp_to_the_month_end():
    due, _ = Limit("months", 6).due(at("2025-08-31T09:00:00+08:00"), CAL)
    assert due.astimezone(cases.CHINA_TZ).isoformat() == "2026-03-01T00:00:00+08:00"  # last day 2026-02-28
    due, _ = Limit("months", 1).due(at("2024-01-31T09:00:00+08:00"), CAL)
    assert due.astimezone(cases.CHINA_TZ).isoformat() == "2024-03-01T00:00:00+08:00"  # leap February: 29th
    assert cases.add_months(cases.china_day(at("2025-12-15T10:00:00+08:00")), 6).isoformat() == "2026-06-15"


def test_a_year_without_holiday_data_is_counted_monday_to_friday_and_says_so():
    calendar = WorkCalendar.load()  # its own: the fallback is recorded per calendar
    found, estimated = due_dates(PRESETS["2-5-15"].rules, at("2026-12-30T10:00:00+08:00"), calendar)
    assert estimated and 2027 in calendar.uncovered_years()
    # 12-31 (Thursday) and then Monday-Friday: 2027-01-01 is a guess, there is no 2027 notice yet
    assert found["contact"].astimezone(cases.CHINA_TZ).isoformat() == "2027-01-02T00:00:00+08:00"
    found, estimated = due_dates(PRESETS["2-5-15"].rules, at("2026-11-02T10:00:00+08:00"), WorkCalendar.load())
    assert not estimated


def test_deadlines_are_stored_in_utc_so_text_order_is_time_order():
    found, _ = due_dates(PRESETS["jilin"].rules, at("2025-09-30T16:00:00+08:00"), CAL)
    assert cases.iso(found["contact"]) == "2025-10-21T16:00:00.000+00:00"


# ---------------------------------------------------------------------------- rules


def test_presets_follow_the_regions_documents():
    assert {k: p.rules.to_dict()["limits"] for k, p in PRESETS.items()} == {
        "jilin": {"route": None, "contact": {"kind": "working_days", "n": 10},
                  "fix": {"kind": "working_days", "n": 15}, "ledger": {"kind": "months", "n": 6}, "feedback": None},
        "2-5-15": {"route": None, "contact": {"kind": "working_days", "n": 2},
                   "fix": {"kind": "working_days", "n": 5}, "ledger": {"kind": "working_days", "n": 15},
                   "feedback": {"kind": "working_days", "n": 5}},
        "1-5-15": {"route": {"kind": "hours", "n": 24}, "contact": None, "fix": {"kind": "working_days", "n": 5},
                   "ledger": {"kind": "working_days", "n": 15}, "feedback": None}}
    assert "10個工作日" not in PRESETS["jilin"].source and "10个工作日内回复" in PRESETS["jilin"].source


def test_rules_from_a_preset_edited_and_back():
    edited = CaseRules.from_dict({"preset": "jilin", "limits": {"contact": {"kind": "working_days", "n": 5}}})
    assert edited.preset is None and edited.contact == Limit("working_days", 5) and edited.fix == Limit("working_days", 15)
    same = CaseRules.from_dict({"preset": "jilin", "limits": {"contact": {"kind": "working_days", "n": 10.0}}})
    assert same == PRESETS["jilin"].rules and same.preset == "jilin"  # 10.0 is 10: JSON has one number type
    assert CaseRules.from_json(edited.to_json()) == edited
    own = CaseRules.from_dict({"limits": {"fix": {"kind": "calendar_days", "n": 7}, "ledger": {"kind": "months", "n": 3}}})
    assert (own.route, own.contact, own.feedback, own.preset) == (None, None, None, None)


@pytest.mark.parametrize("doc, says", [
    ({}, "give a preset or limits"),
    ({"preset": "beijing"}, "no preset"),
    ({"limits": {"fix": {"kind": "working_days", "n": 5}}}, "['ledger'] must be set"),
    ({"preset": "jilin", "limits": {"fix": None}}, "['fix'] must be set"),
    ({"preset": "jilin", "limits": {"repair": None}}, "unknown steps ['repair']"),
    ({"preset": "jilin", "limits": {"fix": {"kind": "weeks", "n": 2}}}, "kind is one of"),
    ({"preset": "jilin", "limits": {"fix": {"kind": "working_days", "n": 0}}}, "n = 1..250"),
    ({"preset": "jilin", "limits": {"fix": {"kind": "months", "n": 13}}}, "n = 1..12"),
    ({"preset": "jilin", "limits": {"fix": {"kind": "hours", "n": True}}}, "n = 1..720"),
    ({"preset": "jilin", "limits": {"fix": {"kind": "hours"}}}, "with nothing else"),
    ({"preset": "jilin", "extra": 1}, "unknown keys ['extra']"),
    ([], "an object"),
])
def test_rules_that_are_not_one_say_why(doc, says):
    with pytest.raises(CaseError, match=says.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")) as info:
        CaseRules.from_dict(doc)
    assert info.value.status == 422


def test_actor_scope():
    handler = cases.Actor("wang", "handler", unit="市市场监督管理局")
    assert handler.scope_filter() == {"unit": "市市场监督管理局"}
    with pytest.raises(CaseError, match="needs|give `unit`"):
        cases.Actor("li", "handler")
    with pytest.raises(CaseError, match="role"):
        cases.Actor("li", "janitor")
    assert cases.Actor("root", "admin", unit="x").scope_filter() == {}
    assert not cases.Actor("z", "handler", unit="A").may_unmask and cases.Actor("s", "supervisor").may_unmask
