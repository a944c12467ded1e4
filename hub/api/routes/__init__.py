"""All routes; `api_router` is what the app includes."""

from fastapi import APIRouter, Depends

from ..deps import strict_query
from . import (defaults, device_overview, devices, export, gaps, gateways, halls, health, ingest, ledger,
               phone, ratings, regions, stats)
from . import audit, users
from . import cases

api_router = APIRouter(dependencies=[Depends(strict_query)])
api_router.include_router(health.router)
api_router.include_router(gateways.router, prefix="/api/v1")
api_router.include_router(devices.router, prefix="/api/v1")
api_router.include_router(ingest.router, prefix="/api/v1")
api_router.include_router(ratings.router, prefix="/api/v1")
api_router.include_router(halls.router, prefix="/api/v1")
api_router.include_router(regions.router, prefix="/api/v1")
api_router.include_router(device_overview.router, prefix="/api/v1")
api_router.include_router(ledger.router, prefix="/api/v1")
api_router.include_router(defaults.router, prefix="/api/v1")
api_router.include_router(gaps.router, prefix="/api/v1")
api_router.include_router(stats.router, prefix="/api/v1")
api_router.include_router(export.router, prefix="/api/v1")
api_router.include_router(users.router, prefix="/api/v1")
api_router.include_router(audit.router, prefix="/api/v1")
api_router.include_router(phone.router, prefix="/api/v1")
api_router.include_router(cases.router, prefix="/api/v1")
