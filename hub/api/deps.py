"""Dependencies shared by the routes: the store, the settings, admin and gateway authentication."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..config import HubSettings
from ..store import GatewayRecord, HubStore
from .models import Problem

_admin_bearer = HTTPBearer(auto_error=False, scheme_name="AdminToken",
                           description="the hub's admin token (setting HCP_HUB_ADMIN_TOKEN)")
_gateway_bearer = HTTPBearer(auto_error=False, scheme_name="GatewayToken",
                             description="a gateway's ingest token from POST /api/v1/gateways")


# The error answers of the dependencies below, for the OpenAPI of the routes that use them
ADMIN_ERRORS: dict[int | str, dict] = {
    401: {"model": Problem, "description": "missing or wrong admin token"},
    503: {"model": Problem, "description": "this hub has no admin token configured"}}
GATEWAY_ERRORS: dict[int | str, dict] = {
    401: {"model": Problem, "description": "missing or unknown gateway token"}}
BODY_ERRORS: dict[int | str, dict] = {
    400: {"model": Problem, "description": "the body is not JSON (undecodable bytes)"},
    413: {"model": Problem, "description": "request body larger than the hub's max_body_bytes"}}


def token_sha256(token: str) -> str:
    """How a gateway token is stored: hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


def get_store(request: Request) -> HubStore:
    return request.app.state.store


def get_settings(request: Request) -> HubSettings:
    return request.app.state.settings


StoreDep = Annotated[HubStore, Depends(get_store)]
SettingsDep = Annotated[HubSettings, Depends(get_settings)]


async def strict_query(request: Request) -> None:
    """422 for a query parameter the operation does not define, or one given twice: a misspelt
    filter (`?hal=H1`) must not silently answer for every hall, nor `?hall=H1&hall=H2` for H2
    only. Answered like any other invalid parameter (FastAPI's 422 shape)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not request.query_params:
        return
    known = {p.alias for p in _query_params(dependant)}
    takes = ", ".join(sorted(known)) or "none"
    errors = []
    for name in sorted(set(request.query_params.keys())):
        given = request.query_params.getlist(name)
        if name not in known:
            errors.append({"type": "extra_forbidden", "loc": ["query", name], "input": given[0],
                           "msg": f"unknown query parameter; this operation takes: {takes}"})
        elif len(given) > 1:
            errors.append({"type": "repeated", "loc": ["query", name], "input": given,
                           "msg": "given more than once; it takes one value"})
    if errors:
        raise RequestValidationError(errors)


def _query_params(dependant) -> list:
    """The query parameters of a route, its dependencies' included."""
    found = list(dependant.query_params)
    for sub in dependant.dependencies:
        found += _query_params(sub)
    return found


async def require_admin(
        settings: SettingsDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_admin_bearer)]) -> None:
    """503 while no admin token is configured, 401 unless the Bearer token is the admin token."""
    expected = settings.admin_token.get_secret_value()
    if not expected:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "admin token not configured")
    if credentials is None:
        raise _unauthorized("admin token required")
    if not hmac.compare_digest(credentials.credentials.encode("utf-8"), expected.encode("utf-8")):
        raise _unauthorized("wrong admin token")


async def current_gateway(
        store: StoreDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_gateway_bearer)],
) -> GatewayRecord:
    """The gateway whose ingest token the request carries; 401 otherwise."""
    if credentials is None:
        raise _unauthorized("gateway token required")
    digest = token_sha256(credentials.credentials)
    gateway = await store.gateway_by_token_hash(digest)
    if gateway is None or not hmac.compare_digest(gateway.token_sha256, digest):
        raise _unauthorized("unknown gateway token")
    return gateway


GatewayDep = Annotated[GatewayRecord, Depends(current_gateway)]
