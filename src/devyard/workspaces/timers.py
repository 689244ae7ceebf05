"""The leader's clock-driven stops and starts: working-hours schedules and the longest session an admin allows.

One round every `timers_interval_s` reads the workspaces that have a schedule or run (one query)
and acts on the schedule edges that passed since the last round (schedules.py), so a manager
restarted across 09:00 misses at most one round's edges, and a clock moved forward (clock.py)
fires the edge it jumped over. What it does is a start or stop with its cause, like any other.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from devyard.clock import CLOCK
from devyard.config import Settings
from devyard.loops import Loop
from devyard.reasons import Cause, DueStop, spoken
from devyard.schedules import Schedule, zone
from devyard.store.tables import UserRow, WorkspaceRow
from devyard.workspaces.states import Status

log = logging.getLogger("devyard.timers")


class Workspaces(Protocol):
    """What the timers need of the lifecycle."""

    async def timed_rows(self) -> list[WorkspaceRow]: ...
    async def start(self, row: WorkspaceRow, cause: Cause) -> WorkspaceRow: ...
    async def stop(self, row: WorkspaceRow, cause: Cause, error: str | None = None) -> WorkspaceRow: ...


def owner_zone(settings: Settings, owner: UserRow) -> ZoneInfo:
    """The time zone a workspace's schedule is read in: its owner's, else the manager's default."""
    return zone(owner.timezone or settings.default_timezone)


def lifetime_end(settings: Settings, started_at: datetime | None) -> datetime | None:
    """When a session that began at `started_at` reaches max_session_hours (None: no limit, or not started)."""
    if not settings.max_session_hours or started_at is None:
        return None
    return started_at + timedelta(hours=settings.max_session_hours)


def due_stops(
    settings: Settings, row: Any, owner_timezone: str | None, last_seen: float | None, now: datetime
) -> list[DueStop]:
    """Why a running workspace has not stopped yet: each stop that will come unless something changes, soonest first.

    `row` is anything with a workspace row's attributes; `last_seen` the latest activity in memory.
    """
    due: list[DueStop] = []
    timeout = row.idle_timeout_s if row.idle_timeout_s is not None else settings.idle_timeout_s
    seen = [t.timestamp() for t in (row.last_activity_at, row.started_at) if t is not None]
    last = max([*seen, last_seen or 0.0])
    if timeout and last:
        at = datetime.fromtimestamp(last + timeout, UTC)
        when = datetime.fromtimestamp(last, UTC).strftime("%H:%M:%S UTC")
        due.append(
            DueStop(reason="idle", at=at, detail=f"stops if not used for {spoken(timeout)}; last activity {when}")
        )
    if row.schedule and row.schedule.get("stop"):
        tz = zone(owner_timezone or settings.default_timezone)
        stop = Schedule.model_validate(row.schedule).next_edge(tz, now, "stop")
        if stop is not None:
            due.append(
                DueStop(
                    reason="schedule", at=stop, detail=f"its schedule stops it at {row.schedule['stop']} ({tz.key})"
                )
            )
    end = lifetime_end(settings, row.started_at)
    if end is not None:
        hours = spoken(settings.max_session_hours * 3600)
        due.append(DueStop(reason="max_lifetime", at=end, detail=f"sessions last at most {hours} here"))
    return sorted(due, key=lambda d: d.at)


class Timers(Loop):
    """Schedules and the session lifetime, on the leader."""

    def __init__(self, settings: Settings, service: Workspaces) -> None:
        super().__init__()
        self.settings, self.service = settings, service
        self.every_s = settings.timers_interval_s
        self._last: datetime | None = None

    async def tick(self) -> None:
        """One round: the edges passed since the last round, and sessions past their lifetime."""
        now = CLOCK.now()
        since = self._last or now - timedelta(seconds=self.every_s)
        self._last = now
        for row in await self.service.timed_rows():
            try:
                await self.check(row, since, now)
            except Exception:  # one workspace must not keep the others from their schedules
                log.exception("workspace %s/%s: its timers failed", row.owner.name, row.name)

    async def check(self, row: WorkspaceRow, since: datetime, now: datetime) -> None:
        """Act on one workspace: its schedule's last edge in (since, now], then its session's lifetime."""
        if row.schedule:
            tz = owner_zone(self.settings, row.owner)
            passed = Schedule.model_validate(row.schedule).latest_edge(tz, since, now)
            if passed is not None:
                at, edge = passed
                local = at.astimezone(tz).strftime("%a %H:%M")
                if edge == "start" and row.status in (Status.stopped, Status.failed) and row.provisioned_at:
                    await self.service.start(row, Cause("schedule", f"its schedule starts it at {local} ({tz.key})"))
                    return
                if edge == "stop" and row.status in (Status.running, Status.starting):
                    await self.service.stop(row, Cause("schedule", f"its schedule stops it at {local} ({tz.key})"))
                    return
        end = lifetime_end(self.settings, row.started_at)
        if row.status == Status.running and end is not None and now >= end:
            hours = spoken(self.settings.max_session_hours * 3600)
            await self.service.stop(
                row,
                Cause("max_lifetime", f"sessions last at most {hours} here; this one began {row.started_at:%H:%M} UTC"),
            )
