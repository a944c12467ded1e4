"""The gateway's HTTP side (FastAPI): queue-system webhook, device registration, status, health.

Built by `create_app(ctx)` so tests can make several; routes stay thin and call into `AppContext`.
Bad input answers `400 {"v":1,"error":reason}` with the contract's reason vocabulary and is counted.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from gateway.config import DeviceSeed
from gateway.queue_events import QueueEvents
from gateway.store import Store
from hcp.protocol import ProtocolError, decode_queue_event

log = logging.getLogger(__name__)

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
        await _count(_ctx(request), f"http.bad.{exc.reason}")
        return JSONResponse({"v": 1, "error": exc.reason}, status_code=exc.status_code)

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

    @app.get("/api/v1/status")
    async def status(ctx: Ctx) -> dict[str, Any]:
        return await ctx.status()

    return app
