"""Bad-review cases in the store: hub/cases.py decides, this reads and writes, once for both
backends.

Each write transaction is a generator (`Tx`) that yields `Sql` statements and is sent back their
rows, so its logic (look up, decide with hub.cases, write) is written once: `run_sqlite` drives it
on the SQLite writer's thread inside the writer's transaction, `run_pg` on a psycopg connection
inside a transaction. Statements use `?` placeholders (made `%s` for psycopg) and never a literal
`?` or `%`. `Sql(lock=True)` is a `SELECT … FOR UPDATE` on PostgreSQL; SQLite has one writer.

Locks on PostgreSQL, in this order only: the ledger head (writers of counted records,
hub/store/postgres_rollups.py), then a case row. Ingest holds the head when it opens cases (it
inserts, never waits on a stored case); a transition that writes the ledger (an appeal decision)
takes the head before its case, the others take only their case.

`CaseStore` is the interface part every store has (HubStore inherits it): reads through `_rows`,
writes through the backend's `_case_tx`. Ingest calls `open_cases` inside its own transaction; so
may any other writer of bad ratings (the phone rating page): `HubStore.open_case` runs it alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar

from .. import cases, ledger, stats
from ..cases import Actor, Case, CaseError, CaseRules, CaseSource, Change, Decision, Reminder
from ..default_rules import CHINA_TZ
from ..workdays import WorkCalendar

T = TypeVar("T")

CASE_COLUMNS = (
    "id, hall, region, unit, source_unit, window_id, staff_id, matter_code, service, case_no, rating_kind, "
    "rating_ref, score, rated_at, real_name, state, appeal_from, appellant, rules, rules_source, opened_at, "
    "route_due, contact_due, fix_due, ledger_due, ledger_until, feedback_due, estimated, routed_at, "
    "contacted_at, fixed_at, fix_kind, feedback_at, closed_at, decided_at, last_satisfaction, updated_at")
_CASE_NAMES = [c.strip() for c in CASE_COLUMNS.split(",")]
_INSERT_NAMES = _CASE_NAMES[1:]  # id is the database's
_UPDATABLE = frozenset({"unit", "state", "appeal_from", "appellant", "ledger_until", "feedback_due", "estimated",
                        "routed_at", "contacted_at", "fixed_at", "fix_kind", "feedback_at", "closed_at",
                        "decided_at", "last_satisfaction", "updated_at", "real_name"})
EVENT_COLUMNS = "id, case_id, at, actor, role, action, from_state, to_state, detail"
CALLBACK_COLUMNS = "id, case_id, at, recorded_at, actor, purpose, channel, outcome, satisfaction, note"
REMINDER_COLUMNS = "case_id, deadline, kind, due_at, hall, unit, at"
APPEAL_COLUMNS = ("hall, ref, case_id, rating_kind, rating_ref, rating_seq, outcome, reason, appellant, "
                  "appeal_note, verified_by, method, verify_note, decided_by, decided_at, note, stats_day, "
                  "stats_window, stats_staff, stats_matter, stats_unit")
APPEAL_NAMES = tuple(c.strip() for c in APPEAL_COLUMNS.split(","))
RULES_COLUMNS = "region, rules, updated_at, updated_by"
INSERT_CHUNK = 200  # cases per multi-row INSERT: 35 values each, well under SQLite's 32,766
OPEN_STATES_SQL = "state NOT IN ('closed', 'not_adopted')"


# ---------------------------------------------------------------------------- the driver


@dataclass(frozen=True)
class Sql:
    text: str
    params: Sequence[Any] = ()
    many: bool = False  # params: a list of rows, one execution each (no rows back)
    lock: bool = False  # PostgreSQL: append FOR UPDATE


Tx = Generator[Sql, list, T]


def run_sqlite(db: Any, tx: Tx[T]) -> T:
    """Drive `tx` on a sqlite3 connection, in the caller's transaction."""
    try:
        q = next(tx)
        while True:
            if q.many:
                db.executemany(q.text, q.params)
                rows: list = []
            else:
                cursor = db.execute(q.text, q.params)
                rows = cursor.fetchall() if cursor.description else []
            q = tx.send(rows)
    except StopIteration as stop:
        return stop.value


