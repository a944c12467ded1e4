"""`GET /api/v1/devices`: every registered device of the hub at a glance, across halls and regions
(presence, last seen, firmware, health figures, open alerts), for the operators' overview. A hall's
own reads (its devices' health history, its alerts) are in halls.py."""

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status

from hcp.protocol import DEVICE_RE, HALL_RE

from ..deps import ADMIN_ERRORS, StoreDep, require_admin
from ..models import HALL_PATTERN, REGION_PATTERN, DeviceOverviewOut, Problem

MAX_LIMIT = 1000  # one page, as for ratings
AFTER_PATTERN = f"^(?:{HALL_RE.pattern})/(?:{DEVICE_RE.pattern})$"  # hall and device ids have no "/"

router = APIRouter(tags=["devices"], dependencies=[Depends(require_admin)], responses=ADMIN_ERRORS)


@router.get("/devices", response_model=list[DeviceOverviewOut],
            responses={404: {"model": Problem, "description": "`region` names no region"}})
async def devices_overview(
        store: StoreDep,
        hall: Annotated[str | None, Query(pattern=HALL_PATTERN)] = None,
        region: Annotated[str | None, Query(pattern=REGION_PATTERN)] = None,
        presence: Literal["online", "offline", "unknown", "retired"] | None = None,
        after: Annotated[str | None, Query(pattern=AFTER_PATTERN, examples=["H1/D07"],
                                           description="`{hall}/{device}` of the previous page's "
                                                       "last device: the page after it")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100) -> list[DeviceOverviewOut]:
    """Registered devices matching every given filter, by hall then device id, at most `limit`;
    the next page is `after={hall}/{device}` of the last one. An unknown hall is `[]`, an unknown
    region 404."""
    cursor = tuple(after.split("/", 1)) if after is not None else None
    rows = await store.list_devices(hall=hall, region=region, presence=presence,
                                    after=cursor, limit=limit)  # type: ignore[arg-type]
    if not rows and region is not None and await store.get_region(region) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no region {region}")
    return [DeviceOverviewOut.of(d) for d in rows]
