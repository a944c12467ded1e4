"""Regions and the halls in them (admin): a region's name, 行政区划代码 and default-rating rule,
and which region each hall belongs to. The default-rating job and the exports read them."""

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, status

from ...store import HallRecord, UnknownRegion
from ..deps import ADMIN_ERRORS, BODY_ERRORS, StoreDep, require_admin
from ..models import HALL_PATTERN, REGION_PATTERN, HallOut, HallPut, Problem, RegionOut, RegionPut

router = APIRouter(tags=["regions"], dependencies=[Depends(require_admin)], responses=ADMIN_ERRORS)

RegionPath = Annotated[str, Path(pattern=REGION_PATTERN)]
HallPath = Annotated[str, Path(pattern=HALL_PATTERN)]


@router.put("/regions/{region}", response_model=RegionOut, responses=BODY_ERRORS)
async def put_region(store: StoreDep, region: RegionPath, body: RegionPut) -> RegionOut:
    """Create the region or replace its settings (`created_at` stays). The rule is
    `default_rule` `{"kind": "calendar_days"|"working_days", "days": 1..366}` or a `preset`; a
    rule that is not one is 422 with the reason. The answer lists the region's halls."""
    record = await store.put_region(region, name=body.name, area_code=body.area_code,
                                    default_rule=body.rule())
    return RegionOut.of(record, await store.halls(region=region))


@router.get("/regions", response_model=list[RegionOut])
async def list_regions(store: StoreDep) -> list[RegionOut]:
    """Every region, by id, each with its halls, by id."""
    regions = await store.list_regions()
    halls: dict[str, list[HallRecord]] = {}
    for hall in await store.halls():
        halls.setdefault(hall.region, []).append(hall)
    return [RegionOut.of(r, halls.get(r.region, [])) for r in regions]


@router.put("/halls/{hall}", response_model=HallOut,
            responses={**BODY_ERRORS, 404: {"model": Problem, "description": "no such region"}})
async def put_hall(store: StoreDep, hall: HallPath, body: HallPut) -> HallOut:
    """Put the hall into a region, or move it to another one, and set its name (absent: none).
    The region must exist (404 otherwise, and nothing changes). A hall needs no gateway or device
    to be put in a region, and a registered device's hall needs no region."""
    try:
        record = await store.put_hall(hall, region=body.region, name=body.name)
    except UnknownRegion:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"no region {body.region}: create it with PUT /api/v1/regions/{body.region}") from None
    return HallOut.of(record)
