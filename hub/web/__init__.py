"""The hub's pages for people: the Jinja2 environment and `render` (templating.py), the shared
layout (templates/base.html, static/hub.css), the navigation (nav.py), the accounts' pages
(pages.py), and `mount_web(app)`, which hub/app.py calls.

Other modules add pages with their own APIRouter, included here in PAGE_ROUTERS, and a NavLink in
nav.NAV; see docs/accounts.md, "Adding a page".
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..accounts.deps import LoginRequired, optional_principal
from . import audit_pages, cases, pages
from . import dashboard, results  # the operator dashboard, bulletins, public results (docs/dashboard.md)
from .templating import STATIC, render

PAGE_ROUTERS = (pages.router, audit_pages.router, cases.router, dashboard.router, results.router)

HEADINGS = {400: "请求有误 Bad request", 401: "需要登录 Sign-in required", 403: "无权访问 Forbidden",
            404: "找不到页面 Not found", 405: "方法不允许 Method not allowed", 413: "内容过大 Too large",
            429: "请求过多 Too many requests"}
JSON_PREFIXES = ("/api/", "/healthz", "/docs", "/openapi.json", "/redoc")


def wants_html(request: Request) -> bool:
    """Errors are pages for a browser on a page path; JSON (FastAPI's shape) for everything else."""
    return (not request.url.path.startswith(JSON_PREFIXES)
            and "text/html" in request.headers.get("accept", ""))


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if not wants_html(request):
        return await http_exception_handler(request, exc)
    if not hasattr(request.state, "principal"):  # a 404 outside any route: look the session up for the header
        try:
            await optional_principal(request, request.app.state.store, request.app.state.settings)
        except Exception:  # the error page must render even when the store cannot answer
            request.state.principal = None
    detail = exc.detail if isinstance(exc.detail, str) else HEADINGS.get(exc.status_code, "")
    if exc.status_code == 404 and detail == "Not Found":
        detail = "没有这个页面。There is no such page."
    return render(request, "error.html", {"status_code": exc.status_code, "detail": detail,
                                          "heading": HEADINGS.get(exc.status_code, "错误 Error")},
                  status_code=exc.status_code, headers=getattr(exc, "headers", None) or None)


async def _login_required(request: Request, exc: LoginRequired) -> Response:
    return RedirectResponse(exc.location, status_code=303)


def mount_web(app: FastAPI) -> None:
    """Add the pages, /static and the error pages to `app`."""
    for router in PAGE_ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(LoginRequired, _login_required)  # type: ignore[arg-type]
