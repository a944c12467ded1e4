from fastapi import APIRouter

from ..models import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness (no authentication)")
async def healthz() -> Health:
    return Health(ok=True)
