"""Which workspaces a caller sees, in one query: as rows, or as the plain columns the API's list is made of."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, select, true
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devyard.auth.identity import Identity
from devyard.store.tables import ShareRow, UserRow, WorkspaceRow


def visible(who: Identity, all_users: bool, shared: bool) -> ColumnElement[bool]:
    """The caller's own workspaces, plus those shared with them when `shared`; everyone's when `all_users`."""
    if all_users:
        return true()
    mine = WorkspaceRow.owner_id == who.user_id
    if shared:
        mine = mine | WorkspaceRow.id.in_(select(ShareRow.workspace_id).where(ShareRow.user_id == who.user_id))
    return mine


async def rows(
    db: async_sessionmaker[AsyncSession], who: Identity, all_users: bool, shared: bool
) -> list[WorkspaceRow]:
    """The visible workspaces as rows, oldest first."""
    query = select(WorkspaceRow).where(visible(who, all_users, shared)).order_by(WorkspaceRow.created_at)
    async with db() as s:
        return list((await s.scalars(query)).all())


async def columns(db: async_sessionmaker[AsyncSession], who: Identity, all_users: bool, shared: bool) -> Sequence[Any]:
    """The visible workspaces as plain result rows with what the API shows (and `owner_name`): no ORM objects to build."""
    w = WorkspaceRow
    query = (
        select(
            w.uid,
            w.name,
            w.status,
            w.template,
            w.extension_groups,
            w.created_at,
            w.started_at,
            w.last_activity_at,
            w.error,
            w.idle_timeout_s,
            w.size,
            w.reason,
            w.devcontainer,
            w.last_start,
            w.last_stop,
            w.schedule,
            w.dormant_at,
            UserRow.name.label("owner_name"),
            UserRow.timezone.label("owner_timezone"),
        )
        .join(UserRow, UserRow.id == w.owner_id)
        .where(visible(who, all_users, shared))
        .order_by(w.created_at)
    )
    async with db() as s:
        return (await s.execute(query)).all()
