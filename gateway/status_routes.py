"""Read-only views of the status document: `GET /status` (the hall status page) and `GET /metrics`
(Prometheus). No authentication, like `GET /api/v1/status`: they show no secrets and no personal
data, and the gateway listens on the hall LAN. Both render `ctx.status()`, the one document."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from gateway.metrics import CONTENT_TYPE, render_metrics
from gateway.status_views import render_html

router = APIRouter()


@router.get("/status", response_class=HTMLResponse)
async def status_page(request: Request) -> HTMLResponse:
    doc = await request.app.state.ctx.status()
    return HTMLResponse(render_html(doc), headers={"Cache-Control": "no-store"})


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    doc = await request.app.state.ctx.status()
    return Response(render_metrics(doc), media_type=CONTENT_TYPE)
