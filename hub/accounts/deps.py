"""FastAPI dependencies: the principal of a request, role checks and CSRF checks.

Pages (HTML, session cookie only):
    @router.get("/cases")
    async def cases_page(request: Request, principal: PagePrincipal): ...     # anyone signed in
    async def ...(principal: Annotated[Principal, Depends(require_page_role("operator"))]): ...
    @router.post("/cases/{id}/close")
    async def ...(principal: Annotated[Principal, Depends(form_principal("handler"))]): ...
  No session: 303 to /login?next=…; a role the page does not allow: the 403 page; a form post
  without the session's CSRF token (hidden field `csrf_token`, `{{ csrf_field() }}` in a
  template): 403 "CSRF token missing or wrong".

JSON APIs (the admin token as `Authorization: Bearer …`, or the session cookie):
    async def ...(principal: ApiPrincipal): ...                                # anyone
    async def ...(principal: Annotated[Principal, Depends(require_role("auditor"))]): ...
  No credentials, a wrong token, an ended session: 401 JSON; a role the API does not allow: 403
  JSON. A POST/PUT/PATCH/DELETE authenticated by the cookie must carry the session's CSRF token in
  the `X-CSRF-Token` header (403 otherwise). The admin token passes every role check.

Scope is the route's own check, on the records it reads: `can_see(principal, region=, hall=,
unit=)` or `principal.scope_filter()` (hub/accounts/model.py).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..api.deps import SettingsDep, StoreDep
from .model import Principal, admin_principal
from .sessions import SESSION_COOKIE, principal_for

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
CSRF_REFUSED = ("表单已失效或来源不明（缺少或错误的 CSRF 令牌），请刷新页面后重试。"
                "CSRF token missing or wrong: reload the page and try again.")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_bearer = HTTPBearer(auto_error=False, scheme_name="AdminToken",
                     description="the hub's admin token (setting HCP_HUB_ADMIN_TOKEN)")


class LoginRequired(Exception):
    """A page needs a signed-in person: answered with a redirect to /login (hub/web)."""

    def __init__(self, next_path: str):
        self.next_path = next_path

    @property
    def location(self) -> str:
        return "/login?next=" + quote(self.next_path, safe="/")


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


async def optional_principal(request: Request, store: StoreDep, settings: SettingsDep) -> Principal | None:
    """The signed-in person of the session cookie, or None. Looked up once per request."""
    if not hasattr(request.state, "principal"):
        request.state.principal = await principal_for(store, settings, request.cookies.get(SESSION_COOKIE),
                                                      client_address(request))
    return request.state.principal


OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]


async def page_principal(request: Request, principal: OptionalPrincipal) -> Principal:
    """The signed-in person; LoginRequired (a redirect to the sign-in page) if there is none."""
    if principal is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(path if request.method == "GET" else "/")
    return principal


PagePrincipal = Annotated[Principal, Depends(page_principal)]


def _forbidden(principal: Principal, roles: tuple[str, ...]) -> HTTPException:
    return HTTPException(status.HTTP_403_FORBIDDEN,
                         f"无权访问：需要角色 {' / '.join(roles)}（你是 {principal.role}）。"
                         f"Forbidden: this needs the role {' or '.join(roles)}; you are {principal.role}.")


def require_page_role(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """A page dependency: the signed-in person if they have one of `roles`, else the 403 page."""
    async def dependency(principal: PagePrincipal) -> Principal:
        if not principal.has_role(*roles):
            raise _forbidden(principal, roles)
        return principal
    return dependency


async def check_csrf_form(request: Request, principal: Principal) -> None:
    """403 unless the posted form's `csrf_token` is the session's."""
    form = await request.form()
    given = form.get(CSRF_FIELD)
    if not isinstance(given, str) or not same_token(given, principal.csrf_token):
        raise HTTPException(status.HTTP_403_FORBIDDEN, CSRF_REFUSED)


def same_token(given: str | None, expected: str | None) -> bool:
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


def form_principal(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """A form post's dependency: the signed-in person, with one of `roles` (any role if none
    given), who sent the session's CSRF token. Without a session: a redirect to /login."""
    async def dependency(request: Request, principal: PagePrincipal) -> Principal:
        await check_csrf_form(request, principal)
        if roles and not principal.has_role(*roles):
            raise _forbidden(principal, roles)
        return principal
    return dependency


FormPrincipal = Annotated[Principal, Depends(form_principal())]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


async def api_principal(
        request: Request, store: StoreDep, settings: SettingsDep, principal: OptionalPrincipal,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    """The admin token's principal, or the session's; 401 without either."""
    if credentials is not None:
        expected = settings.admin_token.get_secret_value()
        if expected and hmac.compare_digest(credentials.credentials.encode("utf-8", "surrogatepass"),
                                            expected.encode("utf-8")):
            return admin_principal(client_address(request), store)
        raise _unauthorized("wrong admin token")
    if principal is None:
        raise _unauthorized("sign in, or send the admin token")
    if request.method in UNSAFE_METHODS and not same_token(request.headers.get(CSRF_HEADER), principal.csrf_token):
        raise HTTPException(status.HTTP_403_FORBIDDEN, CSRF_REFUSED)
    return principal


ApiPrincipal = Annotated[Principal, Depends(api_principal)]


def require_role(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """An API dependency: the principal if it has one of `roles` (the admin token has all), else
    403 JSON."""
    async def dependency(principal: ApiPrincipal) -> Principal:
        if not principal.has_role(*roles):
            raise _forbidden(principal, roles)
        return principal
    return dependency
