"""The audit log page (auditors of the whole hub): the same filters and paging as GET /api/v1/audit."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from ..accounts.audit import EVENTS
from ..accounts.deps import require_page_role
from ..accounts.model import Principal, Role
from ..accounts.store import AuditQuery
from ..api.deps import StoreDep
from ..api.routes.audit import MAX_ID, TIME, check_whole_hub, page
from .templating import render

PAGE_SIZE = 50
router = APIRouter(include_in_schema=False)


def _blank(value: str | None) -> str | None:
    return value.strip() or None if value is not None else None


@router.get("/audit")
async def audit_page(request: Request, store: StoreDep,
                     principal: Annotated[Principal, Depends(require_page_role(Role.AUDITOR))],
                     event: Annotated[str | None, Query(max_length=50)] = None,
                     login: Annotated[str | None, Query(max_length=64)] = None,
                     what: Annotated[str | None, Query(max_length=200)] = None,
                     record: Annotated[str | None, Query(max_length=500)] = None,
                     since: Annotated[str | None, Query(max_length=40)] = None,
                     until: Annotated[str | None, Query(max_length=40)] = None,
                     before: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None) -> Response:
    check_whole_hub(principal)  # the whole hub's log: not for an auditor of one region, hall or unit
    filters = {"event": _blank(event), "login": _blank(login), "what": _blank(what), "record": _blank(record),
               "since": _blank(since), "until": _blank(until)}
    problems = [f"{name}: YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC)" for name in ("since", "until")
                if filters[name] is not None and not re.match(TIME, filters[name] or "")]
    entries = [] if problems else await page(store, AuditQuery(**filters,
                                                                 before=before, limit=PAGE_SIZE))
    shown = entries[:PAGE_SIZE]
    next_link = None
    if len(entries) > PAGE_SIZE:
        query = {k: v for k, v in filters.items() if v is not None}
        next_link = "/audit?" + urlencode({**query, "before": shown[-1].id})
    return render(request, "audit.html", {"entries": shown, "filters": filters, "events": EVENTS,
                                          "next_link": next_link, "problems": problems},
                  status_code=422 if problems else 200)