async def run_pg(conn: Any, tx: Tx[T]) -> T:
    """Drive `tx` on a psycopg AsyncConnection, in the caller's transaction."""
    try:
        q = next(tx)
        while True:
            text = q.text.replace("?", "%s") + (" FOR UPDATE" if q.lock else "")
            rows: list = []
            async with conn.cursor() as cursor:
                if q.many:
                    if q.params:
                        await cursor.executemany(text, q.params)
                else:
                    await cursor.execute(text, q.params)
                    rows = await cursor.fetchall() if cursor.description else []
            q = tx.send(rows)
    except StopIteration as stop:
        return stop.value


# ---------------------------------------------------------------------------- records


def case_record(row: Sequence[Any]) -> Case:
    values = dict(zip(_CASE_NAMES, row, strict=True))
    values["window"] = values.pop("window_id")
    values["real_name"] = bool(values["real_name"])
    values["estimated"] = bool(values["estimated"])
    return Case(**values)


@dataclass(frozen=True)
class CaseEvent:
    id: int
    case_id: int
    at: str
    actor: str
    role: str
    action: str
    from_state: str | None
    to_state: str
    detail: dict

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at, "actor": self.actor, "role": self.role, "action": self.action,
                "from_state": self.from_state, "to_state": self.to_state, "detail": self.detail}


@dataclass(frozen=True)
class StoredCallback:
    id: int
    case_id: int
    at: str
    recorded_at: str
    actor: str
    purpose: str
    channel: str
    outcome: str
    satisfaction: str | None
    note: str | None


@dataclass(frozen=True)
class StoredReminder:
    case_id: int
    deadline: str
    kind: str
    due_at: str
    hall: str
    unit: str | None
    at: str


@dataclass(frozen=True)
class StoredRules:
    region: str
    rules: CaseRules
    updated_at: str
    updated_by: str


@dataclass(frozen=True)
class CaseOpened:
    """An `open_cases` result: the case of a source, whether this call opened it."""

    id: int
    kind: str
    ref: str
    opened: bool


@dataclass(frozen=True)
class CaseQuery:
    """Filters of a case list; `scope`: the actor's scope parts (hub.cases.Actor.scope_filter)."""

    hall: str | None = None
    region: str | None = None
    unit: str | None = None
    unrouted: bool | None = None  # True: only unrouted; False: only routed
    states: tuple[str, ...] = ()
    open: bool | None = None
    overdue: bool | None = None
    due_by: datetime | None = None  # with overdue=True: overdue at this moment instead of now
    ledger: bool | None = None  # True: cases that went into the ledger (台账)
    opened_from: date | None = None  # days in China, both included
    opened_to: date | None = None
    scope: Mapping[str, str] = field(default_factory=dict)
    scope_halls: frozenset[str] | None = None  # the actor's halls (None: not limited by hall)
    before: int | None = None  # paging: ids below this
    limit: int = 50

    def seen_by(self, actor: Actor) -> CaseQuery:
        """This query narrowed to what `actor` may see."""
        return replace(self, scope=actor.scope_filter(), scope_halls=actor.visible_halls())

    def where(self, now: datetime, alias: str = "") -> tuple[list[str], list[Any]]:
        a = f"{alias}." if alias else ""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("hall", self.hall), ("region", self.region), ("unit", self.unit),
                              *self.scope.items()):
            if value is not None:
                where.append(f"{a}{column} = ?")
                params.append(value)
        if self.scope_halls is not None:
            halls = sorted(self.scope_halls)
            where.append(f"{a}hall IN ({', '.join('?' * len(halls))})" if halls else "1 = 0")
            params += halls
        if self.unrouted is not None:
            where.append(f"{a}unit IS {'' if self.unrouted else 'NOT '}NULL")
        if self.states:
            where.append(f"{a}state IN ({', '.join('?' * len(self.states))})")
            params += list(self.states)
        if self.open is not None:
            where.append(("" if self.open else "NOT ") + f"({a}{OPEN_STATES_SQL})")
        if self.overdue is not None:
            where.append(("" if self.overdue else "NOT ") + overdue_sql(a))
            params += [cases.iso(self.due_by or now)] * 4
            if self.due_by is not None:  # due by then, and not overdue yet
                where.append("NOT " + overdue_sql(a))
                params += [cases.iso(now)] * 4
        if self.ledger is not None:
            where.append(f"{a}ledger_until IS {'NOT ' if self.ledger else ''}NULL")
        if self.opened_from is not None and self.opened_from > date.min:  # date.min's 00:00 +08:00 is year 0 in UTC
            where.append(f"{a}opened_at >= ?")
            params.append(cases.iso(datetime.combine(self.opened_from, time(0), tzinfo=CHINA_TZ)))
        if self.opened_to is not None and self.opened_to < date.max:  # no day after date.max
            where.append(f"{a}opened_at < ?")
            params.append(cases.iso(cases.end_of_day(self.opened_to)))
        if self.before is not None:
            where.append(f"{a}id < ?")
            params.append(self.before)
        return where, params


