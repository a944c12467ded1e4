"""Exports for the regional 好差评 platforms (hub/export.py): a region's ratings and system default
ratings over a range of China dates, as GB/T 39046 table 9 or provincial-interface rows, CSV or
JSON, streamed page by page (a month of a large region never sits in memory)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse

from ...default_rules import CHINA_TZ
from ...export import FORMATS, CsvEncoder, Encoder, ExportError, ExportRecord, JsonEncoder
from ...store import HubStore
from ..deps import ADMIN_ERRORS, StoreDep, require_admin
from ..models import Problem

MAX_DAYS = 366
PAGE = 5000
LATE_MARGIN = timedelta(days=1)  # a rating is stored after it is received (clocks may differ a little)
MEDIA = {"csv": "text/csv; charset=utf-8", "json": "application/json"}

router = APIRouter(tags=["export"], dependencies=[Depends(require_admin)], responses=ADMIN_ERRORS)


@router.get("/export", response_class=StreamingResponse,
            responses={200: {"description": "the rows, streamed",
                             "content": {"text/csv": {"schema": {"type": "string"}},
                                         "application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}},
                       404: {"model": Problem, "description": "no such region"},
                       409: {"model": Problem, "description": "the region has no area_code (行政区划代码) yet"}})
async def export(store: StoreDep,
                 region: Annotated[str, Query(min_length=1, max_length=64)],
                 date_from: Annotated[date, Query(alias="from", description="first China date")],
                 date_to: Annotated[date, Query(alias="to", description="last China date (included)")],
                 format: Annotated[Literal["gbt39046", "provincial"], Query()] = "gbt39046",
                 type: Annotated[Literal["csv", "json"], Query()] = "csv",
                 bom: Annotated[bool, Query(description="CSV starts with U+FEFF (for Excel)")] = False,
                 ) -> StreamingResponse:
    """The region's device ratings received on the China dates `from`..`to`, its system default
    ratings whose period ended then, and its phone ratings given then (docs/phone.md), one row each (hub/export.py, docs/hub.md "Exports"). A rating
    that cannot be exported (not verified, a time without offset) is left out, never a broken file."""
    found = await store.get_region(region)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no region {region}")
    if not found.area_code:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"region {region} has no area_code: set it with PUT /api/v1/regions/{region}")
    if date_to < date_from or (date_to - date_from).days >= MAX_DAYS:
        raise RequestValidationError([{"type": "value_error", "loc": ["query", "to"], "input": str(date_to),
                                       "msg": f"`to` must be on or after `from`, at most {MAX_DAYS} days in all"}])
    halls = [h.hall for h in await store.halls(region=region)]
    fmt = FORMATS[format]
    encoder: Encoder = CsvEncoder(fmt, bom=bom) if type == "csv" else JsonEncoder(fmt)
    body = _stream(store, halls, found.area_code, date_from, date_to, encoder)
    name = f"haochaping-{region}-{date_from}-{date_to}-{format}.{type}"
    return StreamingResponse(body, media_type=MEDIA[type],
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})


async def _stream(store: HubStore, halls: list[str], area_code: str, first: date, last: date,
                  encoder: Encoder) -> AsyncIterator[bytes]:
    start = datetime.combine(first, time(0), tzinfo=CHINA_TZ)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=CHINA_TZ)
    since = (start - LATE_MARGIN).astimezone(UTC).isoformat(timespec="milliseconds")
    yield encoder.start().encode()
    for hall in halls:
        after = 0
        while True:
            page = await store.export_ratings(hall, since=since, after_seq=after, limit=PAGE)
            if not page:
                break
            after = page[-1][0]
            records = []
            for _seq, rating in page:
                try:
                    rated_at = datetime.fromisoformat(rating.received_at)
                    if start <= rated_at < end:
                        records.append(ExportRecord.from_stored(rating, area_code=area_code))
                except (ValueError, ExportError):
                    continue  # not exportable: an unverified rating, a time without offset
            yield encoder.rows(records).encode()
        defaults = await store.export_defaults(hall, due_from=start.isoformat(), due_to=end.isoformat())
        yield encoder.rows(
            ExportRecord(rating_id=f"default:{d_hall}:{service}", score=3, rated_at=datetime.fromisoformat(due_at),
                         area_code=area_code, case_no=case_no, matter_code=matter_code, unit=unit,
                         staff_id=staff_id, is_default=True, corrects=service)
            for d_hall, service, due_at, case_no, matter_code, unit, staff_id in defaults).encode()
        phone = []
        for rating in await store.export_phone(hall, since=start.astimezone(UTC).isoformat(timespec="milliseconds"),
                                               until=end.astimezone(UTC).isoformat(timespec="milliseconds")):
            try:
                phone.append(ExportRecord.from_phone(rating, area_code=area_code))
            except ExportError:
                continue
        yield encoder.rows(phone).encode()
    yield encoder.end().encode()
