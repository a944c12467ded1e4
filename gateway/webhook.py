"""The gateway's HTTP side (FastAPI): queue-system webhook, device registration, dead letters,
status, health.

Built by `create_app(ctx)` so tests can make several; routes stay thin and call into `AppContext`.
Bad input answers `400 {"v":1,"error":reason}` with the contract's reason vocabulary and is counted.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from gateway.config import DeviceSeed
from gateway.dead_letters import DeadLetterInputError, list_dead, parse_list_query, parse_resend, resend
from gateway.queue_events import QueueEvents
from gateway.status_routes import router as status_router
from gateway.store import Store
from hcp.protocol import ProtocolError, decode_queue_event

log = logging.getLogger(__name__)

STORAGE_RETRY_AFTER_S = 5  # a full disk is not freed in less; the queue system retries then
MAX_BODY_BYTES = 16 * 1024  # a queue event is well under 1 KiB; more is a bug or an attack


@dataclass
class AppContext:
    """What the routes need from the running gateway."""

    store: Store
    events: QueueEvents
    queue_token: str
    admin_token: str
    status: Callable[[], Awaitable[dict[str, Any]]]
    clock: Callable[[], float] = time.time
    clear_alert: Callable[[int, str], Awaitable[dict[str, Any] | None]] | None = None
    wake_forwarder: Callable[[], None] | None = None  # re-queued dead letters are posted at once


class EventAnswerModel(BaseModel):
    v: int = 1
    status: str
    service: str
    session: str | None
    reason: str | None = None


class DeviceAnswerModel(BaseModel):
    device: str
    window: str


class BadInput(Exception):
    def __init__(self, reason: str, status_code: int = 400):
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code


def _ctx(request: Request) -> AppContext:
    return request.app.state.ctx


Ctx = Annotated[AppContext, Depends(_ctx)]


def _bearer_ok(request: Request, token: str) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


async def _count(ctx: AppContext, name: str) -> None:
    async with ctx.store.transaction() as tx:
        await tx.count(name)


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise BadInput("too_large")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadInput("bad_json") from None


async def _require(ctx: AppContext, request: Request, token: str, what: str) -> JSONResponse | None:
    if _bearer_ok(request, token):
        return None
    await _count(ctx, f"{what}.unauthorized")
    return JSONResponse({"v": 1, "error": "unauthorized"}, status_code=401,
                        headers={"WWW-Authenticate": "Bearer"})


def create_app(ctx: AppContext) -> FastAPI:
    app = FastAPI(title="haochaping gateway", version="1", docs_url=None, redoc_url=None)
    app.state.ctx = ctx

    @app.exception_handler(BadInput)
    async def _bad_input(request: Request, exc: BadInput) -> JSONResponse:
        with contextlib.suppress(sqlite3.OperationalError):  # the count waits for a writable file
            await _count(_ctx(request), f"http.bad.{exc.reason}")
        return JSONResponse({"v": 1, "error": exc.reason}, status_code=exc.status_code)

    @app.exception_handler(sqlite3.OperationalError)
    async def _storage(request: Request, exc: sqlite3.OperationalError) -> JSONResponse:
        """The file took no write (disk full, I/O, lock; status page "store"): nothing of the
        request was kept, so the caller retries (queue events are idempotent by event_id)."""
        log.error("%s %s: not stored: %s", request.method, request.url.path, exc)
        return JSONResponse({"v": 1, "error": "storage_unavailable"}, status_code=503,
                            headers={"Retry-After": str(STORAGE_RETRY_AFTER_S)})

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"v": 1, "ok": True}

    @app.post("/api/v1/queue/events", response_model=EventAnswerModel)
    async def queue_event(request: Request, ctx: Ctx) -> Any:
        if (denied := await _require(ctx, request, ctx.queue_token, "webhook")) is not None:
            return denied
        body = await _json_body(request)
        try:
            event = decode_queue_event(body)
        except ProtocolError as err:
            log.info("queue event rejected: %s", err)
            raise BadInput(err.reason) from None
        answer = await ctx.events.handle(event, body)
        return JSONResponse(answer.body())  # `session: null` stays; `reason` only when there is one

    @app.post("/api/v1/devices", status_code=201, response_model=DeviceAnswerModel)
    async def register_device(request: Request, ctx: Ctx) -> Any:
        if (denied := await _require(ctx, request, ctx.admin_token, "admin")) is not None:
            return denied
        body = await _json_body(request)
        try:
            seed = DeviceSeed.model_validate(body)
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "body"
            kind = "missing_field" if first["type"] == "missing" else "bad_field"
            raise BadInput(f"{kind}:{field}") from None
        async with ctx.store.transaction() as tx:
            await tx.register_device(seed.device, seed.window, ctx.clock())
            await tx.count("devices.registered")
        log.info("registered device %s at window %s", seed.device, seed.window)
        return DeviceAnswerModel(device=seed.device, window=seed.window)

    @app.post("/api/v1/devices/{device}/retire")
    async def retire_device(device: str, request: Request, ctx: Ctx) -> Any:
        """Retire a replaced device (docs/gateway.md, "Replacing a device"): 200, or 404 when it
        is not registered here. Its later messages are refused (`retired_device`)."""
        if (denied := await _require(ctx, request, ctx.admin_token, "admin")) is not None:
            return denied
        async with ctx.store.transaction() as tx:
            window = await tx.retire_device(device, ctx.clock())
            if window is not None:
                await tx.count("devices.retired")
        if window is None:
            return JSONResponse({"v": 1, "error": "unknown_device"}, status_code=404)
        log.info("retired device %s (was at window %s)", device, window)
        return {"v": 1, "device": device, "window": window, "retired": True}

    @app.get("/api/v1/status")
    async def status(ctx: Ctx) -> dict[str, Any]:
        return await ctx.status()

    @app.post("/api/v1/alerts/{alert_id}/clear")
    async def clear_alert(alert_id: int, request: Request, ctx: Ctx) -> Any:
        """An operator clears an open alert (docs/gateway.md, "Alerts"): 200 with the alert, 404."""
        if (denied := await _require(ctx, request, ctx.admin_token, "admin")) is not None:
            return denied
        alert = await ctx.clear_alert(alert_id, "operator") if ctx.clear_alert else None
        if alert is None:
            return JSONResponse({"v": 1, "error": "no_open_alert"}, status_code=404)
        return {"v": 1, "alert": alert}

    @app.get("/api/v1/outbox/dead")
    async def dead_letters(request: Request, ctx: Ctx) -> Any:
        """Dead letters newest first (docs/gateway.md, "Dead letters"), admin token."""
        if (denied := await _require(ctx, request, ctx.admin_token, "admin")) is not None:
            return denied
        try:
            query = parse_list_query(request.query_params)
        except DeadLetterInputError as err:
            raise BadInput(err.reason) from None
        return await list_dead(ctx.store, query)

    @app.post("/api/v1/outbox/dead/resend")
    async def resend_dead_letters(request: Request, ctx: Ctx) -> Any:
        """Dead letters back to `pending` (by seq, or by reason/kind, or all): how many."""
        if (denied := await _require(ctx, request, ctx.admin_token, "admin")) is not None:
            return denied
        try:
            req = parse_resend(await _json_body(request))
        except DeadLetterInputError as err:
            raise BadInput(err.reason) from None
        client = request.client.host if request.client else ""
        return await resend(ctx.store, req, ctx.clock(), client, ctx.wake_forwarder)

    app.include_router(status_router)  # GET /status (page for people), GET /metrics (Prometheus)
    return app
