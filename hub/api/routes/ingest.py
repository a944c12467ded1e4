from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status

from ..deps import ADMIN_ERRORS, BODY_ERRORS, GATEWAY_ERRORS, GatewayDep, SettingsDep, StoreDep, require_admin
from ..models import HALL_PATTERN, IngestEnvelope, IngestResponse, IngestResult, Problem, RejectionsOut

router = APIRouter(tags=["ingest"])


@router.post("/ingest", response_model=IngestResponse,
             responses={**GATEWAY_ERRORS, **BODY_ERRORS,
                        403: {"model": Problem, "description": "the batch's hall is not the token's hall"},
                        413: {"model": Problem, "description": "too many items, or body too large"}})
async def ingest(envelope: IngestEnvelope, gateway: GatewayDep, store: StoreDep,
                 settings: SettingsDep) -> IngestResponse:
    """Ingest a batch of services, ratings, device health snapshots and device alerts from a hall's
    gateway (docs/protocol.md, "Hub ingest").

    One result per item, in item order: `accepted`, `duplicate` (already stored, nothing changes;
    for a rating the first binding wins) or `rejected` with a reason. A bad item never fails the rest
    of the batch; the batch is written in one transaction.
    """
    if envelope.hall != gateway.hall:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"this token belongs to hall {gateway.hall}, not {envelope.hall}")
    if len(envelope.items) > settings.max_items:
        raise HTTPException(413,
                            f"{len(envelope.items)} items; at most {settings.max_items} per batch")
    results = await store.ingest(envelope.hall, envelope.items)
    return IngestResponse(results=[IngestResult.of(r) for r in results])


@router.get("/ingest/rejections", response_model=RejectionsOut, dependencies=[Depends(require_admin)],
            responses=ADMIN_ERRORS)
async def rejections(store: StoreDep, hall: Annotated[str | None, Query(pattern=HALL_PATTERN)] = None,
                     limit: Annotated[int, Query(ge=0, le=1000)] = 50) -> RejectionsOut:
    """Rejected items (admin): counts by reason and the most recent ones."""
    return RejectionsOut.of(await store.rejection_summary(hall=hall, limit=limit))
