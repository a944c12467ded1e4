"""Bad-review cases in the real databases (both backends): opened in the ingest transaction for
every 不满意 / 非常不满意, once (a duplicate batch opens nothing), routed to the binding's unit or
left unrouted; deadlines from the hall's region; the workflow and its history; scope; appeals as
new ledger records pointing at the rating, and a rating not adopted leaving satisfaction (also
after a rebuild); reminders written once; the opening function other writers of ratings use."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest

from hub import cases, ledger
from hub.cases import Actor, CaseError, CaseSource
from hub.stats import StatsQuery
from hub.store.cases_sql import CaseQuery
from tests.fixtures.hub import binding, rating_item

from .conftest import run_sql
from .test_store import H1, rated, setup_devices

pytestmark = pytest.mark.anyio

A, B = "市市场监督管理局", "市税务局"
OPS = Actor("op", "operator")
SUP1, SUP2 = Actor("sup-1", "supervisor"), Actor("sup-2", "supervisor")
HANDLER_A, HANDLER_B = Actor("h-a", "handler", unit=A), Actor("h-b", "handler", unit=B)
RECEIVED = "2026-11-21T09:30:07.412+08:00"


def bad_batch() -> list[dict]:
    """A bad rating bound to unit A, one to unit B, an unbound one, and two good ones."""
    return [rating_item(rated("D1", 1, score=2), bound=binding("S1", unit=A)),
            rating_item(rated("D1", 2, score=1), bound=binding("S2", unit=B)),
            rating_item(rated("D1", 3, score=1)),
            rating_item(rated("D1", 4, score=5), bound=binding("S3", unit=A)),
            rating_item(rated("D1", 5, score=3))]


def put_region(hub_db, region: str = "jilin", hall: str = H1) -> None:
    run_sql(hub_db, "INSERT INTO regions (region, name, area_code, default_rule, created_at, updated_at) "
                    "VALUES (?, ?, NULL, ?, 'x', 'x')", (region, region, '{"days":7,"kind":"calendar_days"}'))
    run_sql(hub_db, "INSERT INTO halls (hall, region, name, updated_at) VALUES (?, ?, NULL, 'x')", (hall, region))


async def opened(store) -> dict[str, cases.Case]:
    found, _ = await store.list_cases(CaseQuery(limit=100))
    return {c.rating_ref: c for c in found}


def callback(at: datetime, outcome: str = "reached", satisfaction: str | None = None) -> dict:
    doc = {"at": at.astimezone(cases.CHINA_TZ).isoformat(), "channel": "phone", "outcome": outcome}
    if satisfaction:
        doc["satisfaction"] = satisfaction
    return doc


# ---------------------------------------------------------------------------- opening


async def test_ingest_opens_one_case_per_bad_rating_routed_to_its_unit_and_a_resend_opens_none(store):
    await setup_devices(store, "D1")
    assert [r.status for r in await store.ingest(H1, bad_batch())] == ["accepted"] * 5
    found = await opened(store)
    assert sorted(found) == ["D1:1", "D1:2", "D1:3"]  # scores 2, 1, 1: not the 5 and the 3
    a, b, unbound = found["D1:1"], found["D1:2"], found["D1:3"]
    assert (a.unit, a.state, a.score, a.staff_id, a.service, a.window) == (A, "new", 2, "S0107", "S1", "7")
    assert (b.unit, b.state) == (B, "new")
    assert (unbound.unit, unbound.state, unbound.routed_at, unbound.service) == (None, "unrouted", None, None)
    (ingested_at,), = run_sql_rows(store, "SELECT ingested_at FROM ratings WHERE device = 'D1' AND n = 1")
    assert a.opened_at == a.routed_at == ingested_at  # opened in the ingest transaction
    assert a.rated_at == RECEIVED and a.rating_kind == "rating"

    again = await store.ingest(H1, bad_batch())
    assert [r.status for r in again] == ["duplicate"] * 5
    assert sorted(await opened(store)) == ["D1:1", "D1:2", "D1:3"]
    events = [(e.action, e.to_state) for e in await store.case_events(a.id)]
    assert events == [("open", "new")]
    assert [(e.action, e.to_state) for e in await store.case_events(unbound.id)] == [("open", "unrouted")]


def run_sql_rows(store, sql: str) -> list:
    """Read the store's own database synchronously (the `hub_db` fixture is not at hand here)."""
    import sqlite3
    path = getattr(store, "path", None)
    if path is not None:
        with sqlite3.connect(path) as conn:
            return conn.execute(sql).fetchall()
    import psycopg
    with psycopg.connect(store.dsn) as conn:
        return conn.execute(sql).fetchall()


