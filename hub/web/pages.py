"""The accounts' pages: sign-in, sign-out, the home page."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response

from ..accounts import sessions
from ..accounts.deps import (CSRF_REFUSED, FormPrincipal, OptionalPrincipal, PagePrincipal, client_address,
                             same_token)
from ..api.deps import SettingsDep, StoreDep
from ..config import HubSettings
from .cases import home_context
from .templating import render

LOGIN_CSRF_COOKIE = "hcp_login_csrf"  # the sign-in form's CSRF token (double submit: cookie = field)
LOGIN_CSRF_MAX_AGE_S = 3600

router = APIRouter(include_in_schema=False)


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path on this hub, else the home page (no open redirect)."""
    # browsers drop tabs and newlines from URLs ("/\t/evil" is "//evil") and read "\" as "/"
    if (not value or not value.startswith("/") or value.startswith("//") or "\\" in value
            or any(ord(c) < 0x20 or ord(c) == 0x7f for c in value)):
        return "/"
    return value


def _login_page(request: Request, settings: HubSettings, *, next_path: str, login: str = "",
                message: str | None = None, notice: str | None = None, status_code: int = 200,
                headers: dict[str, str] | None = None) -> Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not token or len(token) > 100:
        token = secrets.token_urlsafe(24)
    response = render(request, "login.html", {"next": next_path, "login": login, "message": message,
                                              "notice": notice, "csrf_token": token},
                      status_code=status_code, headers={"Cache-Control": "no-store", **(headers or {})})
    response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=LOGIN_CSRF_MAX_AGE_S, path="/login", httponly=True,
                        samesite="lax", secure=settings.secure_cookies)
    return response


@router.get("/login")
async def login_form(request: Request, settings: SettingsDep, principal: OptionalPrincipal,
                     next: str = "/", signed_out: bool = False) -> Response:
    if principal is not None:
        return RedirectResponse(safe_next(next), status.HTTP_303_SEE_OTHER)
    return _login_page(request, settings, next_path=safe_next(next),
                       notice="已退出。You have signed out." if signed_out else None)


@router.post("/login")
async def login(request: Request, store: StoreDep, settings: SettingsDep,
                login: Annotated[str, Form(max_length=200)] = "",
                password: Annotated[str, Form(max_length=4096)] = "",
                csrf_token: Annotated[str, Form(max_length=200)] = "",
                next: Annotated[str, Form(max_length=2000)] = "/") -> Response:
    if not same_token(csrf_token, request.cookies.get(LOGIN_CSRF_COOKIE)):
        raise HTTPException(status.HTTP_403_FORBIDDEN, CSRF_REFUSED)
    result = await sessions.sign_in(store, settings, login, password, client_address(request),
                                    request.cookies.get(sessions.SESSION_COOKIE))
    if not result.ok:
        throttled = result.retry_after_s > 0
        return _login_page(request, settings, next_path=safe_next(next), login=login[:64], message=result.message,
                           status_code=status.HTTP_429_TOO_MANY_REQUESTS if throttled else status.HTTP_401_UNAUTHORIZED,
                           headers={"Retry-After": str(int(result.retry_after_s) + 1)} if throttled else None)
    response = RedirectResponse(safe_next(next), status.HTTP_303_SEE_OTHER)
    response.set_cookie(sessions.SESSION_COOKIE, result.token or "", path="/", httponly=True, samesite="lax",
                        secure=settings.secure_cookies)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request, store: StoreDep, settings: SettingsDep, principal: FormPrincipal) -> Response:
    await sessions.sign_out(store, request.cookies.get(sessions.SESSION_COOKIE), principal)
    response = RedirectResponse("/login?signed_out=1", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(sessions.SESSION_COOKIE, path="/", httponly=True, samesite="lax",
                           secure=settings.secure_cookies)
    return response


@router.get("/")
async def home(request: Request, store: StoreDep, principal: PagePrincipal) -> Response:
    """The pages the person may use, and for those who handle cases their to-do."""
    return render(request, "home.html", await home_context(store, principal))
