"""Workspace rows in the database, and writes that tell the other replicas in the same transaction.

Every write that changes what a replica holds in memory (a status, a share, a port's visibility)
goes through `change()`, which commits the change and its notice together: a replica never sees
a notice for a write that did not land, nor misses one for a write that did.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devyard.errors import Conflict, NotFound, WorkspaceExists
from devyard.store.tables import GroupRow, GroupShareRow, MemberRow, ShareRow, UserRow, WorkspaceRow
from devyard.workspaces.states import Status

Notify = Callable[[AsyncSession, str], Awaitable[None]]  # Coordinator.notify: sent when the session commits


class Repository:
    """Reads and writes of workspace and share rows."""

    def __init__(self, db: async_sessionmaker[AsyncSession], notify: Notify) -> None:
        self.db = db
        self._notify = notify

    @asynccontextmanager
    async def change(self, notice: str) -> AsyncIterator[AsyncSession]:
        """A session whose writes commit together with a notice to the other replicas (a workspace's uid, or a `kind:key`)."""
        async with self.db() as s:
            yield s
            await self._notify(s, notice)
            await s.commit()

    async def broadcast(self, notice: str) -> None:
        """Send the other replicas a notice with no write attached."""
        async with self.change(notice):
            pass

    async def named(self, owner: str, name: str) -> WorkspaceRow | None:
        """The workspace `owner/name`."""
        async with self.db() as s:
            return await s.scalar(
                select(WorkspaceRow)
                .join(UserRow, UserRow.id == WorkspaceRow.owner_id)
                .where(UserRow.name == owner, WorkspaceRow.name == name)
            )

    async def by_uid(self, uid: str) -> WorkspaceRow | None:
        """The workspace with this uid, fresh from the database."""
        rows = await self.by_uids([uid])
        return rows[0] if rows else None

    async def by_uids(self, uids: list[str]) -> list[WorkspaceRow]:
        """The workspaces with these uids, fresh from the database."""
        async with self.db() as s:
            return list((await s.scalars(select(WorkspaceRow).where(WorkspaceRow.uid.in_(uids)))).all())

    async def all(self) -> list[WorkspaceRow]:
        """Every workspace, oldest first."""
        async with self.db() as s:
            return list((await s.scalars(select(WorkspaceRow).order_by(WorkspaceRow.id))).all())

    async def of_owner(
        self, user_id: int, statuses: tuple[Status, ...] | None = None, provisioned: bool = False
    ) -> list[WorkspaceRow]:
        """A user's workspaces, those in `statuses` only when given, provisioned ones only when `provisioned`."""
        query = select(WorkspaceRow).where(WorkspaceRow.owner_id == user_id)
        if statuses is not None:
            query = query.where(WorkspaceRow.status.in_(statuses))
        if provisioned:
            query = query.where(WorkspaceRow.provisioned_at.is_not(None))
        async with self.db() as s:
            return list((await s.scalars(query)).all())

    async def timed(self) -> list[WorkspaceRow]:
        """The workspaces a clock can act on: those with a schedule, and those running (for the session lifetime)."""
        query = select(WorkspaceRow).where(
            or_(WorkspaceRow.schedule.is_not(None), WorkspaceRow.status == Status.running)
        )
        async with self.db() as s:
            return list((await s.scalars(query)).all())

    async def dormancy_due(self, dormant_before: datetime | None, delete_before: datetime | None) -> list[WorkspaceRow]:
        """The workspaces dormancy may have a step for now: marked before `delete_before`, or last used before `dormant_before`.

        Last used is the latest of last activity, start and creation (dormancy.last_used): it lies
        before a time exactly when each of them that is set does, which every database can ask.
        """
        w = WorkspaceRow
        due = []
        if delete_before is not None:
            due.append(w.dormant_at <= delete_before)
        if dormant_before is not None:
            unused = [or_(c.is_(None), c <= dormant_before) for c in (w.last_activity_at, w.started_at, w.created_at)]
            due.append(and_(w.dormant_at.is_(None), w.provisioned_at.is_not(None), *unused))
        if not due:
            return []
        async with self.db() as s:
            return list((await s.scalars(select(w).where(or_(*due)).order_by(w.id))).all())

    async def user(self, user_id: int) -> UserRow:
        """A user's row."""
        async with self.db() as s:
            return await s.get_one(UserRow, user_id)

    async def add(self, row: WorkspaceRow) -> None:
        """Record a new workspace (its `owner` loaded); WorkspaceExists when its owner has one of that name."""
        async with self.db() as s:
            s.add(row)
            try:
                await s.flush()  # a name taken fails here, before anyone is told of it
                await self._notify(s, row.uid)
                await s.commit()
            except IntegrityError as exc:
                raise WorkspaceExists(f"you already have a workspace named '{row.name}'") from exc
            await s.refresh(row, attribute_names=["owner"])

    async def write(self, row: WorkspaceRow, values: dict[str, Any]) -> None:
        """Write columns of a workspace (and the row object), telling the other replicas."""
        async with self.change(row.uid) as s:
            await s.execute(update(WorkspaceRow).where(WorkspaceRow.id == row.id).values(**values))
        for field, value in values.items():
            setattr(row, field, value)

    async def remove(self, row: WorkspaceRow) -> None:
        """Delete a workspace's row (its shares and ports go with it)."""
        async with self.change(row.uid) as s:
            await s.delete(await s.get_one(WorkspaceRow, row.id))

    async def shares(self, row: WorkspaceRow) -> list[tuple[str, datetime]]:
        """Who the workspace is shared with, and since when."""
        return await self._since(
            UserRow.name, ShareRow, ShareRow.user_id == UserRow.id, ShareRow.workspace_id == row.id
        )

    async def all_shares(self) -> list[tuple[str, str]]:
        """Every share, as (workspace uid, user name): users shared with, and the members of groups shared with."""
        async with self.db() as s:
            found = await s.execute(
                select(WorkspaceRow.uid, UserRow.name)
                .join(ShareRow, ShareRow.workspace_id == WorkspaceRow.id)
                .join(UserRow, UserRow.id == ShareRow.user_id)
            )
            members = await s.execute(_group_members(select(WorkspaceRow.uid, UserRow.name)))
            return [(uid, user) for uid, user in [*found.all(), *members.all()]]

    async def shared_names(self, row: WorkspaceRow) -> set[str]:
        """Everyone one workspace is shared with: its users and its groups' members now."""
        members = await self._scalars(_group_members(select(UserRow.name)).where(WorkspaceRow.id == row.id))
        return {name for name, _ in await self.shares(row)} | set(members)

    async def group_shares(self, row: WorkspaceRow) -> list[tuple[str, datetime]]:
        """The groups the workspace is shared with, and since when."""
        on = GroupShareRow.group_id == GroupRow.id
        return await self._since(GroupRow.name, GroupShareRow, on, GroupShareRow.workspace_id == row.id)

    async def _since(self, name: Any, table: Any, on: Any, where: Any) -> list[tuple[str, datetime]]:
        """(name, created_at) of a share table's rows, by name."""
        async with self.db() as s:
            found = await s.execute(select(name, table.created_at).join(table, on).where(where).order_by(name))
            return [(n, c) for n, c in found.all()]

    async def shared_with_group(self, name: str) -> list[str]:
        """The uids of the workspaces shared with group `name`."""
        return await self._scalars(
            select(WorkspaceRow.uid)
            .join(GroupShareRow, GroupShareRow.workspace_id == WorkspaceRow.id)
            .join(GroupRow, GroupRow.id == GroupShareRow.group_id)
            .where(GroupRow.name == name)
        )

    async def add_group_share(self, row: WorkspaceRow, name: str) -> None:
        """Share with a group; NotFound for no such group, Conflict when it is shared with it already."""
        try:
            async with self.change(row.uid) as s:
                group = await s.scalar(select(GroupRow).where(GroupRow.name == name))
                if group is None:
                    raise NotFound(f"no group '{name}'", code="group_not_found")
                s.add(GroupShareRow(workspace_id=row.id, group_id=group.id))
                await s.flush()
        except IntegrityError as exc:
            raise Conflict(f"'{row.name}' is already shared with group {name}", code="already_shared") from exc

    async def remove_group_share(self, row: WorkspaceRow, name: str) -> bool:
        """Stop sharing with a group; whether it was shared with it."""
        async with self.change(row.uid) as s:
            group_id = select(GroupRow.id).where(GroupRow.name == name).scalar_subquery()
            result = await s.execute(
                delete(GroupShareRow).where(GroupShareRow.workspace_id == row.id, GroupShareRow.group_id == group_id)
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def _scalars(self, query: Any) -> list[Any]:
        async with self.db() as s:
            return list((await s.scalars(query)).all())

    async def add_share(self, row: WorkspaceRow, user: UserRow) -> None:
        """Record a share; Conflict when it exists."""
        try:
            async with self.change(row.uid) as s:
                s.add(ShareRow(workspace_id=row.id, user_id=user.id))
                await s.flush()  # a share that exists fails here, before anyone is told of it
        except IntegrityError as exc:
            raise Conflict(f"'{row.name}' is already shared with {user.name}", code="already_shared") from exc

    async def remove_share(self, row: WorkspaceRow, user: UserRow) -> bool:
        """Remove a share; whether there was one."""
        async with self.change(row.uid) as s:
            result = await s.execute(
                delete(ShareRow).where(ShareRow.workspace_id == row.id, ShareRow.user_id == user.id)
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def _group_members(query: Any) -> Any:
    """`query` over the members of the groups each workspace is shared with (WorkspaceRow, UserRow joined)."""
    return (
        query.select_from(WorkspaceRow)
        .join(GroupShareRow, GroupShareRow.workspace_id == WorkspaceRow.id)
        .join(MemberRow, MemberRow.group_id == GroupShareRow.group_id)
        .join(UserRow, UserRow.id == MemberRow.user_id)
    )
