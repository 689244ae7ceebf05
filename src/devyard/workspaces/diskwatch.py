"""Disk use of running workspaces, checked while they run: over its size's allowance, the owner is warned, then it stops.

A size's `disk_mb` was only checked at start, so a workspace could fill the disk while it ran. Every
`disk_check_interval_s` the leader measures each running workspace that has an allowance. Over it,
the workspace's `error` says so (the dashboard and API show it) and a line goes to its log; still
over after `disk_grace_s`, it is stopped and its `error` says why. Back under, the warning goes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from devyard.backends.base import WorkspaceSpec
from devyard.config import Settings
from devyard.loops import Loop
from devyard.paths import disk_usage
from devyard.provision.report import ProgressLog
from devyard.reasons import Cause, spoken
from devyard.store.tables import WorkspaceRow
from devyard.workspaces import sizes
from devyard.workspaces.access import Route
from devyard.workspaces.states import Status

log = logging.getLogger("devyard.disk")
MB = 1 << 20


class Workspaces(Protocol):
    """What the watch needs of the lifecycle (and nothing more)."""

    def routes_in(self, status: Status) -> list[Route]: ...
    async def rows_by_uid(self, uids: list[str]) -> list[WorkspaceRow]: ...
    async def row_by_uid(self, uid: str) -> WorkspaceRow | None: ...
    def lock(self, uid: str) -> asyncio.Lock: ...
    def spec(self, row: WorkspaceRow) -> WorkspaceSpec: ...
    async def save(self, row: WorkspaceRow, **fields: Any) -> None: ...
    async def stop(self, row: WorkspaceRow, cause: Cause, error: str | None = None) -> WorkspaceRow: ...


class DiskWatch(Loop):
    """The loop; the lifecycle makes the changes."""

    def __init__(self, settings: Settings, service: Workspaces) -> None:
        super().__init__()
        self.service, self.settings = service, settings
        self.every_s = settings.disk_check_interval_s
        self.warned: dict[str, float] = {}  # uid → when its owner was warned (monotonic)

    async def tick(self) -> None:
        """One round over the running workspaces."""
        running = {r.uid for r in self.service.routes_in(Status.running)}
        for uid in self.warned.keys() - running:
            del self.warned[uid]
        for row in await self.service.rows_by_uid(sorted(running)):
            if row.status == Status.running:
                await self.check(row, time.monotonic())

    async def check(self, row: WorkspaceRow, now: float) -> None:
        """Measure one running workspace and warn, stop or clear its warning."""
        service, uid = self.service, row.uid
        allowed = sizes.limits(self.settings, row.size).disk_bytes
        if not allowed:
            self.warned.pop(uid, None)
            return
        spec = service.spec(row)
        used = await asyncio.to_thread(disk_usage, spec.root)
        size = sizes.effective(self.settings, row.size)
        if used <= allowed:
            if self.warned.pop(uid, None) is not None:
                await self._say(row, None)
            return
        over = f"uses {used / MB:.0f} MB of disk, more than its size '{size}' allows ({allowed // MB} MB)"
        warned = self.warned.setdefault(uid, now)
        if warned == now:
            grace = self.settings.disk_grace_s
            message = f"{over}: delete files or choose a larger size; it stops in {spoken(grace)} otherwise"
            log.info("workspace %s/%s %s", row.owner.name, row.name, over)
            ProgressLog(spec.log_file).line(message)
            await self._say(row, message)
        elif now - warned >= self.settings.disk_grace_s:
            del self.warned[uid]
            message = f"stopped: it {over} and was not brought under it within {spoken(self.settings.disk_grace_s)} of the warning"
            log.info("workspace %s/%s %s", row.owner.name, row.name, message)
            ProgressLog(spec.log_file).line(message)
            fresh = await service.row_by_uid(uid)
            if fresh is not None and fresh.status == Status.running:  # not stopped meanwhile by someone else
                await service.stop(fresh, Cause("quota", message), error=message)

    async def _say(self, row: WorkspaceRow, error: str | None) -> None:
        """Set (or clear) the warning in a workspace's `error`, if it still runs: it may have been stopped while it was measured."""
        async with self.service.lock(row.uid):
            fresh = await self.service.row_by_uid(row.uid)
            if fresh is not None and fresh.status == Status.running:
                await self.service.save(fresh, error=error)
