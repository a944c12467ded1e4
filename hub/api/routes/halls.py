from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query

from ..deps import ADMIN_ERRORS, StoreDep, require_admin
from ..models import DEVICE_PATTERN, HALL_PATTERN, DeviceAlertOut, DeviceOut, HealthOut

MAX_LIMIT = 1000  # one page, as for ratings

router = APIRouter(prefix="/halls/{hall}", tags=["devices"], dependencies=[Depends(require_admin)],
                   responses=ADMIN_ERRORS)

HallPath = Annotated[str, Path(pattern=HALL_PATTERN)]


@router.get("/devices", response_model=list[DeviceOut])
async def list_devices(store: StoreDep, hall: HallPath) -> list[DeviceOut]:
    """The devices registered to the hall, by id, each with its newest health snapshot and the
    kinds of its open alerts (both as the hall's gateway reported them). Needs the admin token for
    now. An unknown hall is an empty list."""
    return [DeviceOut.of(d) for d in await store.list_devices(hall=hall)]


@router.get("/devices/{device}/health", response_model=list[HealthOut])
async def health_history(store: StoreDep, hall: HallPath,
                         device: Annotated[str, Path(pattern=DEVICE_PATTERN)],
                         limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100) -> list[HealthOut]:
    """The device's health snapshots from this hall's gateway, newest `received_at` first."""
    rows = await store.health_history(hall=hall, device=device, limit=limit)
    return [HealthOut.of(h) for h in rows]


@router.get("/alerts", response_model=list[DeviceAlertOut])
async def device_alerts(store: StoreDep, hall: HallPath,
                        device: Annotated[str | None, Query(pattern=DEVICE_PATTERN)] = None,
                        state: Literal["raised", "cleared"] | None = None,
                        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100) -> list[DeviceAlertOut]:
    """Device alerts of the hall's gateway, newest alert id first; `state=raised`: the open ones."""
    rows = await store.device_alerts(hall=hall, device=device, state=state, limit=limit)
    return [DeviceAlertOut.of(a) for a in rows]