def overdue_sql(a: str = "") -> str:
    """An open case with some step past its deadline and not done (four `now` parameters);
    hub.cases.Case.overdue says the same in Python. Never NULL: a step with no deadline (a
    routed case's route_due, feedback_due before the fix) compares FALSE, not NULL, so that
    `NOT overdue_sql` keeps those cases too."""
    return (f"({a}{OPEN_STATES_SQL} AND ("
            f"({a}routed_at IS NULL AND {a}route_due IS NOT NULL AND {a}route_due <= ?) OR "
            f"({a}contacted_at IS NULL AND {a}contact_due IS NOT NULL AND {a}contact_due <= ?) OR "
            f"({a}fixed_at IS NULL AND COALESCE({a}ledger_until, {a}fix_due) IS NOT NULL "
            f"AND COALESCE({a}ledger_until, {a}fix_due) <= ?) OR "
            f"({a}feedback_at IS NULL AND {a}feedback_due IS NOT NULL AND {a}feedback_due <= ?)))")


def _now_text() -> str:
    return cases.iso(datetime.now(UTC))


def _alert(at: str, kind: str, hall: str | None, key: str, detail: str) -> Sql:
    from . import tables
    return Sql(tables.HUB_ALERT_ONCE_SQL.format(p="?"), tables.hub_alert_params(at, (kind, hall, key, detail)))


def _event_row(case_id: int, at: str, actor: str, role: str, action: str, from_state: str | None,
               to_state: str, detail: Mapping[str, Any]) -> tuple:
    return (case_id, at, actor, role, action, from_state, to_state,
            json.dumps(dict(detail), ensure_ascii=False, sort_keys=True))


