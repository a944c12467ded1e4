"""Bad-review cases (docs/cases.md): the list with filters and pages, one case with its history,
the actions on it (transitions, appeals among them), callbacks, reminders, the 台账 (ledger) view,
per-unit rates, and each region's limits. The logic is in hub/cases.py and the store
(hub/store/cases_sql.py); these routes only translate.

Who: a signed-in person (session cookie; writes carry X-CSRF-Token) or the admin token (every
role, whole hub, acting as `admin-token`), docs/accounts.md. Reads are narrowed to the person's
scope (a handler: its unit's cases only); a case out of scope is 404, as if it did not exist.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import BeforeValidator

from ... import cases
from ...accounts.deps import require_role
from ...accounts.model import Principal, Role
from ...accounts.scope import visible_halls, visible_regions
from ...cases import Actor, CaseError
from ...phone.contacts import Contact, masked
from ...store.cases_sql import CaseQuery
from ..case_models import (
    CallbackIn,
    CallbackOut,
    CaseDetailOut,
    CaseListOut,
    CaseOut,
    DecisionOut,
    EventOut,
    PresetOut,
    RaterContactOut,
    RatesListOut,
    RatesOut,
    ReminderOut,
    RemindersRunOut,
    RulesOut,
    RulesPut,
    TransitionIn,
)
from ..deps import BODY_ERRORS, StoreDep
from ..models import HALL_PATTERN, REGION_PATTERN, Problem

router = APIRouter(prefix="/cases", tags=["cases"], responses={
    401: {"model": Problem, "description": "neither the admin token nor a session"},
    403: {"model": Problem, "description": "not a role that may do this (or no X-CSRF-Token with the session)"}})

HANDLING = (Role.HANDLER, Role.OPERATOR, Role.SUPERVISOR)
Handling = Annotated[Principal, Depends(require_role(*HANDLING))]
Managing = Annotated[Principal, Depends(require_role(Role.OPERATOR, Role.SUPERVISOR))]
FigureReaders = Annotated[Principal, Depends(require_role(*HANDLING, Role.AUDITOR))]
CASE_ERRORS: dict[int | str, dict] = {
    403: {"model": Problem, "description": "the person acting may not do this (role, or the appellant deciding)"},
    404: {"model": Problem, "description": "no such case in the acting person's scope"},
    409: {"model": Problem, "description": "not from the case's state (or appealed once already)"}}
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_STATE = "|".join(cases.STATES)
STATES_PATTERN = f"^(?:{_STATE})(?:,(?:{_STATE}))*$"


def _day_text(value: object) -> object:
    if isinstance(value, str) and not _DAY.fullmatch(value):
        raise ValueError("a day is written YYYY-MM-DD")
    return value


Day = Annotated[date, BeforeValidator(_day_text)]
CaseId = Annotated[int, Path(ge=1, le=2**53)]


async def actor_of(principal: Principal) -> Actor:
    """The person acting, for hub.cases: login, role, scope, and the halls in scope now."""
    halls = await visible_halls(principal)
    s = principal.scope
    return Actor(principal.login, principal.role, s.region, s.hall, s.unit,
                 halls=frozenset(halls) if halls is not None else None)


async def rater_contacts(store, request: Request, case: cases.Case) -> list[tuple[str, Contact]]:
    """The rater's name and number for this case, masked (hub/phone/contacts.py): of the phone
    ratings of the case's service (a 补充评价 whose case this is, a 追加评价 with contact details
    on a counter rating's case). Unmasked only through `read_contact` (audited)."""
    if case.service is None:
        return []
    phone = getattr(request.app.state, "phone", None)
    found = []
    for rating in await store.phone_ratings(hall=case.hall, service=case.service, limit=10):
        contact = masked(phone.keyring if phone is not None else None, rating)
        if contact is not None:
            found.append((rating.kind, contact))
    return found


def _raise(exc: CaseError) -> Exception:
    """The answer to a refused action: 403, 404, 409 `{"detail": reason}`; a bad argument is a 422
    in the shape of every 422 of the hub (a list of errors), located in the body."""
    if exc.status == 422:
        return RequestValidationError([{"type": "value_error", "loc": ["body"], "input": None, "msg": str(exc)}])
    return HTTPException(exc.status, str(exc))


