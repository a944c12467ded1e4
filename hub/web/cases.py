"""The bad-review case pages (docs/cases.md, "Pages"): the list with filters (overdue cases
marked), one case with its deadlines, history and the forms of the actions the person may take,
the 台账 (ledger) view, and the per-unit rates. Forms work without JavaScript and carry the
session's CSRF token; every action goes through the same store call as the JSON API
(hub/store/cases_sql.py), so role, scope and state are checked in one place (hub/cases.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import RedirectResponse, Response

from .. import cases
from ..accounts.deps import form_principal, require_page_role
from ..accounts.model import Principal, Role
from ..api.deps import StoreDep
from ..api.routes.cases import actor_of, rater_contacts
from ..phone.contacts import Contact, NotAllowed, read_contact
from ..phone.crypto import SealError
from ..cases import CHINA_TZ, Case, CaseError
from ..store.cases_sql import CaseQuery
from .templating import render

PAGE_SIZE = 50
HANDLING = (Role.HANDLER, Role.OPERATOR, Role.SUPERVISOR)
router = APIRouter(include_in_schema=False)

Reader = Annotated[Principal, Depends(require_page_role(*HANDLING))]
FigureReader = Annotated[Principal, Depends(require_page_role(*HANDLING, Role.AUDITOR))]
Poster = Annotated[Principal, Depends(form_principal(*HANDLING))]

CHANNEL_LABELS = {"phone": "电话 phone", "sms": "短信 SMS", "visit": "上门 visit", "wechat": "微信 WeChat",
                  "letter": "信函 letter", "other": "其他 other"}
OUTCOME_LABELS = {"reached": "已联系上 reached", "unreachable": "未接通 unreachable", "refused": "拒绝沟通 refused",
                  "anonymous": "匿名无法联系 anonymous"}
SATISFACTION_LABELS = {"satisfied": "满意 satisfied", "basically_satisfied": "基本满意 basically satisfied",
                       "dissatisfied": "不满意 dissatisfied"}
METHOD_LABELS = {"spot_check": "抽查 spot check", "records": "调阅档案 records", "site_visit": "实地察看 site visit",
                 "phone_callback": "电话回访 phone callback"}
REASON_LABELS = {"mistaken": "误评 mistaken", "malicious": "恶意差评 malicious"}
DEADLINE_LABELS = {"route": "分派 route", "contact": "联系评价人 contact", "fix": "整改 fix",
                   "feedback": "满意度回访 feedback"}
STATUS_LABELS = {"met": "按时 met", "late": "超时完成 late", "pending": "未到期 pending", "overdue": "逾期 overdue",
                 "void": "不再计算 void"}


def cn(text: str | None, *, day: bool = False) -> str:
    """A stored time as China time, for people: "2026-11-21 17:30" (or the day)."""
    if not text:
        return ""
    try:
        moment = datetime.fromisoformat(text).astimezone(CHINA_TZ)
    except (ValueError, OverflowError):
        return text
    return moment.strftime("%Y-%m-%d" if day else "%Y-%m-%d %H:%M")


def deadline_day(text: str | None) -> str:
    """A deadline (00:00 China time after its last day) as that last day."""
    if not text:
        return ""
    moment = datetime.fromisoformat(text).astimezone(CHINA_TZ)
    if (moment.hour, moment.minute) == (0, 0):
        return (moment - timedelta(days=1)).date().isoformat()
    return moment.strftime("%Y-%m-%d %H:%M")


def _context(**values: Any) -> dict[str, Any]:
    return {"cn": cn, "deadline_day": deadline_day, "labels": cases.STATE_LABELS,
            "deadline_labels": DEADLINE_LABELS, "status_labels": STATUS_LABELS,
            "channels": CHANNEL_LABELS, "outcomes": OUTCOME_LABELS, "satisfactions": SATISFACTION_LABELS,
            "methods": METHOD_LABELS, "reasons": REASON_LABELS, "actions": cases.ACTIONS,
            "levels": {1: "非常不满意", 2: "不满意"},
            "event_labels": {"open": "受理 opened", "callback": "回访 call", "real_name": "补充实名 real name added"},
            **values}


def _blank(value: str | None) -> str | None:
    return value.strip() or None if value is not None else None


def _day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _filters(state: str | None, unit: str | None, hall: str | None, overdue: str | None, show: str | None,
             start: str | None, end: str | None) -> tuple[CaseQuery, dict[str, str]]:
    """The list's filters from the form (every field optional; a value that is not one is ignored
    and shown back as empty)."""
    form = {"state": _blank(state) or "", "unit": _blank(unit) or "", "hall": _blank(hall) or "",
            "overdue": "1" if overdue else "", "show": show if show in ("open", "all") else "open",
            "from": start if _day(start) else "", "to": end if _day(end) else ""}
    states = tuple(form["state"].split(",")) if form["state"] and all(
        s in cases.STATES for s in form["state"].split(",")) else ()
    if not states:
        form["state"] = ""
    query = CaseQuery(hall=form["hall"] or None, unit=form["unit"] or None, states=states,
                      open=True if form["show"] == "open" and not states else None,
                      overdue=True if form["overdue"] else None,
                      opened_from=_day(form["from"]), opened_to=_day(form["to"]), limit=PAGE_SIZE)
    return query, form


@router.get("/cases")
async def case_list(request: Request, store: StoreDep, principal: Reader,
                    state: Annotated[str | None, Query(max_length=300)] = None,
                    unit: Annotated[str | None, Query(max_length=200)] = None,
                    hall: Annotated[str | None, Query(max_length=64)] = None,
                    overdue: Annotated[str | None, Query(max_length=5)] = None,
                    show: Annotated[str | None, Query(max_length=5)] = None,
                    start: Annotated[str | None, Query(alias="from", max_length=10)] = None,
                    end: Annotated[str | None, Query(alias="to", max_length=10)] = None,
                    before: Annotated[int | None, Query(ge=1, le=2**53)] = None) -> Response:
    now = datetime.now(UTC)
    query, form = _filters(state, unit, hall, overdue, show, start, end)
    actor = await actor_of(principal)
    found, total = await store.list_cases(replace(query, before=before).seen_by(actor), now)
    next_link = None
    if len(found) == PAGE_SIZE:
        next_link = "/cases?" + urlencode({**{k: v for k, v in form.items() if v}, "before": found[-1].id})
    overdue_count = (await store.list_cases(replace(query, overdue=True, open=None, limit=1).seen_by(actor), now))[1]
    return render(request, "cases/list.html", _context(
        rows=[(c, c.overdue(now), _next_deadline(c, now)) for c in found], total=total, form=form,
        next_link=next_link, overdue_count=overdue_count, states=cases.STATES))


TO_DO_SHOWN = 10  # of each kind on the home page; the rest are a link away
DUE_SOON_SCAN = 1000  # open cases due within a day looked at for the due-soon list


@dataclass(frozen=True)
class ToDo:
    """A person's to-do on the home page: open cases in their scope with a step overdue, those
    with a step due soon (the reminders' `due_soon`: its last day has begun, or 6 hours before an
    hour limit), and for a supervisor the appeals waiting for them. Each list holds at most
    TO_DO_SHOWN; the counts are all of them."""

    overdue: list[tuple[Case, cases.Reminder]]  # newest case first, its earliest overdue step
    overdue_count: int
    due_soon: list[tuple[Case, cases.Reminder]]  # the soonest due first
    due_soon_count: int
    due_soon_more: bool  # more cases are due within a day than were looked at: the count is a floor
    appeals: list[tuple[Case, str]]  # appeals this person may verify or decide now, oldest first, and which
    appeals_count: int


async def to_do_of(store, principal: Principal, now: datetime) -> ToDo | None:
    """The to-do of a person who handles cases (None for other roles)."""
    if not principal.has_role(*HANDLING):
        return None
    actor = await actor_of(principal)
    open_late = CaseQuery(open=True, overdue=True, limit=TO_DO_SHOWN).seen_by(actor)
    late, late_count = await store.list_cases(open_late, now)
    overdue = []
    for c in late:
        steps = [r for r in cases.reminders_due(c, now) if r.kind == "overdue"]  # as the SQL found: one at least
        if steps:
            overdue.append((c, min(steps, key=lambda r: r.due_at)))
    # every due-soon reminder is for a step due within a day: the cases not overdue now that are
    # a day from now hold them all
    within_a_day, near_count = await store.list_cases(
        replace(open_late, due_by=now + timedelta(days=1), limit=DUE_SOON_SCAN), now)
    soon = []
    for c in within_a_day:
        due = [r for r in cases.reminders_due(c, now) if r.kind == "due_soon"]
        if due:
            soon.append((c, min(due, key=lambda r: r.due_at)))
    soon.sort(key=lambda item: (item[1].due_at, item[0].id))
    appeals = []  # a supervisor's: appeals to verify or decide (not one's own: hub.cases.allowed_actions)
    if principal.has_role(Role.SUPERVISOR):
        waiting, _ = await store.list_cases(
            CaseQuery(states=("appealed", "verified"), limit=DUE_SOON_SCAN).seen_by(actor), now)
        for c in sorted(waiting, key=lambda c: c.id):
            step = [a for a in cases.allowed_actions(c, actor) if a in ("verify", "decide")]
            if step:
                appeals.append((c, step[0]))
    return ToDo(overdue, late_count, soon[:TO_DO_SHOWN], len(soon), near_count > len(within_a_day),
                appeals[:TO_DO_SHOWN], len(appeals))


async def home_context(store, principal: Principal) -> dict[str, Any]:
    """What the home page shows of the cases: the person's to-do (`to_do`: None for a role that
    handles no cases) and what its template needs."""
    return _context(to_do=await to_do_of(store, principal, datetime.now(UTC)))


def _next_deadline(case: Case, now: datetime) -> cases.DeadlineStatus | None:
    """The step due first among those not done (what the list shows)."""
    waiting = [d for d in case.deadlines(now) if d.status in ("pending", "overdue")]
    return min(waiting, key=lambda d: d.due) if waiting else None


@router.get("/cases/ledger")
async def ledger_page(request: Request, store: StoreDep, principal: Reader,
                      show: Annotated[str | None, Query(max_length=5)] = None,
                      before: Annotated[int | None, Query(ge=1, le=2**53)] = None) -> Response:
    """整改台账: every case that went into the ledger, with its date and whether it is overdue."""
    now = datetime.now(UTC)
    query = CaseQuery(ledger=True, open=None if show == "all" else True, before=before, limit=PAGE_SIZE)
    found, total = await store.list_cases(query.seen_by(await actor_of(principal)), now)
    next_link = None
    if len(found) == PAGE_SIZE:
        next_link = "/cases/ledger?" + urlencode({"show": show or "open", "before": found[-1].id})
    return render(request, "cases/ledger.html", _context(
        rows=[(c, c.overdue(now)) for c in found], total=total, show="all" if show == "all" else "open",
        next_link=next_link))


@router.get("/cases/rates")
async def rates_page(request: Request, store: StoreDep, principal: FigureReader,
                     start: Annotated[str | None, Query(alias="from", max_length=10)] = None,
                     end: Annotated[str | None, Query(alias="to", max_length=10)] = None) -> Response:
    """实名差评回访率、整改率 per unit over the cases opened in the days chosen."""
    now = datetime.now(UTC)
    first, last = _day(start), _day(end)
    query = CaseQuery(opened_from=first, opened_to=last)
    rows = await store.case_rates(query.seen_by(await actor_of(principal)), now)
    return render(request, "cases/rates.html", _context(
        rows=rows, form={"from": first.isoformat() if first else "", "to": last.isoformat() if last else ""}))


async def _detail(request: Request, store, principal: Principal, case_id: int, *,
                  error: str | None = None, status_code: int = 200, done: str | None = None,
                  unmasked: list[tuple[str, Contact]] | None = None) -> Response:
    now = datetime.now(UTC)
    actor = await actor_of(principal)
    case = await store.get_case(case_id, actor)
    if case is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"没有这个工单。There is no case {case_id} in your scope.")
    return render(request, "cases/detail.html", _context(
        contacts=unmasked if unmasked is not None else await rater_contacts(store, request, case),
        unmasked=unmasked is not None, may_unmask=principal.may_unmask,
        case=case, deadlines=case.deadlines(now), overdue=case.overdue(now),
        events=await store.case_events(case_id), callbacks=await store.case_callbacks(case_id),
        reminders=await store.case_reminders(case_id=case_id), decision=await store.appeal_decision(case_id),
        allowed=cases.allowed_actions(case, actor), error=error, done=done,
        now_local=now.astimezone(CHINA_TZ).strftime("%Y-%m-%dT%H:%M"),
        today=now.astimezone(CHINA_TZ).date().isoformat(),
        rules=case.case_rules), status_code=status_code)


@router.get("/cases/{case_id}")
async def case_page(request: Request, store: StoreDep, principal: Reader, case_id: int,
                    done: Annotated[str | None, Query(max_length=20)] = None) -> Response:
    if not 1 <= case_id <= 2**53:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"没有这个工单。There is no case {case_id}.")
    return await _detail(request, store, principal, case_id, done=done if done in cases.ACTIONS or done == "callback" else None)


def _callback(form: Any) -> dict[str, Any]:
    """A callback from the form: `callback_at` is datetime-local, read as China time."""
    at = str(form.get("callback_at") or "").strip()
    doc: dict[str, Any] = {"at": f"{at}:00+08:00" if len(at) == 16 else at, "channel": form.get("channel"),
                           "outcome": form.get("outcome")}
    satisfaction = str(form.get("satisfaction") or "")
    if satisfaction:
        doc["satisfaction"] = satisfaction
    note = str(form.get("callback_note") or "").strip()
    if note:
        doc["note"] = note
    return doc


def action_args(action: str, form: Any) -> dict[str, Any]:
    """An action's arguments (hub.cases.apply) from its form's fields."""
    args: dict[str, Any] = {}
    note = str(form.get("note") or "").strip()
    if note:
        args["note"] = note
    if action == "route":
        args["unit"] = str(form.get("unit") or "").strip()
    elif action in ("contact", "feedback"):
        args["callback"] = _callback(form)
    elif action == "ledger":
        args["until"] = str(form.get("until") or "")
    elif action == "verify":
        args["method"] = form.get("method")
    elif action == "decide":
        args["outcome"] = form.get("outcome")
        reason = str(form.get("reason") or "")
        if reason:
            args["reason"] = reason
    return args


@router.post("/cases/{case_id}/act")
async def act(request: Request, store: StoreDep, principal: Poster, case_id: int) -> Response:
    """One action from the case page's forms; back to the case (303), or the page again with the
    reason when it was refused."""
    form = await request.form()
    action = str(form.get("action") or "")
    try:
        if action not in cases.ACTIONS:
            raise CaseError(422, f"没有这个操作 no action {action!r}")
        await store.case_transition(case_id, action, await actor_of(principal), action_args(action, form))
    except CaseError as exc:
        if exc.status == 404:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"没有这个工单。There is no case {case_id} in your scope.")
        return await _detail(request, store, principal, case_id, error=str(exc), status_code=exc.status)
    return RedirectResponse(f"/cases/{case_id}?done={action}", status_code=303)


@router.post("/cases/{case_id}/callback")
async def record_callback(request: Request, store: StoreDep, principal: Poster, case_id: int) -> Response:
    """A call that moves no state (a rater not reached, a later satisfaction callback)."""
    form = await request.form()
    try:
        await store.add_case_callback(case_id, await actor_of(principal), _callback(form))
    except CaseError as exc:
        if exc.status == 404:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"没有这个工单。There is no case {case_id} in your scope.")
        return await _detail(request, store, principal, case_id, error=str(exc), status_code=exc.status)
    return RedirectResponse(f"/cases/{case_id}?done=callback", status_code=303)


@router.post("/cases/{case_id}/contact")
async def unmask_contact(request: Request, store: StoreDep,
                         principal: Annotated[Principal, Depends(form_principal(Role.OPERATOR, Role.SUPERVISOR))],
                         case_id: int) -> Response:
    """The rater's name and number unmasked, for an operator or supervisor who gives a reason: each
    read goes to the audit log first (hub/phone/contacts.py `read_contact`, `personal_data_read`);
    shown in this answer only, never stored in the case. Never for a unit handler."""
    form = await request.form()
    reason = str(form.get("reason") or "").strip()
    case = await store.get_case(case_id, await actor_of(principal))
    if case is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"没有这个工单。There is no case {case_id} in your scope.")
    phone = getattr(request.app.state, "phone", None)
    if phone is None or phone.keyring is None or case.service is None:
        return await _detail(request, store, principal, case_id, status_code=404,
                             error="没有评价人联系方式 No contact details are kept for this case.")
    shown: list[tuple[str, Contact]] = []
    try:
        for kind, _ in await rater_contacts(store, request, case):
            contact = await read_contact(store, phone.keyring, hall=case.hall, service=case.service, kind=kind,
                                         principal=principal, reason=f"case {case_id}: {reason}" if reason else "")
            if contact is not None:
                shown.append((kind, contact))
    except NotAllowed as exc:
        return await _detail(request, store, principal, case_id, status_code=422 if "reason" in str(exc) else 403,
                             error=f"请说明查看原因 {exc}")
    except SealError as exc:
        return await _detail(request, store, principal, case_id, status_code=409,
                             error=f"联系方式无法解密 The contact cannot be opened: {exc}")
    return await _detail(request, store, principal, case_id, unmasked=shown)
