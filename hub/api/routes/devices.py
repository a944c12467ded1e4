from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, status

from ...store import KeyIdCollision
from ..deps import ADMIN_ERRORS, BODY_ERRORS, StoreDep, require_admin
from ..models import DEVICE_PATTERN, DeviceRegistered, DeviceRegistration, DeviceRetiredOut

router = APIRouter(tags=["registration"], dependencies=[Depends(require_admin)],
                   responses=ADMIN_ERRORS | BODY_ERRORS)


@router.post("/devices", status_code=status.HTTP_201_CREATED, response_model=DeviceRegistered,
             responses={409: {"description": "another key of this device has the same kid"}})
async def register_device(body: DeviceRegistration, store: StoreDep) -> DeviceRegistered:
    """Register a device's signing key (admin); the answer is its kid. The key is write-only.

    Registering the device again with a new key rotates it: ratings signed with the old keys still
    verify by their kid. Registering it with another hall or window moves it.
    """
    try:
        kid = await store.register_device(body.device, body.hall, body.window, body.key_bytes())
    except KeyIdCollision as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return DeviceRegistered(device=body.device, kid=kid)


@router.post("/devices/{device}/retire", response_model=DeviceRetiredOut,
             responses={404: {"description": "no such device"}})
async def retire_device(device: Annotated[str, Path(pattern=DEVICE_PATTERN)],
                        store: StoreDep) -> DeviceRetiredOut:
    """Retire a device a replacement took the window of (admin; `hcp provision --replace` calls it
    after the gateway's own retirement). Items its gateway received from it after this moment are
    refused `retired_device`; its keys, ratings and history stay. Retiring it again keeps the first
    time; registering it again brings it back into service.
    """
    retired = await store.retire_device(device)
    if retired is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no device {device}")
    return DeviceRetiredOut(device=retired.device, hall=retired.hall, window=retired.window,
                            retired_at=retired.retired_at)
