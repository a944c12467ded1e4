from fastapi import APIRouter, Depends, HTTPException, status

from ...store import KeyIdCollision
from ..deps import ADMIN_ERRORS, BODY_ERRORS, StoreDep, require_admin
from ..models import DeviceRegistered, DeviceRegistration

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
