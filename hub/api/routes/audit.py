"""The audit log (auditors, or the admin token): sign-ins, sign-outs, account changes and every
read of a rater's personal data, newest first, filtered and paged (docs/accounts.md). It is the
whole hub's log (its entries name people and records of every region), so only an auditor whose
scope is the whole hub reads it: one limited to a region, hall or unit is refused (403)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel

from ...accounts.deps import require_role
from ...accounts.model import Principal, Role
from ...accounts.store import Accounts, AuditEntry, AuditQuery
from ...store import HubStore
from ..deps import StoreDep
from ..models import Problem

router = APIRouter(tags=["accounts"], responses={
    401: {"model": Problem, "description": "neither the admin token nor a session"},
    403: {"model": Problem, "description": "signed in, but not an auditor of the whole hub"}})

MAX_LIMIT = 1000
MAX_ID = 2**63 - 1  # ids are 64-bit on both backends; a larger `before` would not fit the driver
TIME = r"^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:\d{2})?)?$"


WHOLE_HUB_ONLY = ("审计日志覆盖整个中心：只有不限区域、大厅、单位的审计员可以查看。"
                  "The audit log covers the whole hub: only an auditor whose scope is the whole hub reads it.")


def check_whole_hub(principal: Principal) -> Principal:
    """`principal` if its scope is the whole hub (or it is the admin token), else 403."""
    if not principal.is_admin and not principal.scope.whole_hub:
        raise HTTPException(status.HTTP_403_FORBIDDEN, WHOLE_HUB_ONLY)
    return principal


async def whole_hub_auditor(principal: Annotated[Principal, Depends(require_role(Role.AUDITOR))]) -> Principal:
    return check_whole_hub(principal)


class AuditEntryOut(BaseModel):
    id: int
    at: str
    event: str
    user_id: int | None
    login: str | None
    role: str | None
    client: str | None
    what: str | None
    record: str | None
    detail: dict


class AuditPage(BaseModel):
    entries: list[AuditEntryOut]
    next_before: int | None  # pass as `before` for the next (older) page; null on the last


@router.get("/audit", response_model=AuditPage)
async def audit_log(
        store: StoreDep, _: Annotated[Principal, Depends(whole_hub_auditor)],
        event: Annotated[str | None, Query(max_length=50)] = None,
        login: Annotated[str | None, Query(max_length=64)] = None,
        what: Annotated[str | None, Query(max_length=200)] = None,
        record: Annotated[str | None, Query(max_length=500)] = None,
        since: Annotated[str | None, Query(pattern=TIME, description="UTC: entries at or after")] = None,
        until: Annotated[str | None, Query(pattern=TIME, description="UTC: entries before")] = None,
        before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="only ids below this (paging)")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100) -> AuditPage:
    """Entries matching every filter (`event` e.g. `sign_in_failed`, `personal_data_read`;
    `login` the acting or attempted login name; `what`, `record` of a personal-data read), newest
    first. The next page: the same filters with `before=next_before`."""
    entries = await page(store, AuditQuery(event=event, login=login, what=what, record=record, since=since,
                                           until=until, before=before, limit=limit))
    return AuditPage(entries=[AuditEntryOut(**e.as_dict()) for e in entries[:limit]],
                     next_before=entries[limit - 1].id if len(entries) > limit else None)


async def page(store: HubStore, query: AuditQuery) -> list[AuditEntry]:
    """One more entry than asked for: whether there is a next page."""
    return await Accounts(store).audit_entries(replace(query, limit=query.limit + 1))
