"""System default ratings (hub/defaults.py): run the job now, and read what it stored."""

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from ..deps import ADMIN_ERRORS, StoreDep, require_admin
from ..models import HALL_PATTERN, DefaultRatingOut, DefaultRunOut

router = APIRouter(prefix="/defaults", tags=["default ratings"], dependencies=[Depends(require_admin)],
                   responses=ADMIN_ERRORS)


@router.post("/run", response_model=DefaultRunOut)
async def run(store: StoreDep, request: Request) -> DefaultRunOut:
    """Run the default-rating job now (the hub also runs it every `defaults_interval_s`): every
    finished service stored in the last `defaults_lookback_days` whose region's period has ended
    with no rating gets one 基本满意 record marked as the system's, with its ledger entry. Running
    it again stores nothing new."""
    settings = request.app.state.settings
    result = await store.run_defaults(request.app.state.calendar,
                                      lookback_days=settings.defaults_lookback_days)
    return DefaultRunOut.model_validate(result.as_dict())


@router.get("", response_model=list[DefaultRatingOut])
async def list_defaults(store: StoreDep, hall: Annotated[str | None, Query(pattern=HALL_PATTERN)] = None,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[DefaultRatingOut]:
    """Stored default ratings, newest first."""
    return [DefaultRatingOut(hall=d.hall, service=d.service, score=d.score, region=d.region,
                             rule=json.loads(d.rule), finished_at=d.finished_at, due_at=d.due_at,
                             estimated=d.estimated, applied_at=d.applied_at)
            for d in await store.list_defaults(hall=hall, limit=limit)]
