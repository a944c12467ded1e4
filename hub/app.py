"""The hub's FastAPI app, built by `create_app(settings)`; the store opens in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from hcp import __version__

from .api.errors import validation_error
from .api.limits import BodyLimitMiddleware
from .api.routes import api_router
from .config import HubSettings
from .phone import web as phone
from .store import HubStore, open_store
from .web import mount_web
from .workdays import WorkCalendar

log = logging.getLogger("hub.defaults")

DESCRIPTION = """\
The regional hub of haochaping (政务服务好差评): hall gateways post services, device-signed
ratings, device health snapshots and device alerts; the hub verifies, deduplicates and stores
them. Wire shapes: docs/protocol.md.

Authentication: `Authorization: Bearer …`. Registration and the older reads take the **admin
token** (`HCP_HUB_ADMIN_TOKEN`). Ingest takes the
**gateway token** issued by `POST /api/v1/gateways`. People sign in at `/login`; the APIs that
name roles (`/api/v1/audit`, …) take their session cookie too (docs/accounts.md).
"""


def create_app(settings: HubSettings, *, on_ready: Callable[[], None] | None = None) -> FastAPI:
    """A new hub app. `on_ready` runs once the store is open, before the first request."""

    calendar = WorkCalendar.load(settings.holiday_dir)  # a bad holiday file stops the start here

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await open_store(settings)
        store.case_calendar = calendar  # bad-review deadlines count the hub's working days
        app.state.store = store
        job = None
        if settings.defaults_interval_s > 0:
            job = asyncio.create_task(_default_job(store, calendar, settings))
        case_job = None
        if settings.case_reminders_interval_s > 0:
            case_job = asyncio.create_task(_case_reminder_job(store, settings))
        try:
            if on_ready is not None:
                on_ready()
            yield
        finally:
            for task in (job, case_job):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            checker = getattr(app.state, "ledger_checker", None)
            if checker is not None:
                await checker.stop()  # a verification running for the dashboard
            await store.close()

    app = FastAPI(title="haochaping hub", version=__version__, description=DESCRIPTION,
                  lifespan=lifespan)
    app.state.settings = settings
    app.state.calendar = calendar
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.include_router(api_router)
    mount_web(app)  # the pages for people: sign-in, layout, error pages (hub/web)
    phone.install(app, settings, calendar)  # GET/POST /r/{token}: the phone rating page (docs/phone.md)
    return app


async def _default_job(store: HubStore, calendar: WorkCalendar, settings: HubSettings) -> None:
    """Run the default-rating job now and every `defaults_interval_s`. A failed run is logged and
    tried again next time: the job is idempotent, and a hub must not stop serving over it."""
    while True:
        try:
            result = await store.run_defaults(calendar, lookback_days=settings.defaults_lookback_days)
            if result.applied or result.alerts:
                log.info("default ratings: %s", result.as_dict())
        except Exception:
            log.exception("default-rating job failed; next try in %.0f s", settings.defaults_interval_s)
        await asyncio.sleep(settings.defaults_interval_s)


async def _case_reminder_job(store: HubStore, settings: HubSettings) -> None:
    """Write the reminders of bad-review cases due by now, every `case_reminders_interval_s`
    (hub/cases.py): idempotent, each reminder once; a failed run is logged and tried again."""
    while True:
        try:
            written = await store.run_case_reminders()
            if written:
                logging.getLogger("hub.cases").info("case reminders: %d new", written)
        except Exception:
            logging.getLogger("hub.cases").exception(
                "case reminder job failed; next try in %.0f s", settings.case_reminders_interval_s)
        await asyncio.sleep(settings.case_reminders_interval_s)
