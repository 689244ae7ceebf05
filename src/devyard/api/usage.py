"""/api/v1/usage and /api/v1/workspaces/{name}/usage: what workspaces used, per user or workspace, and over time."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Response

from devyard.api.deps import CurrentUser, Workspaces
from devyard.clock import CLOCK
from devyard.fields import Moment
from devyard.workspaces.access import Action
from devyard.workspaces.usage_report import GroupBy, HistoryPoint, UsageReport, Window, as_csv, period

router = APIRouter(tags=["usage"])
CSV = {200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "The lines as CSV"}}


@router.get(
    "/usage",
    response_model=UsageReport,
    responses=CSV,  # type: ignore[arg-type]
    summary="Running hours, CPU, memory, disk, starts and cost per user or workspace (admins: everyone's)",
)
async def usage(
    ident: CurrentUser,
    service: Workspaces,
    start: Moment | None = Query(None, alias="from", description="Start of the period (default: 30 days before `to`)"),
    end: Moment | None = Query(None, alias="to", description="End of the period (default: now)"),
    group_by: GroupBy = "user",
    format: Literal["json", "csv"] = "json",
) -> UsageReport | Response:
    """The period's use; users see their own workspaces', admins everyone's; `format=csv` for the lines as CSV."""
    start, end = period(start, end, CLOCK.now())
    found = await service.usage(ident, start, end, group_by)
    if format == "csv":
        name = f"devyard-usage-{start:%Y%m%d}-{end:%Y%m%d}-{group_by}.csv"
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        return Response(as_csv(found), media_type="text/csv", headers=headers)
    return found


@router.get(
    "/workspaces/{name}/usage",
    response_model=list[HistoryPoint],
    tags=["workspaces"],
    summary="A workspace's CPU, memory and disk over the last hour or day",
)
async def workspace_usage(
    name: str, ident: CurrentUser, service: Workspaces, window: Window = "hour", owner: str | None = Query(None)
) -> list[HistoryPoint]:
    """The last hour: each sample; the last day: 5-minute averages."""
    return await service.usage_history(await service.find(ident, name, owner, Action.read), window)
