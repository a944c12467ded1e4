"""System default ratings in the real databases (both backends): due on the right day under each
region's rule (real 2025 holidays and make-up working days), idempotent, never for a rated service,
chained into the ledger, and whatever cannot be decided raised as an alert instead of guessed."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import pytest

from hub import ledger
from hub.default_rules import PRESETS
from hub.workdays import WorkCalendar
from tests.fixtures.hub import binding, rating_item, service_item

from .conftest import run_sql
from .test_store import H1, rated, setup_devices

pytestmark = pytest.mark.anyio

CST = timezone(timedelta(hours=8))
H2, H3 = "H2", "H3"  # H2: Dehong (working days); H3: no region


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def set_regions(hub_db) -> None:
    """Jilin (7 calendar days) for H1, Dehong (5 working days) for H2; H3 has none."""
    for region, preset in (("jilin", "jilin"), ("dehong", "dehong")):
        run_sql(hub_db, "INSERT INTO regions (region, name, area_code, default_rule, created_at, updated_at) "
                        "VALUES (?, ?, NULL, ?, 'x', 'x')",
                (region, region, json.dumps(PRESETS[preset].rule.to_dict())))
    run_sql(hub_db, "INSERT INTO halls (hall, region, name, updated_at) VALUES (?, 'jilin', NULL, 'x')", (H1,))
    run_sql(hub_db, "INSERT INTO halls (hall, region, name, updated_at) VALUES (?, 'dehong', NULL, 'x')", (H2,))


def calendar() -> WorkCalendar:
    return WorkCalendar.load()  # the shipped data: chinese-calendar, 2004-2026


async def test_calendar_days_due_at_midnight_after_the_seventh_day_and_only_once(store, hub_db):
    set_regions(hub_db)
    await store.ingest(H1, [service_item("S1", finished_at="2026-11-01T17:40:00+08:00")])
    cal = calendar()
    early = await store.run_defaults(cal, now=at("2026-11-08T23:59:59+08:00"))
    assert (early.applied, early.not_due) == (0, 1)
    due = await store.run_defaults(cal, now=at("2026-11-09T00:00:00+08:00"))
    assert due.applied == 1
    again = await store.run_defaults(cal, now=at("2026-11-10T00:00:00+08:00"))
    assert (again.applied, again.not_due) == (0, 0)
    (d,) = await store.list_defaults()
    assert (d.hall, d.service, d.score, d.region, d.estimated) == (H1, "S1", 3, "jilin", False)
    assert d.due_at == "2026-11-09T00:00:00+08:00" and json.loads(d.rule) == {"kind": "calendar_days", "days": 7}
    entries = await store.ledger_entries(0, 10)
    assert [(e.kind, e.ref) for e in entries] == [("service", "S1"), ("default", "S1")]
    assert (await store.verify_ledger()).ok


async def test_working_days_skip_national_day_and_count_the_make_up_saturday(store, hub_db):
    set_regions(hub_db)
    # finished 2025-09-30; holiday 10-01..10-08; working days after it: 10-09, 10-10,
    # 10-11 (a make-up Saturday), 10-13, 10-14 -> the period ends with 10-14
    await store.ingest(H2, [service_item("S2", finished_at="2025-09-30T16:00:00+08:00")])
    cal = calendar()
    assert (await store.run_defaults(cal, now=at("2025-10-14T23:59:59+08:00"))).applied == 0
    assert (await store.run_defaults(cal, now=at("2025-10-15T00:00:00+08:00"))).applied == 1
    (d,) = await store.list_defaults(hall=H2)
    assert d.due_at == "2025-10-15T00:00:00+08:00" and not d.estimated


async def test_a_rated_service_gets_no_default_and_a_late_rating_keeps_the_default(store, hub_db):
    set_regions(hub_db)
    await setup_devices(store, "D1")
    await store.ingest(H1, [service_item("S1", finished_at="2026-11-01T10:00:00+08:00"),
                            service_item("S2", finished_at="2026-11-01T10:00:00+08:00"),
                            service_item("S3", finished_at="2026-11-01T10:00:00+08:00", outcome="no_show"),
                            rating_item(rated("D1", 1), bound=binding("S1"))])
    result = await store.run_defaults(calendar(), now=at("2026-11-20T00:00:00+08:00"))
    assert result.applied == 1  # S2 only: S1 is rated, S3 was a no-show
    assert [d.service for d in await store.list_defaults()] == ["S2"]
    # the citizen rates S2 later through another channel: stored; the default stays
    late = await store.ingest(H1, [rating_item(rated("D1", 2), bound=binding("S2"))])
    assert late[0].status == "accepted"
    assert [d.service for d in await store.list_defaults()] == ["S2"]
    assert (await store.verify_ledger()).ok


async def test_what_cannot_be_decided_is_raised_once_not_guessed(store, hub_db):
    set_regions(hub_db)
    await store.ingest(H3, [service_item("S9", finished_at="2026-11-01T10:00:00+08:00")])
    for _ in range(2):
        result = await store.run_defaults(calendar(), now=at("2026-11-20T00:00:00+08:00"))
        assert (result.applied, result.waiting_for_region) == (0, 1)
    raised = await store.alerts(kind="hall_without_region")
    assert [(a.hall, a.key) for a in raised] == [(H3, H3)]  # twice run, once raised


async def test_a_year_without_holiday_data_is_guessed_visibly(store, hub_db):
    set_regions(hub_db)
    # 2027: chinese-calendar 1.11 has no data and no holiday file is loaded
    await store.ingest(H2, [service_item("S7", finished_at="2027-02-05T10:00:00+08:00")])
    # (the service was stored today, so the look-back must reach from 2027 back to now)
    result = await store.run_defaults(calendar(), now=at("2027-03-01T00:00:00+08:00"), lookback_days=3650)
    assert (result.applied, result.estimated) == (1, 1)
    (d,) = await store.list_defaults()
    assert d.estimated and d.due_at == "2027-02-13T00:00:00+08:00"  # Mon-Fri guess: 02-08..02-12
    kinds = {(a.kind, a.key) for a in await store.alerts()}
    assert ("calendar_uncovered", "2027") in kinds


async def test_the_lookahead_warns_before_the_new_year_starts(store, hub_db):
    set_regions(hub_db)
    result = await store.run_defaults(calendar(), now=at("2026-12-01T09:00:00+08:00"))
    assert [a[2] for a in result.alerts if a[0] == "calendar_uncovered"] == ["2027"]
    quiet = await store.run_defaults(calendar(), now=at("2026-06-01T09:00:00+08:00"))
    assert not [a for a in quiet.alerts if a[0] == "calendar_uncovered"]


async def test_two_jobs_at_once_store_each_default_once(store_factory, hub_db):
    async with store_factory() as a, store_factory() as b:
        set_regions(hub_db)  # the schema exists once a store has opened
        await a.ingest(H1, [service_item(f"S{i}", finished_at="2026-11-01T10:00:00+08:00") for i in range(30)])
        now = at("2026-11-20T00:00:00+08:00")
        results = await asyncio.gather(a.run_defaults(calendar(), now=now), b.run_defaults(calendar(), now=now))
        assert sum(r.applied for r in results) == 30
        assert len(await a.list_defaults(limit=100)) == 30
        assert (await a.verify_ledger()).ok


async def test_an_edited_default_is_found_by_the_ledger(store, hub_db):
    set_regions(hub_db)
    await store.ingest(H1, [service_item("S1", finished_at="2026-11-01T10:00:00+08:00")])
    await store.run_defaults(calendar(), now=at("2026-11-20T00:00:00+08:00"))
    run_sql(hub_db, "UPDATE default_ratings SET due_at = '2026-11-30T00:00:00+08:00'")
    result = await store.verify_ledger()
    assert result.first_broken == ledger.Break(2, "default", H1, "S1", "record_altered")
