"""The operator dashboard and the monthly bulletins (docs/dashboard.md): server-rendered pages, no
JavaScript. The data comes from hub/dashboard.py and hub/bulletin.py; this module only reads the
request, asks them for what the viewer may see, and renders.

- GET  /dashboard                   halls' devices, charts, rates vs the 80% target, cases, ledger
- GET  /dashboard/halls/{hall}      one hall: windows → devices with alert details, its figures
- POST /dashboard/ledger/verify     start a ledger verification in the background (303 back)
- GET  /dashboard/bulletin          the bulletin chooser, or a hall's (`hall=`) or unit's (`unit=`)
- GET  /dashboard/bulletin.csv|.xlsx  the same bulletin as a file

Who (docs/dashboard.md, "Access"): signed-in operators, supervisors and auditors (accounts,
hub/accounts), each seeing its scope: a region's halls, or its one hall. Auditors read only (no
verification). The CSV and XLSX downloads also take the admin token, for scripts.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import RedirectResponse, Response

from .. import bulletin as bulletins
from .. import charts
from ..accounts.deps import form_principal, require_page_role, require_role
from ..accounts.model import Principal, Role
from ..api.deps import StoreDep
from ..dashboard import (ALERT_KINDS, ADMIN, TARGET, LedgerChecker, Month, Viewer, breakdown, daily, device_overview,
                         key_label, ledger_status, visible_halls)
from ..store import HubStore
from ..store.cases_sql import CaseQuery
from .templating import render as _render

router = APIRouter(include_in_schema=False)


def render(request: Request, template: str, context: dict) -> Response:
    """An operator's page: never kept by a browser's or proxy's cache."""
    return _render(request, template, context, headers={"Cache-Control": "no-store"})

RATE_BARS = 40  # bars in a rates chart (the lowest rates); the table below it has more
TABLE_ROWS = 200  # rows in a page's table: past this, the lowest evaluation rates (a region by staff
# is ~4,000 rows, ~1 MB of HTML); the bulletin's CSV and XLSX have every row
ATTENTION_SHOWN = 200  # devices listed under "needs attention" on the overview
REFRESH_S = 60  # the dashboard pages reload themselves this often (a meta refresh, no script)
GROUP_LABELS = {"hall": "大厅 hall", "window": "窗口 window", "staff": "工作人员 staff", "matter": "事项 matter",
                "unit": "单位 unit"}


READERS = (Role.OPERATOR, Role.SUPERVISOR, Role.AUDITOR)  # who sees the dashboard and bulletins
ACTORS = (Role.OPERATOR, Role.SUPERVISOR)  # who may start a ledger verification


def viewer_of(principal: Principal) -> Viewer:
    """The dashboard's view of a principal: its scope's region and hall; the admin token sees all."""
    if principal.is_admin:
        return ADMIN
    s = principal.scope
    return Viewer(principal.login, principal.role, regions=frozenset({s.region}) if s.region else None,
                  halls=frozenset({s.hall}) if s.hall else None, can_act=principal.has_role(*ACTORS),
                  unit=s.unit)


async def page_viewer(principal: Annotated[Principal, Depends(require_page_role(*READERS))]) -> Viewer:
    """A signed-in reader of the dashboard (a session: the admin token does not sign in to pages)."""
    return viewer_of(principal)


async def file_viewer(principal: Annotated[Principal, Depends(require_role(*READERS))]) -> Viewer:
    """A bulletin file's reader: a session, or the admin token (scripts)."""
    return viewer_of(principal)


ViewerDep = Annotated[Viewer, Depends(page_viewer)]
FileViewerDep = Annotated[Viewer, Depends(file_viewer)]


def _whole_halls(viewer: Viewer) -> None:
    """A person whose scope is one unit reads that unit's bulletin, not the halls' pages (their
    figures are the whole halls')."""
    if viewer.unit is not None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"你的范围是单位 {viewer.unit}：请看该单位的月度通报。"
                            f"Your scope is the unit {viewer.unit}: see its monthly bulletin.")


