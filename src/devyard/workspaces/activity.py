"""Workspace activity: noted in memory on every gateway request and WebSocket message, written in batches.

The gateway calls `touch` on its hot path, so it is a dictionary store and nothing else; the
database gets one `last_activity_at` update per used workspace every `activity_flush_s`, and idle
stop reads `last_seen` from memory.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import or_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devyard.clock import CLOCK
from devyard.loops import Loop
from devyard.store.tables import WorkspaceRow


class Activity(Loop):
    """Last use of each workspace: pending database writes (flushed every `flush_every_s`), and the latest for idle stop."""

    def __init__(self, db: async_sessionmaker[AsyncSession], flush_every_s: float) -> None:
        super().__init__()
        self.db = db
        self.every_s = flush_every_s
        self._pending: dict[str, float] = {}
        self._seen: dict[str, float] = {}  # uid → last use (or start), Unix time

    def touch(self, uid: str, when: float | None = None) -> None:
        """Note that the workspace was used now (or at `when`)."""
        self._pending[uid] = self._seen[uid] = CLOCK.time() if when is None else when

    def seen(self, uid: str, when: float) -> None:
        """Count idle time from `when` (an engine started or was adopted) without a database write."""
        self._seen[uid] = when

    def last_seen(self, uid: str) -> float | None:
        """When the workspace was last used (or started)."""
        return self._seen.get(uid)

    def forget(self, uid: str) -> None:
        """The workspace stopped or is gone."""
        self._pending.pop(uid, None)
        self._seen.pop(uid, None)

    async def flush(self) -> None:
        """Write the noted activity to the database."""
        pending, self._pending = self._pending, {}
        if not pending:
            return
        async with self.db() as s:
            for uid, ts in pending.items():
                at = datetime.fromtimestamp(ts, UTC)
                # Only forward: another replica may have written a later use of the same workspace.
                await s.execute(
                    update(WorkspaceRow)
                    .where(
                        WorkspaceRow.uid == uid,
                        or_(WorkspaceRow.last_activity_at.is_(None), WorkspaceRow.last_activity_at < at),
                    )
                    .values(last_activity_at=at)
                )
            await s.commit()

    async def tick(self) -> None:
        """Flush."""
        await self.flush()

    async def stop(self) -> None:
        """End the loop and write what is pending."""
        await super().stop()
        await self.flush()
