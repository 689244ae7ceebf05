"""Usage on the dashboard: a workspace's charts (SVG images) and the admins' usage page with its chart, table and CSV."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse

from devyard.api.deps import workspaces
from devyard.auth.identity import Identity
from devyard.clock import CLOCK
from devyard.web import charts
from devyard.web.admin import Admin
from devyard.web.pages import Viewer, page
from devyard.workspaces.access import Action
from devyard.workspaces.usage_report import GroupBy, UsageReport, Window, period

router = APIRouter(include_in_schema=False)
Metric = Literal["cpu", "memory", "disk"]
TITLES = {"cpu": "CPU", "memory": "Memory", "disk": "Disk"}
SPAN = {"hour": timedelta(hours=1), "day": timedelta(days=1)}


@router.get("/workspaces/{name}/chart/{metric}/{window}.svg")
async def workspace_chart(
    request: Request, name: str, metric: Metric, window: Window, me: Viewer, owner: str | None = None
) -> Response:
    """One small chart of a workspace's use over the last hour or day."""
    service = workspaces(request)
    row = await service.find(me, name, owner, Action.read)
    points = await service.usage_history(row, window)
    end = CLOCK.now()
    values = {
        "cpu": [(p.at, p.cpu_percent) for p in points],
        "memory": [(p.at, float(p.memory_bytes)) for p in points],
        "disk": [(p.at, float(p.disk_bytes)) for p in points],
    }[metric]
    label = charts.percent if metric == "cpu" else charts.size
    title = f"{TITLES[metric]}, last {window}"
    svg = charts.line_chart(title, values, end - SPAN[window], end, label, "%H:%M" if window == "hour" else "%a %H:%M")
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "no-store"})


async def _report(
    request: Request, me: Identity, start: date | None, end: date | None, group_by: GroupBy
) -> UsageReport:
    """The usage report for whole days from `start` to `end` (default: the last 30 days up to now)."""
    now = CLOCK.now()
    begin, until = period(
        datetime.combine(start, time(), UTC) if start else None,
        datetime.combine(end + timedelta(days=1), time(), UTC) if end else now,
        now,
    )
    return await workspaces(request).usage(me, begin, until, group_by)


From = Query(None, alias="from")
To = Query(None, alias="to")


@router.get("/admin/usage/chart.svg")
async def admin_usage_chart(
    request: Request, me: Admin, start: date | None = From, end: date | None = To, group_by: GroupBy = "user"
) -> Response:
    """The usage page's chart: running hours per hour or day of the period, as bars."""
    found = await _report(request, me, start, end, group_by)
    svg = charts.bar_chart(
        f"Running hours per {found.step}",
        [(p.at, p.running_hours) for p in found.series],
        found.start,
        found.end,
        timedelta(hours=1) if found.step == "hour" else timedelta(days=1),
        charts.hours,
        "%H:%M" if found.step == "hour" else "%b %d",
    )
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "no-store"})


@router.get("/admin/usage", response_class=HTMLResponse)
async def admin_usage(
    request: Request, me: Admin, start: date | None = From, end: date | None = To, group_by: GroupBy = "user"
) -> HTMLResponse:
    """Use per user or workspace over a chosen period: a chart of running hours, a sortable table, a CSV download."""
    service = workspaces(request)
    found = await _report(request, me, start, end, group_by)
    begin, until = found.start, found.end
    return page(
        request,
        "admin_usage.html",
        me,
        "admin",
        tab="usage",
        report=found,
        form={
            "from": begin.date().isoformat(),
            "to": (until - timedelta(seconds=1)).date().isoformat(),
            "group_by": group_by,
        },
        priced=any(s.cost_per_hour is not None for s in service.settings.sizes.values()),
    )
