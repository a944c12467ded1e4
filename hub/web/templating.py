"""The pages' Jinja2 environment (autoescape on, templates in hub/web/templates/) and `render`,
which every page answers with: it adds the signed-in person, the navigation, the CSRF field and
the security headers.

In a template (they extend "base.html"):
    {% extends "base.html" %}
    {% block title %}…{% endblock %}
    {% block content %}
      <form method="post" action="/x">{{ csrf_field() }} … </form>
    {% endblock %}
Context every template gets: `principal` (None when signed out), `nav` (NavLinks for them),
`csrf_token`, `csrf_field()`, `lang` (default "zh-CN"), `path` (the request's path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape

from ..accounts.deps import CSRF_FIELD
from .nav import links_for

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"
LANG = "zh-CN"  # staff pages are Chinese with English alongside (as the gateway's status page)

# No scripts on any page; inline styles and inline SVG allowed (charts are drawn on the server).
CSP = ("default-src 'self'; script-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"}

environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True),
                          trim_blocks=True, lstrip_blocks=True)


def _csrf_field(token: str | None) -> Markup:
    return Markup(f'<input type="hidden" name="{CSRF_FIELD}" value="{escape(token or "")}">')


def render(request: Request, template: str, context: dict[str, Any] | None = None, *,
           status_code: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    """`template` rendered with `context` plus the common context (module docstring)."""
    principal = getattr(request.state, "principal", None)
    token = principal.csrf_token if principal is not None else None
    values = {"request": request, "principal": principal, "nav": links_for(principal), "csrf_token": token,
              "lang": LANG, "path": request.url.path, **(context or {})}
    values["csrf_field"] = lambda: _csrf_field(values["csrf_token"])
    html = environment.get_template(template).render(values)
    answer_headers = dict(SECURITY_HEADERS)
    if principal is not None:
        answer_headers["Cache-Control"] = "no-store"  # pages of a signed-in person stay out of caches
    answer_headers.update(headers or {})
    return HTMLResponse(html, status_code=status_code, headers=answer_headers)
