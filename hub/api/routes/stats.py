"""Statistics (admin): the figures of hub/stats.py per day or month, grouped, read from the rollups
the store keeps at ingest; and the rebuild of those rollups from the raw records."""

import re
from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BeforeValidator
from pydantic_core import to_json

from ...stats import MAX_RANGE_DAYS, StatsQuery, TooManyRows
from ..deps import ADMIN_ERRORS, StoreDep, require_admin
from ..models import HALL_PATTERN, REGION_PATTERN, StatsOut, StatsRebuiltOut, stats_body

router = APIRouter(prefix="/stats", tags=["statistics"], dependencies=[Depends(require_admin)],
                   responses=ADMIN_ERRORS)

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _day_text(value: object) -> object:
    """Only YYYY-MM-DD: pydantic would also take a Unix time or a midnight date-time."""
    if isinstance(value, str) and not _DAY.fullmatch(value):
        raise ValueError("a day is written YYYY-MM-DD")
    return value


Day = Annotated[date, BeforeValidator(_day_text)]


@router.get("", response_model=StatsOut)
async def get_stats(
        store: StoreDep,
        start: Annotated[Day, Query(alias="from", description="first day (YYYY-MM-DD, China), included")],
        end: Annotated[Day, Query(alias="to", description=f"last day, included; at most {MAX_RANGE_DAYS} "
                                                          "days from `from`")],
        period: Annotated[Literal["day", "month"], Query(description="one row per day or per month")] = "day",
        group: Annotated[Literal["region", "hall", "window", "staff", "matter", "unit"] | None,
                         Query(description="group by this (window: by hall and window); "
                                           "absent: one row per period")] = None,
        region: Annotated[str | None, Query(pattern=REGION_PATTERN,
                                            description="only the halls of this region (now)")] = None,
        hall: Annotated[str | None, Query(pattern=HALL_PATTERN, description="only this hall")] = None,
) -> Response:
    """Services, ratings per score, 差评, unbound ratings, rated services (with and without system
    defaults), evaluation rate and satisfaction, per day or month, for every hall or those of a
    region or one hall, grouped by region, hall, window, staff, matter or unit. Days are dates in
    China; docs/hub.md, "Statistics", says what each figure counts. 422 for a range that ends
    before it starts or spans more than 366 days, and for an answer of more than 50,000
    rows (a year per day by staff, say)."""
    try:
        query = StatsQuery(start, end, period, group, region, hall)
    except ValueError as exc:
        raise RequestValidationError([{"type": "value_error", "loc": ["query", "to"], "input": str(end),
                                       "msg": str(exc)}]) from None
    try:
        rows = await store.stats(query)
    except TooManyRows as exc:
        raise RequestValidationError([{"type": "too_many_rows", "loc": ["query"], "input": None,
                                       "msg": str(exc)}]) from None
    body = stats_body(query, rows)  # StatsOut, serialized without a model per row
    return Response(to_json(body), media_type="application/json")


@router.post("/rebuild", response_model=StatsRebuiltOut)
async def rebuild_stats(store: StoreDep) -> StatsRebuiltOut:
    """Recount the statistics from the raw ratings, services and system defaults, replacing the
    rollups (after restoring a backup, say). One transaction: ingest of ratings and services waits
    until it commits (2–3 minutes per 10 million ratings); reads go on meanwhile."""
    return StatsRebuiltOut.of(await store.rebuild_stats())
