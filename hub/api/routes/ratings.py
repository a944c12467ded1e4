from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status

from hcp.protocol import MAX_COUNTER

from ..deps import ADMIN_ERRORS, StoreDep, require_admin
from ..models import DEVICE_PATTERN, HALL_PATTERN, WINDOW_PATTERN, RatingOut

MAX_LIMIT = 1000  # one page; more is a report, not a read

router = APIRouter(tags=["ratings"], dependencies=[Depends(require_admin)],
                   responses=ADMIN_ERRORS)


@router.get("/ratings", response_model=list[RatingOut])
async def list_ratings(store: StoreDep,
                       hall: Annotated[str | None, Query(pattern=HALL_PATTERN)] = None,
                       device: Annotated[str | None, Query(pattern=DEVICE_PATTERN)] = None,
                       window: Annotated[str | None, Query(pattern=WINDOW_PATTERN)] = None,
                       ticket: Annotated[str | None, Query(max_length=16)] = None,
                       limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100) -> list[RatingOut]:
    """Ratings matching every given filter, newest first. Needs the admin token for now (reader
    roles come later). `window` matches the binding's window, or the device's window when unbound."""
    rows = await store.list_ratings(hall=hall, device=device, window=window, ticket=ticket, limit=limit)
    return [RatingOut.of(r) for r in rows]


@router.get("/ratings/{device}/{n}", response_model=RatingOut,
            responses={404: {"description": "no such rating"}})
async def get_rating(store: StoreDep, device: Annotated[str, Path(pattern=DEVICE_PATTERN)],
                     n: Annotated[int, Path(ge=1, le=MAX_COUNTER)]) -> RatingOut:
    """One rating by id `{device}:{n}`. Needs the admin token for now."""
    rating = await store.get_rating(device, n)
    if rating is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no rating {device}:{n}")
    return RatingOut.of(rating)