def _month(text: str | None) -> Month:
    if text is None or text == "":
        return Month.current()
    try:
        return Month.parse(text)
    except ValueError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "month: YYYY-MM") from None


MonthQuery = Annotated[str | None, Query(max_length=7)]


def ledger_checker(request: Request) -> LedgerChecker:
    checker = getattr(request.app.state, "ledger_checker", None)
    if checker is None:
        checker = request.app.state.ledger_checker = LedgerChecker()
    return checker


async def overdue_cases(store: HubStore, viewer: Viewer, limit: int = 20) -> dict:
    """The overdue bad-review cases in the halls `viewer` sees (a region's halls as they are now,
    as the cases pages count them), newest first: {"cases": the first `limit`, "total"}."""
    halls = None if viewer.everything else frozenset(h.hall for h in await visible_halls(store, viewer))
    found, total = await store.list_cases(CaseQuery(overdue=True, scope_halls=halls, limit=limit))
    return {"cases": found, "total": total}


def _rate_chart(rows: list, title: str) -> str:
    shown = sorted(rows, key=lambda r: (r.figures.evaluation_rate is None, r.figures.evaluation_rate or 0))[:RATE_BARS]
    return charts.rates([charts.Rate(key_label(r), r.figures.evaluation_rate, r.figures.services) for r in shown],
                        title=title, target=TARGET)


async def _figures_context(store: HubStore, viewer: Viewer, month: Month, by: str, hall: str | None) -> dict:
    days = await daily(store, viewer, month, hall=hall)
    table = await breakdown(store, viewer, month, by, hall=hall)
    month_total = table.total  # each rating and service is in exactly one row of a group
    return {
        "daily_svg": charts.ratings_by_day([charts.Day(d.isoformat(), f.scores) for d, f in days],
                                           title=f"{month} 每日评价 ratings per day by level"),
        "level_svg": charts.ratings_by_level(month_total.scores, title=f"{month} 评价等级 ratings by level"),
        "rate_svg": _rate_chart(table.rows, f"{month} 评价率 evaluation rate by {by} (target {TARGET:.0%})"),
        "table": [(key_label(r), r.figures) for r in _shown(table.rows)], "rows": len(table.rows),
        "below": table.below_target(), "total": month_total, "days": days,
    }


def _shown(rows: list) -> list:
    """A table's rows as the page lists them: all of a small one; of a large one (a region's 4,000
    staff) the TABLE_ROWS with the lowest evaluation rate, the ones to act on (the bulletin has all)."""
    if len(rows) <= TABLE_ROWS:
        return rows
    return sorted(rows, key=lambda r: (r.figures.evaluation_rate is None, r.figures.evaluation_rate or 0))[:TABLE_ROWS]


@router.get("/dashboard")
async def overview(request: Request, store: StoreDep, viewer: ViewerDep, month: MonthQuery = None,
                   by: Literal["hall", "window", "staff", "matter"] = "hall") -> Response:
    _whole_halls(viewer)
    m = _month(month)
    halls = await device_overview(store, viewer)
    attention = [(h, d) for h in halls for d in h.with_problems][:ATTENTION_SHOWN]
    context = {
        "month": m, "by": by, "groups": GROUP_LABELS, "target": TARGET, "viewer": viewer, "halls": halls,
        "attention": attention, "kinds": ALERT_KINDS, "refresh_s": REFRESH_S,
        "ledger": await ledger_status(store, ledger_checker(request)),
        "cases": await overdue_cases(store, viewer),
        **await _figures_context(store, viewer, m, by, None),
    }
    return render(request, "dashboard/overview.html", context)