INSERT_EVENT = ("INSERT INTO case_events (case_id, at, actor, role, action, from_state, to_state, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
INSERT_CALLBACK = ("INSERT INTO case_callbacks (case_id, at, recorded_at, actor, purpose, channel, outcome, "
                   "satisfaction, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")


# ---------------------------------------------------------------------------- opening


def open_cases(sources: Iterable[CaseSource], calendar: WorkCalendar,
               now: datetime | None = None) -> Tx[list[CaseOpened]]:
    """Open a case for each bad rating in `sources` that has none (its kind and ref), routed to
    its unit, with its region's deadlines; run inside the transaction that stores the ratings
    (ingest, the phone rating page), so a rating and its case are stored together or not at all.
    A source whose case exists opens nothing (idempotent); one that brings a real name the case
    did not have marks it real-name. Returns one CaseOpened per bad source."""
    bad = [s for s in sources if s.bad]
    if not bad:
        return []
    moment = now or datetime.now(UTC)
    at = cases.iso(moment)
    by_hall: dict[str, tuple[str | None, str | None]] = {}
    for hall in sorted({s.hall for s in bad}):
        rows = yield Sql("SELECT hl.region, cr.rules FROM halls hl LEFT JOIN case_rules cr ON cr.region = hl.region "
                         "WHERE hl.hall = ?", (hall,))
        by_hall[hall] = (rows[0][0], rows[0][1]) if rows else (None, None)
    planned = []
    for s in bad:
        region, rules = by_hall[s.hall]
        planned.append(cases.plan_case(s, region, rules, moment, calendar))
    for hall, (region, rules) in by_hall.items():
        if rules is None:
            yield _alert(at, "case_rules_missing", None, region or f"hall:{hall}",  # the region's, not the hall's
                         f"{'region ' + region if region else 'hall ' + hall + ' (in no region)'} has no "
                         f"bad-review limits: its cases use the preset {cases.DEFAULT_PRESET} until "
                         "PUT /api/v1/cases/rules/{region} sets them (docs/cases.md)")
    if any(p.estimated for p in planned):
        for year in calendar.uncovered_years():
            yield _alert(at, "calendar_uncovered", None, str(year),
                         f"no holiday data for {year}: working days there are guessed Monday to Friday "
                         f"until a holiday file for {year} is loaded (docs/hub.md)")
    opened: dict[tuple[str, str], int] = {}
    for start in range(0, len(planned), INSERT_CHUNK):
        chunk = planned[start:start + INSERT_CHUNK]
        marks = ", ".join("(" + ", ".join("?" * len(_INSERT_NAMES)) + ")" for _ in chunk)
        params = [v for p in chunk for v in _insert_row(p, at)]
        rows = yield Sql(f"INSERT INTO cases ({', '.join(_INSERT_NAMES)}) VALUES {marks} "
                         "ON CONFLICT (rating_kind, rating_ref) DO NOTHING RETURNING id, rating_kind, rating_ref",
                         params)
        opened.update({(kind, ref): case_id for case_id, kind, ref in rows})
    events = [_event_row(case_id, at, cases.SYSTEM, cases.SYSTEM, "open", None,
                         "new" if p.source.unit is not None else "unrouted",
                         {"unit": p.source.unit, "rules": p.rules.to_dict(), "rules_source": p.rules_source,
                          "score": p.source.score})
              for p in planned if (case_id := opened.get((p.source.kind, p.source.ref))) is not None]
    if events:
        yield Sql(INSERT_EVENT, events, many=True)
    results = []
    for p in planned:
        key = (p.source.kind, p.source.ref)
        if key in opened:
            results.append(CaseOpened(opened[key], *key, True))
            continue
        rows = yield Sql("SELECT id, real_name, state FROM cases WHERE rating_kind = ? AND rating_ref = ?", key)
        case_id, real_name, state = rows[0]
        if p.source.real_name and not real_name:
            yield Sql("UPDATE cases SET real_name = ?, updated_at = ? WHERE id = ?", (True, at, case_id))
            yield Sql(INSERT_EVENT, [_event_row(case_id, at, cases.SYSTEM, cases.SYSTEM, "real_name", state,
                                                state, {})], many=True)
        results.append(CaseOpened(case_id, *key, False))
    return results


def phone_sources(phone_row: Sequence[Any], before: Any) -> list[CaseSource]:
    """The cases a stored phone rating opens (docs/cases.md, "Opening and routing"): a bad
    supplementary rating (补充评价, score 1 or 2) its own, filed as the phone rating (kind `phone`,
    its ledger ref), routed to the service's unit, real-name if the rater left a name or number; a
    follow-up (追加评价, no overall score) with a name or number on a service whose counter rating
    was bad makes that rating's case real-name (and opens it if it has none: a rating stored
    before cases existed). A follow-up of a good rating opens nothing, whatever its indicators.
    `phone_row`: hub/store/phone_sql.py PHONE_COLUMNS; `before`: the service's PhoneState read
    before the submission."""
    from . import phone_sql
    rec = phone_sql.record(phone_row)
    info = before.info
    common = {"unit": rec["unit"], "window": rec["window_id"], "staff_id": rec["staff_id"],
              "matter_code": rec["matter_code"], "service": rec["service"], "real_name": rec["has_contact"]}
    if rec["kind"] == phone_sql.SUPPLEMENTARY:
        if rec["score"] is None or rec["score"] not in cases.BAD_SCORES:
            return []
        return [CaseSource("phone", phone_sql.ledger_ref(rec["service"], rec["kind"]), rec["hall"], rec["score"],
                           rec["submitted_at"], **common)]
    counter = before.counter
    if not rec["has_contact"] or counter is None or counter.score not in cases.BAD_SCORES:
        return []
    if info is not None:
        common.update(unit=info.unit, window=info.window, staff_id=info.staff_id, matter_code=info.matter_code)
    return [CaseSource("rating", counter.id, rec["hall"], counter.score, counter.received_at, **common)]


def _insert_row(p: cases.NewCase, at: str) -> tuple:
    s = p.source
    values = {
        "hall": s.hall, "region": p.region, "unit": s.unit, "source_unit": s.unit, "window_id": s.window,
        "staff_id": s.staff_id, "matter_code": s.matter_code, "service": s.service, "case_no": s.case_no,
        "rating_kind": s.kind, "rating_ref": s.ref, "score": s.score, "rated_at": s.rated_at,
        "real_name": s.real_name, "state": "new" if s.unit is not None else "unrouted", "appeal_from": None,
        "appellant": None, "rules": p.rules.to_json(), "rules_source": p.rules_source, "opened_at": p.opened_at,
        "route_due": p.dues["route"], "contact_due": p.dues["contact"], "fix_due": p.dues["fix"],
        "ledger_due": p.dues["ledger"], "ledger_until": None, "feedback_due": None, "estimated": p.estimated,
        "routed_at": p.opened_at if s.unit is not None else None, "contacted_at": None, "fixed_at": None,
        "fix_kind": None, "feedback_at": None, "closed_at": None, "decided_at": None, "last_satisfaction": None,
        "updated_at": at}
    return tuple(values[name] for name in _INSERT_NAMES)


# ---------------------------------------------------------------------------- transitions


def transition(case_id: int, action: str, actor: Actor, args: Mapping[str, Any], calendar: WorkCalendar,
               now: datetime | None = None) -> Tx[Case]:
    """Do `action` on case `case_id` as `actor` (hub.cases.apply checks it): update the case,
    append its event, store the callback it carries; a `decide` also stores the decision with its
    ledger entry and, for a rating not adopted, takes it out of satisfaction (statistics)."""
    moment = now or datetime.now(UTC)
    at = cases.iso(moment)
    if action == "decide":  # the ledger head before the case (module docstring: lock order)
        yield Sql("SELECT seq FROM ledger_head WHERE id = 1", lock=True)
    case = yield from _locked_case(case_id, actor)
    change = cases.apply(case, action, actor, args, moment, calendar)
    yield from _write_change(case, change, actor, at)
    if change.action == "decide":
        events = yield from _events(case_id)
        decision = cases.decision_record(case, change, [e.__dict__ for e in events], actor, at)
        yield from _store_decision(case, decision, change.not_adopted)
    rows = yield Sql(f"SELECT {CASE_COLUMNS} FROM cases WHERE id = ?", (case_id,))
    return case_record(rows[0])


def add_callback(case_id: int, actor: Actor, doc: Any, now: datetime | None = None) -> Tx[StoredCallback]:
    """Record a call to the rater that moves no state (an attempt that did not reach them, a
    further satisfaction callback). Any role that handles the case; not on a decided case."""
    moment = now or datetime.now(UTC)
    at = cases.iso(moment)
    case = yield from _locked_case(case_id, actor)
    if not actor.has_role(cases.HANDLER, cases.OPERATOR, cases.SUPERVISOR):
        raise CaseError(403, "callbacks: only a handler, operator or supervisor records them")
    if case.state == "not_adopted":
        raise CaseError(409, "callbacks: the rating was not adopted; the case is decided")
    callback = cases.Callback.from_dict(doc, purpose="other", now=moment, not_before=case.rated_at)
    rows = yield Sql(INSERT_CALLBACK + " RETURNING " + CALLBACK_COLUMNS,
                     (case_id, callback.at, at, actor.id, callback.purpose, callback.channel, callback.outcome,
                      callback.satisfaction, callback.note))
    yield Sql(INSERT_EVENT, [_event_row(case_id, at, actor.id, actor.role, "callback", case.state, case.state,
                                        {"channel": callback.channel, "outcome": callback.outcome,
                                         "satisfaction": callback.satisfaction, "purpose": callback.purpose})],
              many=True)
    yield Sql("UPDATE cases SET updated_at = ? WHERE id = ?", (at, case_id))
    return StoredCallback(*rows[0])


def _locked_case(case_id: int, actor: Actor) -> Tx[Case]:
    rows = yield Sql(f"SELECT {CASE_COLUMNS} FROM cases WHERE id = ?", (case_id,), lock=True)
    if not rows:
        raise CaseError(404, f"no case {case_id}")
    case = case_record(rows[0])
    if not actor.can_see(case):
        raise CaseError(404, f"no case {case_id} in your scope")  # 404, not 403: no existence leak
    return case


def _write_change(case: Case, change: Change, actor: Actor, at: str) -> Tx[None]:
    unknown = set(change.updates) - _UPDATABLE
    if unknown:
        raise AssertionError(f"not updatable: {sorted(unknown)}")
    names = sorted(change.updates)
    yield Sql(f"UPDATE cases SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?",
              [change.updates[n] for n in names] + [case.id])
    yield Sql(INSERT_EVENT, [_event_row(case.id, at, actor.id, actor.role, change.action, case.state,
                                        change.state, change.detail)], many=True)
    cb = change.callback
    if cb is not None:
        yield Sql(INSERT_CALLBACK, [(case.id, cb.at, at, actor.id, change.action, cb.channel, cb.outcome,
                                     cb.satisfaction, cb.note)], many=True)


def _events(case_id: int) -> Tx[list[CaseEvent]]:
    rows = yield Sql(f"SELECT {EVENT_COLUMNS} FROM case_events WHERE case_id = ? ORDER BY id", (case_id,))
    return [event_record(row) for row in rows]


def event_record(row: Sequence[Any]) -> CaseEvent:
    *fields_, detail = row
    return CaseEvent(*fields_, json.loads(detail))


def _store_decision(case: Case, d: Decision, not_adopted: bool) -> Tx[None]:
    """The decision's row and ledger entry; for a rating not adopted, its statistics (the same
    transaction, holding the ledger head, as every writer of counted records)."""
    from . import rollups
    key = yield from _stats_key(case)
    seq = None
    rows = yield Sql("SELECT seq FROM ledger WHERE kind = ? AND hall = ? AND ref = ?",
                     (case.rating_kind, case.hall, case.rating_ref))
    if rows:
        seq = rows[0][0]
    record = {"hall": d.hall, "ref": d.ledger_ref, "case_id": d.case_id, "rating_kind": d.rating_kind,
              "rating_ref": d.rating_ref, "rating_seq": seq, "outcome": d.outcome, "reason": d.reason,
              "appellant": d.appellant, "appeal_note": d.appeal_note, "verified_by": d.verified_by,
              "method": d.method, "verify_note": d.verify_note, "decided_by": d.decided_by,
              "decided_at": d.decided_at, "note": d.note, "stats_day": key[1], "stats_window": key[2],
              "stats_staff": key[3], "stats_matter": key[4], "stats_unit": key[5]}
    yield Sql(f"INSERT INTO appeal_decisions ({APPEAL_COLUMNS}) VALUES ({', '.join('?' * len(APPEAL_NAMES))})",
              [record[n] for n in APPEAL_NAMES])
    yield from append_ledger([ledger.Pending("appeal", d.hall, d.ledger_ref, record)], d.decided_at)
    if not_adopted:
        deltas = stats.Deltas()
        deltas.add(key, "not_adopted")
        for rollup, rows_ in rollups.delta_rows(deltas):
            yield Sql(rollups.upsert_sql(rollup.table, "?"), rows_, many=True)


def _stats_key(case: Case) -> Tx[stats.FineKey]:
    """The statistics key the rating is counted under: a device rating's own row (what ingest
    counted), else the case's fields as rated."""
    if case.rating_kind == "rating":
        device, _, n = case.rating_ref.rpartition(":")
        rows = yield Sql("SELECT received_at, window_id, staff_id, matter_code, unit FROM ratings "
                         "WHERE device = ? AND n = ?", (device, int(n)))
        if rows:
            received_at, window, staff, matter, unit = rows[0]
            return (case.hall, stats.china_day(received_at), window or stats.NONE, staff or stats.NONE,
                    matter or stats.NONE, unit or stats.NONE)
    return (case.hall, stats.china_day(case.rated_at), case.window or stats.NONE, case.staff_id or stats.NONE,
            case.matter_code or stats.NONE, case.source_unit or stats.NONE)


def append_ledger(pending: Sequence[ledger.Pending], at: str) -> Tx[None]:
    """Chain `pending` after the ledger head (locked on PostgreSQL), in the caller's transaction."""
    from . import tables
    rows = yield Sql("SELECT seq, hash FROM ledger_head WHERE id = 1", lock=True)
    entries = ledger.append(ledger.Head(*rows[0]), pending, at)
    yield Sql(f"INSERT INTO ledger ({tables.LEDGER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
              tables.ledger_rows(entries), many=True)
    yield Sql("UPDATE ledger_head SET seq = ?, hash = ? WHERE id = 1", (entries[-1].seq, entries[-1].hash))


# ---------------------------------------------------------------------------- rules, reminders


def put_rules(region: str, rules: CaseRules, actor: Actor) -> Tx[StoredRules]:
    if not actor.has_role(cases.OPERATOR, cases.SUPERVISOR):
        raise CaseError(403, "case rules: only an operator or supervisor sets them")
    if actor.region is not None and actor.region != region:
        raise CaseError(403, f"case rules: region {region} is not in your scope")
    if actor.role != cases.ADMIN and (actor.hall is not None or actor.unit is not None):
        raise CaseError(403, "case rules: a region's; a person limited to a hall or a unit does not set them")
    if not (yield Sql("SELECT 1 FROM regions WHERE region = ?", (region,))):
        raise CaseError(404, f"no region {region}: create it with PUT /api/v1/regions/{region}")
    at = _now_text()
    rows = yield Sql(f"INSERT INTO case_rules ({RULES_COLUMNS}) VALUES (?, ?, ?, ?) ON CONFLICT (region) DO UPDATE "
                     "SET rules = excluded.rules, updated_at = excluded.updated_at, updated_by = excluded.updated_by "
                     f"RETURNING {RULES_COLUMNS}", (region, rules.to_json(), at, actor.id))
    return rules_record(rows[0])


def rules_record(row: Sequence[Any]) -> StoredRules:
    region, rules, updated_at, updated_by = row
    return StoredRules(region, CaseRules.from_json(rules), updated_at, updated_by)


def write_reminders(reminders: Sequence[Reminder], at: str) -> Tx[int]:
    """Store each reminder once (its case, step, kind and deadline); -> how many were new."""
    count = 0
    for start in range(0, len(reminders), INSERT_CHUNK):
        chunk = reminders[start:start + INSERT_CHUNK]
        marks = ", ".join("(?, ?, ?, ?, ?, ?, ?)" for _ in chunk)
        rows = yield Sql(f"INSERT INTO case_reminders ({REMINDER_COLUMNS}) VALUES {marks} "
                         "ON CONFLICT (case_id, deadline, kind, due_at) DO NOTHING RETURNING case_id",
                         [v for r in chunk for v in (r.case_id, r.deadline, r.kind, r.due_at, r.hall, r.unit, at)])
        count += len(rows)
    return count


# ---------------------------------------------------------------------------- the store part


class CaseStore:
    """The cases part of every HubStore (hub/store/base.py inherits it). A backend provides
    `_case_tx(make)`: run the Tx `make()` returns in one write transaction (again from the start
    if the backend retries), and `_case_in_ingest` hooks (sqlite.py, postgres.py)."""

    param: str
    case_calendar: WorkCalendar | None = None  # the app sets the hub's calendar (holiday files)

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Sequence[Any]]:
        raise NotImplementedError

    async def _case_tx(self, make: Callable[[], Tx[T]]) -> T:
        raise NotImplementedError

    def calendar_for_cases(self) -> WorkCalendar:
        if self.case_calendar is None:
            self.case_calendar = WorkCalendar.load()
        return self.case_calendar

    async def _case_rows(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Sequence[Any]]:
        return await self._rows(sql.replace("?", self.param), params)

    # -- writes

    async def open_case(self, source: CaseSource, now: datetime | None = None) -> CaseOpened | None:
        """Open the case of one bad rating stored by another path (the phone rating page) in a
        transaction of its own; None if the rating is not bad. Prefer calling `open_cases` inside
        the transaction that stores the rating (run_sqlite / run_pg), so both commit together."""
        calendar = self.calendar_for_cases()
        found = await self._case_tx(lambda: open_cases([source], calendar, now))
        return found[0] if found else None

    async def case_transition(self, case_id: int, action: str, actor: Actor, args: Mapping[str, Any],
                              now: datetime | None = None) -> Case:
        """Do `action` (hub.cases.ACTIONS) on the case as `actor`; raises CaseError with the HTTP
        status and reason when it may not be done."""
        calendar = self.calendar_for_cases()
        return await self._case_tx(lambda: transition(case_id, action, actor, args, calendar, now))

    async def add_case_callback(self, case_id: int, actor: Actor, callback: Any,
                                now: datetime | None = None) -> StoredCallback:
        return await self._case_tx(lambda: add_callback(case_id, actor, callback, now))

    async def put_case_rules(self, region: str, rules: CaseRules, actor: Actor) -> StoredRules:
        """Set a region's limits (new cases use them; open cases keep theirs)."""
        return await self._case_tx(lambda: put_rules(region, rules, actor))

    async def run_case_reminders(self, now: datetime | None = None) -> int:
        """Write the reminders due by `now` for every open case (hub.cases.reminders_due), each
        once: safe to run at any time, from several hubs. -> how many were new."""
        moment = now or datetime.now(UTC)
        due: list[Reminder] = []
        after = 0
        while rows := await self._case_rows(
                f"SELECT {CASE_COLUMNS} FROM cases WHERE {OPEN_STATES_SQL} AND id > ? ORDER BY id LIMIT 1000",
                (after,)):
            for row in rows:
                due += cases.reminders_due(case_record(row), moment)
            after = rows[-1][0]
        if not due:
            return 0
        at = cases.iso(moment)
        return await self._case_tx(lambda: write_reminders(due, at))

    # -- reads

    async def get_case(self, case_id: int, actor: Actor | None = None) -> Case | None:
        """The case, or None if there is none or it is out of `actor`'s scope."""
        rows = await self._case_rows(f"SELECT {CASE_COLUMNS} FROM cases WHERE id = ?", (case_id,))
        if not rows:
            return None
        case = case_record(rows[0])
        return case if actor is None or actor.can_see(case) else None

    async def list_cases(self, query: CaseQuery, now: datetime | None = None) -> tuple[list[Case], int]:
        """Cases matching `query`, newest first (by id), at most `query.limit`; and how many match
        in all (without `before`)."""
        moment = now or datetime.now(UTC)
        where, params = query.where(moment)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = await self._case_rows(f"SELECT {CASE_COLUMNS} FROM cases {clause}ORDER BY id DESC LIMIT ?",
                                     [*params, query.limit])
        total_where, total_params = CaseQuery(**{**query.__dict__, "before": None}).where(moment)
        total_clause = f"WHERE {' AND '.join(total_where)}" if total_where else ""
        (total,), = await self._case_rows(f"SELECT COUNT(*) FROM cases {total_clause}", total_params)
        return [case_record(row) for row in rows], int(total)

    async def case_events(self, case_id: int) -> list[CaseEvent]:
        rows = await self._case_rows(f"SELECT {EVENT_COLUMNS} FROM case_events WHERE case_id = ? ORDER BY id",
                                     (case_id,))
        return [event_record(row) for row in rows]

    async def case_callbacks(self, case_id: int) -> list[StoredCallback]:
        rows = await self._case_rows(f"SELECT {CALLBACK_COLUMNS} FROM case_callbacks WHERE case_id = ? "
                                     "ORDER BY id", (case_id,))
        return [StoredCallback(*row) for row in rows]

    async def case_reminders(self, *, case_id: int | None = None, query: CaseQuery | None = None,
                             limit: int = 100) -> list[StoredReminder]:
        """Reminders, newest first: of one case, or of the cases `query` selects (its scope)."""
        where, params = ([], []) if query is None else query.where(datetime.now(UTC), "c")
        if case_id is not None:
            where.append("r.case_id = ?")
            params.append(case_id)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        columns = ", ".join(f"r.{c.strip()}" for c in REMINDER_COLUMNS.split(","))
        rows = await self._case_rows(f"SELECT {columns} FROM case_reminders r JOIN cases c ON c.id = r.case_id "
                                     f"{clause}ORDER BY r.at DESC, r.case_id DESC, r.deadline, r.kind LIMIT ?",
                                     [*params, limit])
        return [StoredReminder(*row) for row in rows]

    async def get_case_rules(self, region: str) -> StoredRules | None:
        rows = await self._case_rows(f"SELECT {RULES_COLUMNS} FROM case_rules WHERE region = ?", (region,))
        return rules_record(rows[0]) if rows else None

    async def list_case_rules(self) -> list[StoredRules]:
        rows = await self._case_rows(f"SELECT {RULES_COLUMNS} FROM case_rules ORDER BY region")
        return sorted((rules_record(row) for row in rows), key=lambda r: r.region.encode())

    async def case_rates(self, query: CaseQuery, now: datetime | None = None) -> list[cases.UnitRates]:
        """Per unit, over the cases `query` selects (its paging ignored): hub.cases.unit_rates."""
        moment = now or datetime.now(UTC)
        where, params = CaseQuery(**{**query.__dict__, "before": None}).where(moment, "c")
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        columns = ", ".join(f"c.{n}" for n in _CASE_NAMES)
        rows = await self._case_rows(
            f"SELECT {columns}, EXISTS (SELECT 1 FROM case_callbacks cb WHERE cb.case_id = c.id "
            f"AND cb.outcome = 'reached') FROM cases c {clause}", params)
        return cases.unit_rates(((case_record(row[:-1]), bool(row[-1])) for row in rows), moment)

    async def _appeal_ledger_records(self, entries: Sequence[ledger.Entry]) -> dict[tuple[str, str, str], dict]:
        """The appeal decisions `entries` name, as their ledger digests cover them."""
        found: dict[tuple[str, str, str], dict] = {}
        for e in entries:
            if e.kind != "appeal":
                continue
            rows = await self._case_rows(f"SELECT {APPEAL_COLUMNS} FROM appeal_decisions WHERE hall = ? AND ref = ?",
                                         (e.hall, e.ref))
            if rows:
                found[("appeal", e.hall, e.ref)] = dict(zip(APPEAL_NAMES, rows[0], strict=True))
        return found

    async def appeal_decision(self, case_id: int) -> dict | None:
        rows = await self._case_rows(f"SELECT {APPEAL_COLUMNS} FROM appeal_decisions WHERE case_id = ?", (case_id,))
        return dict(zip(APPEAL_NAMES, rows[0], strict=True)) if rows else None
