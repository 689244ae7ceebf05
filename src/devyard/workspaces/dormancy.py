"""Dormancy: workspaces nobody opens any more are stopped and marked, then (after a backup) deleted.

A workspace not opened for `dormant_after_days` (its last activity, else its last start, else its
creation) is stopped with the reason `dormant` and gets `dormant_at`; its owner sees the date it
will be deleted. Opening or starting it clears the mark (lifecycle.start). `delete_dormant_after_days`
after the mark it is deleted, once a backup of it is written under `<backups_dir>/dormant/<owner>/`
where the backend keeps files on this machine; a backup that fails keeps the workspace.
`plan()` is the same decision as a report: what is dormant, what is due and when. With
`dormancy_dry_run` the loop only logs what it would do, once per workspace and step.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from devyard.backends.base import WorkspaceSpec
from devyard.clock import CLOCK
from devyard.config import Settings
from devyard.loops import Loop
from devyard.reasons import Cause
from devyard.store.tables import WorkspaceRow
from devyard.workspaces import backups
from devyard.workspaces.states import Status

log = logging.getLogger("devyard.dormancy")
Step = Literal["dormant", "delete"]


class DormancyItem(BaseModel):
    """One workspace as dormancy sees it: when it was last used, and what comes next, when."""

    owner: str
    name: str
    status: Status
    last_used_at: datetime
    dormant_at: datetime | None
    next: Step | None  # the next step (None: dormancy is off, or a dormant one is never deleted)
    next_at: datetime | None
    due: bool  # the next step's time has come


class DormancyReport(BaseModel):
    """What dormancy does on this manager, and to which workspaces (GET /api/v1/dormancy)."""

    dormant_after_days: int
    delete_dormant_after_days: int
    dry_run: bool
    workspaces: list[DormancyItem]


class Workspaces(Protocol):
    """What dormancy needs of the lifecycle."""

    async def dormancy_due(
        self, dormant_before: datetime | None, delete_before: datetime | None
    ) -> list[WorkspaceRow]: ...
    def spec(self, row: WorkspaceRow) -> WorkspaceSpec: ...
    def lock(self, uid: str) -> asyncio.Lock: ...
    async def row_by_uid(self, uid: str) -> WorkspaceRow | None: ...
    async def stop(self, row: WorkspaceRow, cause: Cause, error: str | None = None) -> WorkspaceRow: ...
    async def save(self, row: WorkspaceRow, **fields: Any) -> None: ...
    async def delete(self, row: WorkspaceRow, keep_files: bool) -> None: ...
    async def noted(self, row: WorkspaceRow, cause: Cause, verb: str) -> dict[str, object]: ...


def last_used(row: Any) -> datetime:
    """When a workspace was last opened: its last activity, else its last start, else its creation."""
    times: list[datetime] = [t for t in (row.last_activity_at, row.started_at, row.created_at) if t is not None]
    return max(times)


def delete_at(settings: Settings, dormant_at: datetime | None) -> datetime | None:
    """When a workspace marked dormant at `dormant_at` is deleted (None: not dormant, or never)."""
    if dormant_at is None or not settings.delete_dormant_after_days:
        return None
    return dormant_at + timedelta(days=settings.delete_dormant_after_days)


def item(settings: Settings, row: WorkspaceRow, now: datetime) -> DormancyItem:
    """What dormancy will do to one workspace, and when."""
    used = last_used(row)
    step: Step | None = None
    when: datetime | None = None
    if row.dormant_at is not None:
        when = delete_at(settings, row.dormant_at)
        step = "delete" if when else None
    elif settings.dormant_after_days and row.provisioned_at is not None:
        step, when = "dormant", used + timedelta(days=settings.dormant_after_days)
    return DormancyItem(
        owner=row.owner.name,
        name=row.name,
        status=Status(row.status),
        last_used_at=used,
        dormant_at=row.dormant_at,
        next=step,
        next_at=when,
        due=when is not None and when <= now,
    )


def plan(settings: Settings, rows: list[WorkspaceRow], now: datetime) -> DormancyReport:
    """Every workspace dormancy has a step for: dormant ones first, then by when the step comes."""
    items = [item(settings, row, now) for row in rows]
    shown = [i for i in items if i.next is not None or i.dormant_at is not None]
    return DormancyReport(
        dormant_after_days=settings.dormant_after_days,
        delete_dormant_after_days=settings.delete_dormant_after_days,
        dry_run=settings.dormancy_dry_run,
        workspaces=sorted(shown, key=lambda i: (i.dormant_at is None, i.next_at or now)),
    )


class Dormancy(Loop):
    """Marks and deletes on the leader, every `timers_interval_s`."""

    def __init__(self, settings: Settings, service: Workspaces, local_files: bool) -> None:
        super().__init__()
        self.settings, self.service, self.local_files = settings, service, local_files
        self.every_s = settings.timers_interval_s
        self._said: set[tuple[str, str]] = set()  # (uid, step) a dry run has logged already

    async def tick(self) -> None:
        """One round: each workspace whose next step is due takes it (or, in a dry run, is named once)."""
        if not self.settings.dormant_after_days and not self.settings.delete_dormant_after_days:
            return
        now = CLOCK.now()
        days = (self.settings.dormant_after_days, self.settings.delete_dormant_after_days)
        dormant_before, delete_before = (now - timedelta(days=d) if d else None for d in days)
        # Only the rows with a step due, not every workspace every round; item() decides, as the report does.
        for row in await self.service.dormancy_due(dormant_before, delete_before):
            found = item(self.settings, row, now)
            if not found.due or found.next is None:
                continue
            if self.settings.dormancy_dry_run:
                if (row.uid, found.next) not in self._said:
                    self._said.add((row.uid, found.next))
                    log.info(
                        "dry run: would %s %s/%s (last used %s)",
                        _verb(found.next),
                        found.owner,
                        found.name,
                        found.last_used_at,
                    )
                continue
            try:
                await (self.mark(row, found) if found.next == "dormant" else self.remove(row, found))
            except Exception:  # one workspace must not keep the others from their steps
                log.exception("dormancy of %s/%s failed", row.owner.name, row.name)

    async def mark(self, row: WorkspaceRow, found: DormancyItem) -> None:
        """Stop the workspace (if it runs) and mark it dormant, in one write under its lock."""
        days = self.settings.dormant_after_days
        cause = Cause("dormant", f"not opened for {days} days (last used {found.last_used_at:%Y-%m-%d %H:%M} UTC)")
        async with self.service.lock(row.uid):  # no start or stop under way: the row read here stays true
            fresh = await self.service.row_by_uid(row.uid)
            if fresh is None or fresh.dormant_at is not None or last_used(fresh) != found.last_used_at:
                return  # gone, marked, or used since the round began
            if fresh.status in (Status.running, Status.starting):
                await self.service.stop(fresh, cause)  # its engine stops once this lock is let go
                await self.service.save(fresh, dormant_at=CLOCK.now())
            elif fresh.status in (Status.stopped, Status.failed):
                await self.service.save(
                    fresh, dormant_at=CLOCK.now(), last_stop=await self.service.noted(fresh, cause, "stop")
                )
            else:
                return  # in the middle of a change: the next round looks again
        log.info("workspace %s/%s is dormant: %s", row.owner.name, row.name, cause.detail)

    async def remove(self, row: WorkspaceRow, found: DormancyItem) -> None:
        """Back the workspace up (where its files are on this machine), then delete it."""
        if row.status not in (Status.stopped, Status.failed):
            return  # started again meanwhile (which clears dormancy) or busy: not this round
        if self.local_files and row.provisioned_at is not None:
            folder = self.settings.backups_dir / "dormant" / row.owner.name
            manifest = backups.manifest_of(row)
            saved = await asyncio.to_thread(backups.keep_one, folder, self.service.spec(row), manifest, None)
            log.info("workspace %s/%s: backed up to %s before its deletion", row.owner.name, row.name, saved)
        await self.service.noted(row, Cause("dormant", f"dormant since {found.dormant_at:%Y-%m-%d} UTC"), "delete")
        await self.service.delete(row, keep_files=False)
        log.info("workspace %s/%s deleted: dormant since %s", row.owner.name, row.name, found.dormant_at)


def _verb(step: Step) -> str:
    return "mark dormant" if step == "dormant" else "delete"
