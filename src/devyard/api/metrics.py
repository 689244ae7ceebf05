"""GET /metrics: the Prometheus text exposition, for admins (scrape with an admin-scoped token)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from devyard.api.contract import body_of
from devyard.api.deps import AdminUser, Workspaces

router = APIRouter(tags=["meta"])


@router.get(
    "/metrics",
    summary="Prometheus metrics (admins; Authorization: Bearer <admin-scoped token>)",
    response_class=Response,
    responses=body_of(CONTENT_TYPE_LATEST, "Prometheus' text format"),
)
async def metrics(_: AdminUser, service: Workspaces) -> Response:
    """Workspaces by status, starts, failures, crashes, start latency, gateway requests, WebSockets, engine memory and CPU."""
    await service.sampler.refresh()  # engine memory and CPU as of now
    return Response(service.render_metrics(), media_type=CONTENT_TYPE_LATEST)
