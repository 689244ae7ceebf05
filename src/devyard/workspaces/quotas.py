"""Per-user quotas: how many workspaces, how many running at once, how much disk. Over one: 403 quota_exceeded.

Each limit is the user's own (set by an admin) or else the manager's default (`max_*_per_user`).
Checks and the change they guard run under one lock per user (WorkspaceService), so parallel
creates cannot slip past a limit together.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devyard.config import Settings
from devyard.errors import QuotaExceeded
from devyard.models import Status
from devyard.paths import disk_usage
from devyard.settings_groups import rights
from devyard.store.tables import UserRow, WorkspaceRow

# Workspaces that hold (or are about to hold) a running engine.
ACTIVE = (Status.running, Status.starting, Status.provisioning)


@dataclass(frozen=True, slots=True)
class Quota:
    """A user's limits in force; None: no limit."""

    max_workspaces: int | None
    max_running: int | None
    max_disk_mb: int | None


def quota_of(user: UserRow, settings: Settings) -> Quota:
    """The user's own limits where an admin set them, else the highest their groups set, else the manager's defaults."""
    granted = rights(settings.groups, user.groups)

    def pick(own: int | None, group: int | None, default: int | None) -> int | None:
        return own if own is not None else group if group is not None else default

    return Quota(
        pick(user.max_workspaces, granted.max_workspaces, settings.max_workspaces_per_user),
        pick(user.max_running, granted.max_running, settings.max_running_per_user),
        pick(user.max_disk_mb, granted.max_disk_mb, settings.max_disk_mb_per_user),
    )


async def _count(
    db: async_sessionmaker[AsyncSession],
    user_id: int,
    statuses: tuple[Status, ...] | None = None,
    exclude: int | None = None,
) -> int:
    query = select(func.count()).select_from(WorkspaceRow).where(WorkspaceRow.owner_id == user_id)
    if statuses:
        query = query.where(WorkspaceRow.status.in_(statuses))
    if exclude is not None:
        query = query.where(WorkspaceRow.id != exclude)
    async with db() as s:
        return int(await s.scalar(query) or 0)


async def check(
    db: async_sessionmaker[AsyncSession],
    settings: Settings,
    user: UserRow,
    *,
    new: bool,
    running: bool,
    exclude: int | None = None,
) -> None:
    """QuotaExceeded when one more workspace (`new`) or one more running (`running`) would pass `user`'s limits."""
    quota = quota_of(user, settings)
    if new and quota.max_workspaces is not None:
        have = await _count(db, user.id)
        if have >= quota.max_workspaces:
            raise QuotaExceeded(
                f"{user.name} has {have} workspace(s) and may have at most {quota.max_workspaces} "
                f"(quota max_workspaces): delete one first"
            )
    if running and quota.max_running is not None:
        have = await _count(db, user.id, ACTIVE, exclude)
        if have >= quota.max_running:
            raise QuotaExceeded(
                f"{user.name} has {have} workspace(s) running and may run at most {quota.max_running} "
                f"at once (quota max_running): stop one first"
            )
    if quota.max_disk_mb is not None:
        used = await asyncio.to_thread(disk_usage, usage_dir(settings, user.name))
        if used >= quota.max_disk_mb << 20:
            raise QuotaExceeded(
                f"{user.name}'s workspaces use {used / (1 << 20):.0f} MB of disk and may use at most "
                f"{quota.max_disk_mb} MB (quota max_disk_mb): free some space or delete a workspace"
            )


async def usage(db: async_sessionmaker[AsyncSession], settings: Settings, user: UserRow) -> tuple[int, int, int]:
    """What `user` uses now: workspaces, running (or about to), bytes of disk."""
    disk = await asyncio.to_thread(disk_usage, usage_dir(settings, user.name))
    return await _count(db, user.id), await _count(db, user.id, ACTIVE), disk


def usage_dir(settings: Settings, user: str) -> Path:
    """The folder whose size counts against a user's disk quota."""
    return settings.workspaces_dir / user
