"""Who may open each forwarded port of a workspace at its own origin: private, shared or public.

Kept in `workspace_ports` (a port without a row is private) and in memory, where the gateway reads
it on every request to a port origin. As Codespaces offers: `private` is the owner alone, `shared`
adds the users the workspace is shared with, `public` is anyone with the link, logged in or not,
and only where an admin permits it (`public_ports`); a port left public after an admin withdrew
that permission counts as shared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devyard.store.tables import PortRow, WorkspaceRow, utcnow
from devyard.workspaces.access import Route

Visibility = Literal["private", "shared", "public"]
VISIBILITIES: tuple[Visibility, ...] = ("private", "shared", "public")
PRIVATE: Visibility = "private"


def may_reach(route: Route, visibility: str, user: str | None) -> bool:
    """Whether `user` (None: not logged in) may open a port of `route` that has `visibility`."""
    if visibility == "public":
        return True
    if user is None:
        return False
    return route.may_open(user) if visibility == "shared" else user == route.owner


def _known(stored: str) -> Visibility:
    """A stored visibility, private when it is none devyard knows (a newer replica's, say)."""
    return stored if stored in ("shared", "public") else PRIVATE  # type: ignore[return-value]


class PortTable:
    """Each workspace's port visibilities, from memory; changes are written through to the database."""

    def __init__(self, db: async_sessionmaker[AsyncSession], public_allowed: Callable[[], bool]) -> None:
        self.db = db
        self.public_allowed = public_allowed  # asked each time: a reload may withdraw the permission
        self._table: dict[str, dict[int, Visibility]] = {}

    def of(self, uid: str, port: int) -> Visibility:
        """The visibility in force for one port (public counts as shared where public ports are not allowed)."""
        found = self._table.get(uid, {}).get(port, PRIVATE)
        return "shared" if found == "public" and not self.public_allowed() else found

    def chosen(self, uid: str) -> dict[int, Visibility]:
        """The ports whose owner chose a visibility, with the one in force."""
        return {port: self.of(uid, port) for port in self._table.get(uid, {})}

    async def load_all(self) -> None:
        """Read every workspace's choices (a manager starts, or takes over)."""
        async with self.db() as s:
            rows = (
                await s.execute(
                    select(WorkspaceRow.uid, PortRow.port, PortRow.visibility).join(
                        PortRow, PortRow.workspace_id == WorkspaceRow.id
                    )
                )
            ).all()
        table: dict[str, dict[int, Visibility]] = {}
        for uid, port, visibility in rows:
            table.setdefault(uid, {})[port] = _known(visibility)
        self._table = table

    async def reload(self, row: WorkspaceRow) -> None:
        """Read one workspace's choices again (another replica changed them)."""
        async with self.db() as s:
            rows = (
                await s.execute(select(PortRow.port, PortRow.visibility).where(PortRow.workspace_id == row.id))
            ).all()
        self._table[row.uid] = {port: _known(visibility) for port, visibility in rows}

    async def write(self, s: AsyncSession, row: WorkspaceRow, port: int, visibility: Visibility) -> None:
        """Record a choice in the caller's transaction (private: the row goes); memory follows with remember()."""
        await s.execute(delete(PortRow).where(PortRow.workspace_id == row.id, PortRow.port == port))
        if visibility != PRIVATE:
            s.add(PortRow(workspace_id=row.id, port=port, visibility=visibility, updated_at=utcnow()))

    def remember(self, uid: str, port: int, visibility: Visibility) -> None:
        """Put a committed choice in memory."""
        ports = self._table.setdefault(uid, {})
        if visibility == PRIVATE:
            ports.pop(port, None)
        else:
            ports[port] = visibility

    def forget(self, uid: str) -> None:
        """A workspace is gone."""
        self._table.pop(uid, None)