class Filters:
    """The filters every list takes (query parameters)."""

    def __init__(
            self,
            hall: Annotated[str | None, Query(pattern=HALL_PATTERN)] = None,
            region: Annotated[str | None, Query(pattern=REGION_PATTERN)] = None,
            unit: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
            unrouted: Annotated[bool | None, Query(description="true: only unrouted cases; false: only routed")] = None,
            state: Annotated[str | None, Query(description="states, comma-separated", pattern=STATES_PATTERN)] = None,
            open: Annotated[bool | None, Query(description="true: not closed or decided")] = None,  # noqa: A002
            overdue: Annotated[bool | None, Query(description="true: some step past its deadline")] = None,
            start: Annotated[Day | None, Query(alias="from", description="opened on or after (YYYY-MM-DD, China)")] = None,
            end: Annotated[Day | None, Query(alias="to", description="opened on or before (YYYY-MM-DD, China)")] = None,
    ) -> None:
        states = tuple(state.split(",")) if state else ()  # a `to` before `from` selects nothing
        self.query = CaseQuery(hall=hall, region=region, unit=unit, unrouted=unrouted, states=states, open=open,
                               overdue=overdue, opened_from=start, opened_to=end)


FiltersDep = Annotated[Filters, Depends()]


@router.get("", response_model=CaseListOut)
async def list_cases(store: StoreDep, principal: Handling, filters: FiltersDep,
                     before: Annotated[int | None, Query(ge=1, le=2**53, description="page: cases with an id below this")] = None,
                     limit: Annotated[int, Query(ge=1, le=500)] = 50) -> CaseListOut:
    """Cases in the person's scope matching every filter, newest first; `total` counts them all,
    `next_before` pages on."""
    now = datetime.now(UTC)
    query = replace(filters.query, before=before, limit=limit).seen_by(await actor_of(principal))
    found, total = await store.list_cases(query, now)
    next_before = found[-1].id if len(found) == limit and found else None
    return CaseListOut(total=total, cases=[CaseOut.of(c, now) for c in found], next_before=next_before)


@router.get("/ledger", response_model=CaseListOut)
async def ledger_view(store: StoreDep, principal: Handling, filters: FiltersDep,
                      before: Annotated[int | None, Query(ge=1, le=2**53)] = None,
                      limit: Annotated[int, Query(ge=1, le=500)] = 50) -> CaseListOut:
    """The 台账: cases that went into the ledger (long-term rectification), newest first, with
    their ledger dates and whether they are overdue; the same filters as the list."""
    now = datetime.now(UTC)
    query = replace(filters.query, ledger=True, before=before, limit=limit).seen_by(await actor_of(principal))
    found, total = await store.list_cases(query, now)
    next_before = found[-1].id if len(found) == limit and found else None
    return CaseListOut(total=total, cases=[CaseOut.of(c, now) for c in found], next_before=next_before)


@router.get("/rates", response_model=RatesListOut)
async def rates(store: StoreDep, principal: FigureReaders, filters: FiltersDep) -> RatesListOut:
    """Per unit (unrouted last, as `unit` null) over the cases the filters select (e.g. opened in a
    month: `from`, `to`): counts, the real-name callback rate and the rectification rate; cases
    decided not adopted are left out of both rates."""
    now = datetime.now(UTC)
    per_unit = await store.case_rates(filters.query.seen_by(await actor_of(principal)), now)
    total = cases.UnitRates(None)
    for r in per_unit:
        for name in ("cases", "open", "overdue", "not_adopted", "rectified", "explained", "real_name",
                     "real_name_reached", "reached"):
            setattr(total, name, getattr(total, name) + getattr(r, name))
    q = filters.query
    return RatesListOut.model_validate({
        "from": q.opened_from.isoformat() if q.opened_from else None,
        "to": q.opened_to.isoformat() if q.opened_to else None,
        "units": [RatesOut(**r.as_dict()) for r in per_unit],
        "total": RatesOut(**total.as_dict())})


@router.get("/reminders", response_model=list[ReminderOut])
async def reminders(store: StoreDep, principal: Handling, filters: FiltersDep,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[ReminderOut]:
    """Reminders the job wrote (due soon, overdue), newest first, of the cases in the person's
    scope the filters select: a unit handler's to-do list."""
    query = filters.query.seen_by(await actor_of(principal))
    return [ReminderOut.of(r) for r in await store.case_reminders(query=query, limit=limit)]


@router.post("/reminders/run", response_model=RemindersRunOut, responses={403: {"description": "scoped"}})
async def run_reminders(store: StoreDep, principal: Managing) -> RemindersRunOut:
    """Write the reminders due now (the hub also runs this every `case_reminders_interval_s`); each
    reminder is written once, so running it again writes nothing new. The job covers every case of
    the hub and answers its count, so only an operator or supervisor of the whole hub runs it."""
    if (await actor_of(principal)).scope_filter():
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the reminder job runs for the whole hub: only an "
                            "operator or supervisor without a region, hall or unit runs it")
    return RemindersRunOut(written=await store.run_case_reminders())