async def test_a_failed_batch_opens_no_case(store, monkeypatch):
    """The case is in the batch's transaction: if the batch fails after the cases were written,
    neither the ratings nor their cases stay."""
    await setup_devices(store, "D1")
    from hub.store import cases_sql

    real = cases_sql.open_cases

    def failing(*args, **kwargs):
        yield from real(*args, **kwargs)
        raise RuntimeError("disk full after the cases")

    monkeypatch.setattr(cases_sql, "open_cases", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        await store.ingest(H1, bad_batch())
    monkeypatch.undo()
    assert await store.list_ratings() == [] and await opened(store) == {}
    await store.ingest(H1, bad_batch())
    assert len(await opened(store)) == 3


async def test_deadlines_follow_the_halls_region_and_a_hall_without_rules_gets_the_strictest(store, hub_db):
    put_region(hub_db, "jilin", H1)
    await store.put_case_rules("jilin", cases.PRESETS["jilin"].rules, OPS)
    await setup_devices(store, "D1")
    await setup_devices(store, "E1", hall="H9")  # H9 is in no region
    await store.ingest(H1, [rating_item(rated("D1", 1, score=2), bound=binding("S1", unit=A))])
    await store.ingest("H9", [rating_item(rated("E1", 1, score=2, hall="H9"))])
    found = await opened(store)
    jilin, other = found["D1:1"], found["E1:1"]
    assert (jilin.rules_source, jilin.case_rules, jilin.region) == ("region", cases.PRESETS["jilin"].rules, "jilin")
    dues, _ = cases.due_dates(cases.PRESETS["jilin"].rules, cases.parse_utc(jilin.opened_at), cases.WorkCalendar.load())
    assert (jilin.contact_due, jilin.fix_due, jilin.ledger_due) == tuple(
        cases.iso(dues[k]) for k in ("contact", "fix", "ledger"))
    assert (other.rules_source, other.case_rules.preset, other.region) == ("default", "2-5-15", None)
    alerts = [(a.kind, a.key) for a in await store.alerts(kind="case_rules_missing")]
    assert alerts == [("case_rules_missing", "hall:H9")]
    await store.ingest("H9", [rating_item(rated("E1", 2, score=1, hall="H9"))])
    assert len(await store.alerts(kind="case_rules_missing")) == 1  # once per region or hall


async def test_a_region_without_rules_is_told_and_new_rules_apply_to_new_cases_only(store, hub_db):
    put_region(hub_db, "xpcc", H1)
    await setup_devices(store, "D1")
    await store.ingest(H1, [rating_item(rated("D1", 1, score=2), bound=binding("S1", unit=A))])
    assert [a.key for a in await store.alerts(kind="case_rules_missing")] == ["xpcc"]
    stored = await store.put_case_rules("xpcc", cases.PRESETS["1-5-15"].rules, SUP1)
    assert (stored.region, stored.updated_by, stored.rules.preset) == ("xpcc", "sup-1", "1-5-15")
    await store.ingest(H1, [rating_item(rated("D1", 2, score=2), bound=binding("S2", unit=A))])
    found = await opened(store)
    assert found["D1:1"].case_rules.preset == "2-5-15" and found["D1:1"].route_due is None
    assert found["D1:2"].case_rules.preset == "1-5-15"
    route = cases.parse_utc(found["D1:2"].route_due) - cases.parse_utc(found["D1:2"].opened_at)
    assert route == timedelta(hours=24)
    with pytest.raises(CaseError, match="only an operator or supervisor") as refused:
        await store.put_case_rules("xpcc", cases.PRESETS["jilin"].rules, HANDLER_A)
    assert refused.value.status == 403
    with pytest.raises(CaseError, match="no region nowhere"):
        await store.put_case_rules("nowhere", cases.PRESETS["jilin"].rules, OPS)
    assert [r.region for r in await store.list_case_rules()] == ["xpcc"]


async def test_open_case_for_another_writer_of_ratings_is_idempotent_and_takes_a_real_name(store):
    source = CaseSource("phone", "H1/p/8f3a", H1, 1, "2026-11-21T10:02:00+08:00", unit=A, service="S9")
    first = await store.open_case(source)
    assert first is not None and first.opened and first.kind == "phone"
    again = await store.open_case(source)
    assert again == cases_sql_opened(first.id, source, False)
    named = await store.open_case(CaseSource(**{**source.__dict__, "real_name": True}))
    assert named is not None and not named.opened
    case = await store.get_case(first.id)
    assert case is not None and case.real_name and case.unit == A
    assert [e.action for e in await store.case_events(first.id)] == ["open", "real_name"]
    assert await store.open_case(CaseSource("phone", "H1/p/good", H1, 4, "2026-11-21T10:02:00+08:00")) is None


def cases_sql_opened(case_id: int, source: CaseSource, was_opened: bool):
    from hub.store.cases_sql import CaseOpened
    return CaseOpened(case_id, source.kind, source.ref, was_opened)


async def test_a_year_without_holiday_data_raises_the_calendar_alert(store):
    source = CaseSource("phone", "late", H1, 2, "2026-12-30T09:00:00+08:00", unit=A)
    store.case_calendar = cases.WorkCalendar.load()  # its own, so the fallback is recorded here
    await store.open_case(source, now=datetime(2026, 12, 30, 2, 0, tzinfo=UTC))
    case = (await opened(store))["late"]
    assert case.estimated
    assert [a.key for a in await store.alerts(kind="calendar_uncovered")] == ["2027"]


# ---------------------------------------------------------------------------- the workflow


async def test_a_case_through_its_states_to_closed_with_its_history_and_callbacks(store):
    await setup_devices(store, "D1")
    await store.ingest(H1, bad_batch())
    case = (await opened(store))["D1:3"]  # unrouted
    t = cases.parse_utc(case.opened_at)
    until = cases.china_day(t + timedelta(days=3, hours=3)) + timedelta(days=2)  # within 15 working days
    steps = [
        (OPS, "route", {"unit": A}, "new"),
        (HANDLER_A, "contact", {"callback": callback(t + timedelta(hours=2))}, "contacted"),
        (HANDLER_A, "rectify", {"note": "窗口指引不清"}, "rectifying"),
        (HANDLER_A, "ledger", {"until": until.isoformat(), "note": "系统改造"}, "ledger"),
        (HANDLER_A, "rectified", {"note": "已改造"}, "rectified"),
        (HANDLER_A, "feedback", {"callback": callback(t + timedelta(days=3), satisfaction="satisfied")}, "feedback"),
        (HANDLER_A, "close", {}, "closed"),
    ]
    for i, (who, action, args, state) in enumerate(steps):
        changed = await store.case_transition(case.id, action, who, args, now=t + timedelta(days=i, hours=3))
        assert changed.state == state, action
    assert (changed.unit, changed.ledger_until, changed.fix_kind, changed.last_satisfaction) == (
        A, cases.iso(cases.end_of_day(until)), "rectified", "satisfied")
    assert changed.closed_at is not None and changed.overdue(t + timedelta(days=300)) == []
    history = await store.case_events(case.id)
    assert [(e.action, e.from_state, e.to_state, e.actor) for e in history] == [
        ("open", None, "unrouted", "system"), ("route", "unrouted", "new", "op"),
        ("contact", "new", "contacted", "h-a"), ("rectify", "contacted", "rectifying", "h-a"),
        ("ledger", "rectifying", "ledger", "h-a"), ("rectified", "ledger", "rectified", "h-a"),
        ("feedback", "rectified", "feedback", "h-a"), ("close", "feedback", "closed", "h-a")]
    assert history[1].detail == {"unit": A, "from_unit": None}
    calls = await store.case_callbacks(case.id)
    assert [(c.purpose, c.outcome, c.satisfaction, c.actor) for c in calls] == [
        ("contact", "reached", None, "h-a"), ("feedback", "reached", "satisfied", "h-a")]
    with pytest.raises(CaseError, match="not from state closed") as refused:
        await store.case_transition(case.id, "reopen", HANDLER_A, {"note": "x"})
    assert refused.value.status == 409


async def test_a_handler_sees_and_acts_on_its_units_cases_only(store):
    await setup_devices(store, "D1")
    await store.ingest(H1, bad_batch())
    found = await opened(store)
    a, b, unbound = found["D1:1"], found["D1:2"], found["D1:3"]
    mine, total = await store.list_cases(CaseQuery(scope=HANDLER_A.scope_filter()))
    assert [c.id for c in mine] == [a.id] and total == 1
    assert await store.get_case(b.id, HANDLER_A) is None and await store.get_case(unbound.id, HANDLER_A) is None
    assert (await store.get_case(a.id, HANDLER_A)).id == a.id  # type: ignore[union-attr]
    for case in (b, unbound):
        with pytest.raises(CaseError, match="in your scope") as refused:
            await store.case_transition(case.id, "contact", HANDLER_A, {"callback": callback(datetime.now(UTC))})
        assert refused.value.status == 404
    with pytest.raises(CaseError, match="only an operator or a supervisor") as refused:
        await store.case_transition(a.id, "route", HANDLER_A, {"unit": B})
    assert refused.value.status == 403
    all_of_them, total = await store.list_cases(CaseQuery(scope=OPS.scope_filter()))
    assert total == 3
    assert (await store.get_case(b.id, HANDLER_B)).unit == B  # type: ignore[union-attr]
    assert [e.action for e in await store.case_events(b.id)] == ["open"]  # nothing was written


async def test_a_region_scope_is_the_halls_of_the_region_now(store):
    await setup_devices(store, "D1")
    await setup_devices(store, "E1", hall="H9")
    await store.ingest(H1, [rating_item(rated("D1", 1, score=2), bound=binding("S1", unit=A))])
    await store.ingest("H9", [rating_item(rated("E1", 1, score=2, hall="H9"), bound=binding("S1", unit=A))])
    # the accounts' visible_halls for a supervisor of region jilin, which holds H1 now
    jilin = Actor("s-j", "supervisor", region="jilin", halls=frozenset({H1}))
    seen, total = await store.list_cases(CaseQuery().seen_by(jilin))
    assert total == 1 and [c.hall for c in seen] == [H1]
    other = (await opened(store))["E1:1"]
    assert await store.get_case(other.id, jilin) is None
    nowhere = Actor("s-x", "supervisor", region="empty", halls=frozenset())
    assert (await store.list_cases(CaseQuery().seen_by(nowhere)))[1] == 0
    handler_in_h9 = Actor("h", "handler", hall="H9", unit=A, halls=frozenset({"H9"}))
    assert [c.rating_ref for c in (await store.list_cases(CaseQuery().seen_by(handler_in_h9)))[0]] == ["E1:1"]


async def test_filters_and_pages(store):
    await setup_devices(store, "D1")
    await store.ingest(H1, [rating_item(rated("D1", n, score=1 + n % 2), bound=binding(f"S{n}", unit=A if n % 3 else B))
                            for n in range(1, 13)])
    everything, total = await store.list_cases(CaseQuery(limit=100))
    assert total == 12 and [c.id for c in everything] == sorted((c.id for c in everything), reverse=True)
    pages, before = [], None
    while True:
        page, total = await store.list_cases(CaseQuery(limit=5, before=before))
        assert total == 12
        pages.append([c.id for c in page])
        if len(page) < 5:
            break
        before = page[-1].id
    assert [i for p in pages for i in p] == [c.id for c in everything] and [len(p) for p in pages] == [5, 5, 2]
    of_b, total_b = await store.list_cases(CaseQuery(unit=B))
    assert total_b == 4 and {c.unit for c in of_b} == {B}
    today = cases.china_day(datetime.now(UTC))
    assert (await store.list_cases(CaseQuery(opened_from=today, opened_to=today)))[1] == 12
    assert (await store.list_cases(CaseQuery(opened_to=today - timedelta(days=1))))[1] == 0
    assert (await store.list_cases(CaseQuery(states=("new",), open=True, unrouted=False)))[1] == 12
    assert (await store.list_cases(CaseQuery(overdue=True)))[1] == 0
    later = datetime.now(UTC) + timedelta(days=40)  # every contact and fix deadline is past
    late, n_late = await store.list_cases(CaseQuery(overdue=True), now=later)
    assert n_late == 12 and all(c.overdue(later) for c in late)
    # not overdue: every case, though steps with no deadline yet (feedback before the fix) are NULL
    assert (await store.list_cases(CaseQuery(overdue=False)))[1] == 12
    assert (await store.list_cases(CaseQuery(overdue=False), now=later))[1] == 0
    # overdue a day from now and not now: none, when every deadline is days away
    assert (await store.list_cases(CaseQuery(overdue=True, due_by=later), now=later))[1] == 0
    assert (await store.list_cases(CaseQuery(overdue=True, due_by=later)))[1] == 12


# ---------------------------------------------------------------------------- appeals


async def appeal_to_verified(store, case_id: int, appellant: Actor = HANDLER_A) -> None:
    await store.case_transition(case_id, "appeal", appellant, {"note": "评价人按错键"})
    await store.case_transition(case_id, "verify", SUP1, {"method": "phone_callback", "note": "电话回访核实"})


async def test_an_appeal_not_adopted_is_a_new_ledger_record_and_leaves_satisfaction(store):
    await setup_devices(store, "D1")
    await store.ingest(H1, bad_batch())
    case = (await opened(store))["D1:1"]
    rating_before = await store.get_rating("D1", 1)
    head_before = await store.ledger_head()
    day = date(2026, 11, 21)
    before = (await store.stats(StatsQuery(day, day)))[0].figures
    assert (before.ratings, before.bad, before.not_adopted, before.satisfaction) == (5, 3, 0, 2 / 5)

    await appeal_to_verified(store, case.id, appellant=SUP2)
    with pytest.raises(CaseError, match="appellant cannot decide") as refused:
        await store.case_transition(case.id, "decide", SUP2, {"outcome": "not_adopted", "reason": "mistaken"})
    assert refused.value.status == 403
    decided = await store.case_transition(case.id, "decide", SUP1, {"outcome": "not_adopted", "reason": "mistaken",
                                                                    "note": "误评"})
    assert decided.state == "not_adopted" and decided.decided_at is not None

    assert await store.get_rating("D1", 1) == rating_before  # the rating itself is untouched
    entries = await store.ledger_entries(head_before.seq, 10)
    assert [(e.kind, e.hall, e.ref) for e in entries] == [("appeal", H1, "rating:D1:1")]
    decision = await store.appeal_decision(case.id)
    rating_entry = next(e for e in await store.ledger_entries(0, 100) if e.kind == "rating" and e.ref == "D1:1")
    assert decision is not None and (decision["rating_seq"], decision["outcome"], decision["reason"]) == (
        rating_entry.seq, "not_adopted", "mistaken")
    assert (decision["appellant"], decision["verified_by"], decision["method"], decision["decided_by"]) == (
        "sup-2", "sup-1", "phone_callback", "sup-1")
    assert entries[0].digest == ledger.digest(decision)
    assert (await store.verify_ledger()).ok

    after = (await store.stats(StatsQuery(day, day)))[0].figures
    assert (after.ratings, after.bad, after.not_adopted) == (5, 3, 1)  # still given, still counted
    assert after.satisfaction == 2 / 4  # out of satisfaction: 2 good of 4 that count
    by_unit = {r.key["unit"]: r.figures for r in await store.stats(StatsQuery(day, day, group="unit"))}
    assert by_unit[A].not_adopted == 1 and by_unit[B].not_adopted == 0
    await store.rebuild_stats()
    assert (await store.stats(StatsQuery(day, day)))[0].figures == after
    assert {r.key["unit"]: r.figures for r in await store.stats(StatsQuery(day, day, group="unit"))} == by_unit


async def test_an_upheld_appeal_goes_back_where_it_was_and_cannot_be_repeated(store):
    await setup_devices(store, "D1")
    await store.ingest(H1, bad_batch())
    case = (await opened(store))["D1:1"]
    await store.case_transition(case.id, "contact", HANDLER_A, {"callback": callback(datetime.now(UTC))})
    await appeal_to_verified(store, case.id)
    back = await store.case_transition(case.id, "decide", SUP2, {"outcome": "upheld"})
    assert (back.state, back.appellant) == ("contacted", "h-a")
    with pytest.raises(CaseError, match="appealed once already"):
        await store.case_transition(case.id, "appeal", HANDLER_A, {"note": "again"})
    (e,) = [e for e in await store.ledger_entries(0, 100) if e.kind == "appeal"]
    assert (await store.appeal_decision(case.id))["outcome"] == "upheld"  # type: ignore[index]
    assert (await store.stats(StatsQuery(date(2026, 11, 21), date(2026, 11, 21))))[0].figures.not_adopted == 0


async def test_an_appeal_decision_edited_in_the_database_breaks_the_ledger(store, hub_db):
    await setup_devices(store, "D1")
    await store.ingest(H1, bad_batch())
    case = (await opened(store))["D1:2"]
    await appeal_to_verified(store, case.id, appellant=Actor("h-b", "handler", unit=B))
    await store.case_transition(case.id, "decide", SUP2, {"outcome": "not_adopted", "reason": "malicious"})
    run_sql(hub_db, "UPDATE appeal_decisions SET reason = 'mistaken'")
    verification = await store.verify_ledger()
    assert not verification.ok and verification.first_broken.problem == "record_altered"  # type: ignore[union-attr]
    assert verification.first_broken.kind == "appeal"  # type: ignore[union-attr]
    run_sql(hub_db, "DELETE FROM ledger WHERE kind = 'appeal'")
    assert (await store.verify_ledger()).unledgered == {"appeal": 1}


# ---------------------------------------------------------------------------- rates and reminders


async def test_rates_per_unit(store):
    await setup_devices(store, "D1")
    await store.ingest(H1, bad_batch())
    found = await opened(store)
    a, b = found["D1:1"], found["D1:2"]
    await store.open_case(CaseSource("phone", "named", H1, 1, RECEIVED, unit=A, real_name=True))
    named = (await opened(store))["named"]
    now = datetime.now(UTC)
    await store.add_case_callback(named.id, HANDLER_A, callback(now, outcome="unreachable"))
    await store.case_transition(named.id, "contact", HANDLER_A, {"callback": callback(now)})
    await store.case_transition(named.id, "explain", HANDLER_A, {"note": "无法定依据"})
    await store.case_transition(a.id, "contact", HANDLER_A, {"callback": callback(now, outcome="anonymous")})
    await appeal_to_verified(store, b.id, appellant=HANDLER_B)
    await store.case_transition(b.id, "decide", SUP2, {"outcome": "not_adopted", "reason": "malicious"})
    rates = {r.unit: r for r in await store.case_rates(CaseQuery())}
    assert set(rates) == {A, B, None}
    ra = rates[A]
    assert (ra.cases, ra.open, ra.real_name, ra.real_name_reached, ra.rectified, ra.explained) == (2, 2, 1, 1, 1, 1)
    assert (ra.callback_rate, ra.rectification_rate) == (1.0, 0.5)
    rb = rates[B]
    assert (rb.cases, rb.not_adopted, rb.callback_rate, rb.rectification_rate) == (1, 1, None, None)
    assert rates[None].cases == 1
    assert [r.unit for r in await store.case_rates(CaseQuery(scope=HANDLER_A.scope_filter()))] == [A]


async def test_reminders_are_written_when_due_and_once(store):
    source = CaseSource("phone", "r1", H1, 2, "2026-02-10T09:00:00+08:00", unit=A)
    opened_at = datetime(2026, 2, 10, 10, 0, tzinfo=cases.CHINA_TZ)  # 2-5-15 (H1 has no region)
    await store.open_case(source, now=opened_at)
    case = (await opened(store))["r1"]
    assert case.contact_due == cases.iso(datetime(2026, 2, 13, tzinfo=cases.CHINA_TZ))  # 02-11, 02-12
    assert await store.run_case_reminders(now=datetime(2026, 2, 11, 12, 0, tzinfo=cases.CHINA_TZ)) == 0
    last_day = datetime(2026, 2, 12, 8, 0, tzinfo=cases.CHINA_TZ)
    assert await store.run_case_reminders(now=last_day) == 1
    assert await store.run_case_reminders(now=last_day) == 0  # idempotent
    late = datetime(2026, 2, 13, 0, 0, tzinfo=cases.CHINA_TZ)
    assert await store.run_case_reminders(now=late) == 1
    stored = await store.case_reminders(case_id=case.id)
    assert [(r.deadline, r.kind, r.unit) for r in stored] == [("contact", "overdue", A), ("contact", "due_soon", A)]
    # the fix deadline (5 working days: 02-11..02-14, 02-24) reminds in its turn, across the holiday
    assert await store.run_case_reminders(now=datetime(2026, 2, 24, 9, 0, tzinfo=cases.CHINA_TZ)) == 1
    assert await store.run_case_reminders(now=datetime(2026, 2, 25, 0, 0, tzinfo=cases.CHINA_TZ)) == 1
    await store.case_transition(case.id, "contact", HANDLER_A, {"callback": callback(late)}, now=late + timedelta(days=20))
    assert await store.run_case_reminders(now=datetime(2026, 6, 1, tzinfo=UTC)) == 0  # nothing more is due
    mine = await store.case_reminders(query=CaseQuery(scope=HANDLER_B.scope_filter()))
    assert mine == []
    assert json.loads(json.dumps([r.__dict__ for r in await store.case_reminders(query=CaseQuery(unit=A))]))
