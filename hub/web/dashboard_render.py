"""Rendering of the dashboard's and results' pages until the accounts branch (issue 7) brings the
shared layout (hub/web/templating.py): the same `render(request, template, context)` signature
and security headers, so switching is an import. Templates in hub/web/templates/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

TEMPLATES = Path(__file__).resolve().parent / "templates"
LANG = "zh-CN"
CSP = ("default-src 'self'; script-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"}

environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True),
                          trim_blocks=True, lstrip_blocks=True)


def render(request: Request, template: str, context: dict[str, Any] | None = None, *,
           status_code: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    principal = getattr(request.state, "principal", None)
    values = {"request": request, "principal": principal, "nav": [], "csrf_token": None, "lang": LANG,
              "path": request.url.path, "csrf_field": lambda: "", **(context or {})}
    html = environment.get_template(template).render(values)
    answer_headers = dict(SECURITY_HEADERS)
    if principal is not None:
        answer_headers["Cache-Control"] = "no-store"
    answer_headers.update(headers or {})
    return HTMLResponse(html, status_code=status_code, headers=answer_headers)