@router.get("/presets", response_model=list[PresetOut])
async def presets(_: FigureReaders) -> list[PresetOut]:
    """The regions' limits as their own documents state them (DOMAIN.md; shared/seeds/)."""
    return [PresetOut(key=p.key, name=p.name, limits=p.rules.to_dict()["limits"], source=p.source)
            for p in cases.PRESETS.values()]


@router.get("/rules", response_model=list[RulesOut])
async def list_rules(store: StoreDep, principal: FigureReaders) -> list[RulesOut]:
    """The limits set for the regions in the person's scope (the region of its hall, for one
    limited to a hall); a region without is on the preset `2-5-15` (docs/cases.md, "Deadlines")."""
    regions = await visible_regions(principal)
    return [RulesOut.of(r) for r in await store.list_case_rules() if regions is None or r.region in regions]


@router.put("/rules/{region}", response_model=RulesOut,
            responses={**BODY_ERRORS, **CASE_ERRORS})
async def put_rules(store: StoreDep, principal: Managing, region: Annotated[str, Path(pattern=REGION_PATTERN)],
                    body: RulesPut) -> RulesOut:
    """Set a region's limits (operators and supervisors of the region): a preset, limits of its
    own, or a preset with some limits changed. Cases opened from now on use them; open cases keep
    the limits they opened with."""
    try:
        return RulesOut.of(await store.put_case_rules(region, body.rules(), await actor_of(principal)))
    except CaseError as exc:
        raise _raise(exc) from None


@router.get("/{case_id}", response_model=CaseDetailOut, responses={404: CASE_ERRORS[404]})
async def get_case(store: StoreDep, request: Request, principal: Handling, case_id: CaseId) -> CaseDetailOut:
    """One case with its deadlines, history, callbacks, reminders and appeal decision, the actions
    the person asking may take on it now, and the rater's contact details masked (unmasked, for
    operators and supervisors, audited: `POST /api/v1/phone/ratings/{hall}/{service}/{kind}/contact`)."""
    now = datetime.now(UTC)
    actor = await actor_of(principal)
    case = await store.get_case(case_id, actor)
    if case is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no case {case_id}")
    decision = await store.appeal_decision(case_id)
    return CaseDetailOut(
        **CaseOut.of(case, now).model_dump(),
        events=[EventOut.of(e) for e in await store.case_events(case_id)],
        callbacks=[CallbackOut.of(c) for c in await store.case_callbacks(case_id)],
        reminders=[ReminderOut.of(r) for r in await store.case_reminders(case_id=case_id)],
        decision=DecisionOut(**decision) if decision is not None else None,
        contacts=[RaterContactOut(kind=kind, name=c.name, phone=c.phone)
                  for kind, c in await rater_contacts(store, request, case)],
        actions=cases.allowed_actions(case, actor))


@router.post("/{case_id}/transitions", response_model=CaseOut, responses={**BODY_ERRORS, **CASE_ERRORS})
async def transition(store: StoreDep, principal: Handling, case_id: CaseId, body: TransitionIn) -> CaseOut:
    """Do one action on the case (docs/cases.md, "Actions"): route, contact, rectify, explain,
    ledger, rectified, feedback, reopen, close; appeal, verify, decide. 409 when the case's state
    does not allow it, 403 when the person may not, 422 for a bad argument."""
    try:
        case = await store.case_transition(case_id, body.action, await actor_of(principal), body.args())
    except CaseError as exc:
        raise _raise(exc) from None
    return CaseOut.of(case, datetime.now(UTC))


@router.post("/{case_id}/callbacks", response_model=CallbackOut, status_code=201,
             responses={**BODY_ERRORS, **CASE_ERRORS})
async def add_callback(store: StoreDep, principal: Handling, case_id: CaseId, body: CallbackIn) -> CallbackOut:
    """Record a call to the rater that moves no state: an attempt that did not reach them, or a
    later satisfaction callback. (The contact and feedback actions record their own.)"""
    try:
        stored = await store.add_case_callback(case_id, await actor_of(principal),
                                               body.model_dump(exclude_none=True))
    except CaseError as exc:
        raise _raise(exc) from None
    return CallbackOut.of(stored)
