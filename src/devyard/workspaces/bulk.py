"""Workshops: one workspace per user for a list of users, made or torn down in one call.

Each user's outcome stands alone: an unknown or disabled user, or a name they already use, is
reported for that user and the others go ahead. Provisioning then runs per workspace in the
background as usual, each with its own progress.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devyard.auth.identity import Identity
from devyard.auth.users import get_user
from devyard.errors import DevyardError, Invalid
from devyard.models import WorkspaceCreate
from devyard.store.tables import WorkspaceRow
from devyard.workspaces.access import Action
from devyard.workspaces.service import WorkspaceService

PARALLEL = 8  # engines stopping at once during a teardown


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened for one user."""

    user: str
    workspace: WorkspaceRow | None = None
    error: str | None = None


async def create_for(
    service: WorkspaceService, db: async_sessionmaker[AsyncSession], users: list[str], req: WorkspaceCreate
) -> list[Outcome]:
    """Create workspace `req` for each user (in the order given, each once); Invalid at once when `req` cannot be made for anyone."""
    service.provisioner.check(req)
    outcomes = []
    for name in dict.fromkeys(users):
        try:
            user = await get_user(db, name)
            if user.disabled:
                raise Invalid(f"user {name} is disabled", code="user_disabled")
            owner = Identity(user_id=user.id, name=user.name, is_admin=user.is_admin, via="bulk")
            outcomes.append(Outcome(name, workspace=await service.create(owner, req)))
        except DevyardError as exc:
            outcomes.append(Outcome(name, error=exc.message))
    return outcomes


async def delete_for(
    service: WorkspaceService, admin: Identity, users: list[str], name: str, keep_files: bool
) -> list[Outcome]:
    """Delete each user's workspace `name`, several at a time."""
    gate = asyncio.Semaphore(PARALLEL)

    async def one(user: str) -> Outcome:
        async with gate:
            try:
                row = await service.find(admin, name, user, Action.delete)
                await service.delete(row, keep_files)
                return Outcome(user)
            except DevyardError as exc:
                return Outcome(user, error=exc.message)

    return list(await asyncio.gather(*(one(u) for u in dict.fromkeys(users))))
