"""`GET /api/v1/gaps`: the gaps in devices' rating counters (docs/hub.md, "Counter gaps"), for the
operators: which ratings the hub has not received, since when, and which arrived late."""

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from ..deps import ADMIN_ERRORS, StoreDep, require_admin
from ..models import DEVICE_PATTERN, HALL_PATTERN, GapOut

MAX_LIMIT = 1000  # one page, as for ratings

router = APIRouter(tags=["devices"], dependencies=[Depends(require_admin)], responses=ADMIN_ERRORS)


@router.get("/gaps", response_model=list[GapOut])
async def list_gaps(store: StoreDep,
                    hall: Annotated[str | None, Query(pattern=HALL_PATTERN)] = None,
                    device: Annotated[str | None, Query(pattern=DEVICE_PATTERN)] = None,
                    state: Literal["open", "closed", "all"] = "open",
                    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100) -> list[GapOut]:
    """Counter gaps matching every given filter, newest opened first, at most `limit`. `hall` is
    where the rating that revealed the gap was rated; `state` `open` (default: ratings still
    missing), `closed` (all arrived late) or `all`. Needs the admin token for now."""
    rows = await store.list_gaps(hall=hall, device=device, state=state, limit=limit)
    return [GapOut.of(g) for g in rows]
