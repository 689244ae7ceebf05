"""The audit log: logins, account and token changes, workspace actions and shares."""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devyard.models import AuditEntry
from devyard.store.tables import AuditRow

log = logging.getLogger("devyard.audit")


class AuditLog:
    """Writes and reads audit entries. Never give it a secret: entries are shown to admins."""

    def __init__(self, db: async_sessionmaker[AsyncSession]) -> None:
        self.db = db

    async def record(
        self,
        actor: str | None,
        action: str,
        target: str | None = None,
        *,
        success: bool = True,
        address: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Add an entry (and log it)."""
        async with self.db() as s:
            s.add(
                AuditRow(
                    actor=actor,
                    action=action,
                    target=target,
                    success=success,
                    address=address,
                    detail=json.dumps(detail) if detail else None,
                )
            )
            await s.commit()
        log.info("audit: %s %s %s%s", actor or "-", action, target or "", "" if success else " (failed)")

    async def entries(
        self, limit: int = 100, action: str | None = None, actor: str | None = None, success: bool | None = None
    ) -> list[AuditEntry]:
        """The newest entries first, optionally only one action (prefix, e.g. 'workspace.'), actor or outcome."""
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if action:
            query = query.where(AuditRow.action.startswith(action))
        if actor:
            query = query.where(AuditRow.actor == actor)
        if success is not None:
            query = query.where(AuditRow.success == success)
        async with self.db() as s:
            rows = (await s.scalars(query)).all()
        return [
            AuditEntry(
                at=r.at,
                actor=r.actor,
                action=r.action,
                target=r.target,
                success=r.success,
                address=r.address,
                detail=json.loads(r.detail) if r.detail else None,
            )
            for r in rows
        ]
