"""Usage as answers: per user or per workspace over a period (with an estimated cost), and one workspace's history.

Read from the `usage` rows workspaces/usage.py writes (and, for the last hour of a workspace, its
ring in memory on the leader). Costs use each size's `cost_per_hour` as configured now.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devyard.config import Settings
from devyard.errors import Invalid
from devyard.store.tables import UsageRow
from devyard.workspaces.usage import Sample

GroupBy = Literal["user", "workspace"]
Window = Literal["hour", "day"]
MAX_PERIOD = timedelta(days=400)
HOURLY_SERIES_UP_TO = timedelta(days=3)


class UsageLine(BaseModel):
    """One user's or one workspace's use over the period."""

    user: str
    workspace: str | None = Field(description="null when grouped by user")
    running_hours: float
    cpu_seconds: float
    memory_avg_bytes: int = Field(description="Average resident memory while running")
    memory_peak_bytes: int
    disk_bytes: int = Field(description="The largest disk use measured")
    starts: int
    cost: float | None = Field(description="running hours × the size's cost_per_hour; null when no size has a price")


class UsagePoint(BaseModel):
    """Running hours in one hour or day of the period."""

    at: datetime
    running_hours: float


class UsageReport(BaseModel):
    """GET /api/v1/usage."""

    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    group_by: GroupBy
    step: Literal["hour", "day"] = Field(description="The span of each point of `series`")
    lines: list[UsageLine]
    series: list[UsagePoint]


class HistoryPoint(BaseModel):
    """A workspace's use at one moment (a sample) or over one span (an average)."""

    at: datetime
    cpu_percent: float
    memory_bytes: int
    disk_bytes: int


def period(start: datetime | None, end: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    """The period asked for (default: the last 30 days; a time without a zone is UTC); Invalid when empty or too long."""
    end = _utc(end or now)
    start = _utc(start) if start else end - timedelta(days=30)
    if start >= end:
        raise Invalid(
            f"'from' ({start:%Y-%m-%d %H:%M}) must come before 'to' ({end:%Y-%m-%d %H:%M})", code="bad_period"
        )
    if end - start > MAX_PERIOD:
        raise Invalid(f"a usage period may be at most {MAX_PERIOD.days} days", code="bad_period")
    return start, end


def _utc(t: datetime) -> datetime:
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)


async def rows_in(
    db: async_sessionmaker[AsyncSession],
    start: datetime,
    end: datetime,
    owner: str | None = None,
    uid: str | None = None,
) -> Sequence[UsageRow]:
    """The usage rows whose span begins in [start, end), of one owner or one workspace when given."""
    query = select(UsageRow).where(UsageRow.start >= start, UsageRow.start < end).order_by(UsageRow.start)
    if owner is not None:
        query = query.where(UsageRow.owner == owner)
    if uid is not None:
        query = query.where(UsageRow.uid == uid)
    async with db() as s:
        return (await s.scalars(query)).all()


def report(
    settings: Settings, rows: Sequence[UsageRow], start: datetime, end: datetime, group_by: GroupBy
) -> UsageReport:
    """Add the rows up per user or per workspace, with a series of running hours per hour (short periods) or day."""
    prices = {name: size.cost_per_hour for name, size in settings.sizes.items()}
    priced = any(p is not None for p in prices.values())
    lines: dict[tuple[str, str | None], UsageLine] = {}
    step = "hour" if end - start <= HOURLY_SERIES_UP_TO else "day"
    series: dict[datetime, float] = {}
    memory_s: dict[tuple[str, str | None], float] = {}
    for row in rows:
        key = (row.owner, row.name if group_by == "workspace" else None)
        line = lines.setdefault(
            key,
            UsageLine(user=row.owner, workspace=key[1], running_hours=0, cpu_seconds=0, memory_avg_bytes=0,
                      memory_peak_bytes=0, disk_bytes=0, starts=0, cost=0.0 if priced else None),
        )  # fmt: skip
        line.running_hours += row.running_s / 3600
        line.cpu_seconds += row.cpu_s
        memory_s[key] = memory_s.get(key, 0.0) + row.memory_byte_s
        line.memory_peak_bytes = max(line.memory_peak_bytes, row.memory_peak)
        line.disk_bytes = max(line.disk_bytes, row.disk_bytes)
        line.starts += row.starts
        if line.cost is not None:
            line.cost += row.running_s / 3600 * (prices.get(row.size or "") or 0.0)
        at = row.start.replace(minute=0, second=0, microsecond=0)
        at = at if step == "hour" else at.replace(hour=0)
        series[at] = series.get(at, 0.0) + row.running_s / 3600
    for key, line in lines.items():
        line.memory_avg_bytes = int(memory_s[key] / (line.running_hours * 3600)) if line.running_hours else 0
        line.running_hours = round(line.running_hours, 4)
        line.cpu_seconds = round(line.cpu_seconds, 1)
        line.cost = round(line.cost, 4) if line.cost is not None else None
    return UsageReport(
        start=start,
        end=end,
        group_by=group_by,
        step=step,  # type: ignore[arg-type]
        lines=sorted(lines.values(), key=lambda x: (-x.running_hours, x.user, x.workspace or "")),
        series=[UsagePoint(at=at, running_hours=round(hours, 4)) for at, hours in sorted(series.items())],
    )


def as_csv(found: UsageReport) -> str:
    """The report's lines as CSV, one header row, the figures unrounded beyond the report's."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(list(UsageLine.model_fields))
    for line in found.lines:
        writer.writerow(["" if v is None else v for v in line.model_dump().values()])
    return out.getvalue()


def history(rows: Sequence[UsageRow], ring: list[Sample]) -> list[HistoryPoint]:
    """A workspace's points: the ring's samples where it has them, else each span's averages (after a manager restart)."""
    if ring:
        return [
            HistoryPoint(
                at=datetime.fromtimestamp(s.at, UTC),
                cpu_percent=s.cpu_percent,
                memory_bytes=s.memory_bytes,
                disk_bytes=s.disk_bytes,
            )
            for s in ring
        ]
    return [
        HistoryPoint(
            at=r.start,
            cpu_percent=round(100 * r.cpu_s / r.running_s, 1) if r.running_s else 0.0,
            memory_bytes=int(r.memory_byte_s / r.running_s) if r.running_s else 0,
            disk_bytes=r.disk_bytes,
        )
        for r in rows
    ]
