"""The hub's FastAPI app, built by `create_app(settings)`; the store opens in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from hcp import __version__

from .api.limits import BodyLimitMiddleware
from .api.routes import api_router
from .config import HubSettings
from .store import open_store

DESCRIPTION = """\
The regional hub of haochaping (政务服务好差评): hall gateways post services, device-signed
ratings, device health snapshots and device alerts; the hub verifies, deduplicates and stores
them. Wire shapes: docs/protocol.md.

Authentication: `Authorization: Bearer …`. Registration and reads take the **admin token**
(`HCP_HUB_ADMIN_TOKEN`; reads need it for now, reader roles come later). Ingest takes the
**gateway token** issued by `POST /api/v1/gateways`.
"""


def create_app(settings: HubSettings, *, on_ready: Callable[[], None] | None = None) -> FastAPI:
    """A new hub app. `on_ready` runs once the store is open, before the first request."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await open_store(settings)
        app.state.store = store
        try:
            if on_ready is not None:
                on_ready()
            yield
        finally:
            await store.close()

    app = FastAPI(title="haochaping hub", version=__version__, description=DESCRIPTION,
                  lifespan=lifespan)
    app.state.settings = settings
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.include_router(api_router)
    return app