@router.get("/dashboard/halls/{hall}")
async def hall_page(request: Request, store: StoreDep, viewer: ViewerDep, hall: str, month: MonthQuery = None,
                    by: Literal["window", "staff", "matter", "unit"] = "window") -> Response:
    _whole_halls(viewer)
    m = _month(month)
    found = await device_overview(store, viewer, hall=hall, details=True)
    info = {h.hall: h for h in await visible_halls(store, viewer)}.get(hall)
    if info is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no hall {hall} in your scope")
    context = {"month": m, "by": by, "groups": GROUP_LABELS, "target": TARGET, "hall": info,
               "devices": found[0] if found else None, "refresh_s": REFRESH_S,
               **await _figures_context(store, viewer, m, by, hall)}
    return render(request, "dashboard/hall.html", context)


@router.post("/dashboard/ledger/verify")
async def verify_ledger(request: Request, store: StoreDep,
                        principal: Annotated[Principal, Depends(form_principal(*ACTORS))]) -> Response:
    ledger_checker(request).start(store, viewer_of(principal).user)
    return RedirectResponse("/dashboard#ledger", status.HTTP_303_SEE_OTHER)


# ---------------------------------------------------------------------------- bulletins


async def _bulletin(store: HubStore, viewer: Viewer, month: Month, hall: str | None,
                    unit: str | None) -> bulletins.Bulletin:
    if (hall is None) == (unit is None):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "give hall= or unit=")
    if hall is not None:
        _whole_halls(viewer)
        found = await bulletins.hall_bulletin(store, viewer, hall, month)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no hall {hall} in your scope")
        return found
    assert unit is not None
    if viewer.unit is not None and viewer.unit != unit:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no unit {unit} in your scope")
    return await bulletins.unit_bulletin(store, viewer, unit, month)


HallQuery = Annotated[str | None, Query(max_length=64)]
UnitQuery = Annotated[str | None, Query(max_length=200)]


@router.get("/dashboard/bulletin")
async def bulletin_page(request: Request, store: StoreDep, viewer: ViewerDep, month: MonthQuery = None,
                        hall: HallQuery = None, unit: UnitQuery = None) -> Response:
    m = _month(month)
    if hall is None and unit is None:
        context = {"month": m, "halls": [] if viewer.unit else await visible_halls(store, viewer),
                   "units": [viewer.unit] if viewer.unit else await bulletins.units_seen(store, viewer, m)}
        return render(request, "dashboard/bulletins.html", context)
    b = await _bulletin(store, viewer, m, hall, unit)
    return render(request, "dashboard/bulletin.html", {"b": b, "month": m, "columns": bulletins.COLUMNS,
                                                       "values": bulletins.column_values, "target": TARGET,
                                                       "query": {"hall": hall, "unit": unit}})


def _download(body: bytes, media_type: str, b: bulletins.Bulletin, extension: str) -> Response:
    """A file to save: an ASCII name for every client, and the real one (a unit's name is usually
    Chinese) as RFC 6266's UTF-8 `filename*`; headers are Latin-1 only."""
    disposition = (f'attachment; filename="{b.ascii_filename}.{extension}"; '
                   f"filename*=UTF-8''{quote(b.filename + '.' + extension, safe='')}")
    return Response(body, media_type=media_type, headers={
        "Content-Disposition": disposition, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


@router.get("/dashboard/bulletin.csv")
async def bulletin_csv(store: StoreDep, viewer: FileViewerDep, month: MonthQuery = None, hall: HallQuery = None,
                       unit: UnitQuery = None) -> Response:
    b = await _bulletin(store, viewer, _month(month), hall, unit)
    return _download(bulletins.write_csv(b).encode("utf-8"), "text/csv; charset=utf-8", b, "csv")


@router.get("/dashboard/bulletin.xlsx")
async def bulletin_xlsx(store: StoreDep, viewer: FileViewerDep, month: MonthQuery = None, hall: HallQuery = None,
                        unit: UnitQuery = None) -> Response:
    b = await _bulletin(store, viewer, _month(month), hall, unit)
    return _download(bulletins.write_xlsx(b),
                     "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", b, "xlsx")
