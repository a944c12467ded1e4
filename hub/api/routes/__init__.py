"""All routes; `api_router` is what the app includes."""

from fastapi import APIRouter, Depends

from ..deps import strict_query
from . import devices, gateways, halls, health, ingest, ratings

api_router = APIRouter(dependencies=[Depends(strict_query)])
api_router.include_router(health.router)
api_router.include_router(gateways.router, prefix="/api/v1")
api_router.include_router(devices.router, prefix="/api/v1")
api_router.include_router(ingest.router, prefix="/api/v1")
api_router.include_router(ratings.router, prefix="/api/v1")
api_router.include_router(halls.router, prefix="/api/v1")
