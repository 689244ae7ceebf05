"""User accounts: create, list, find, and the first admin."""

from __future__ import annotations

import secrets

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devyard.auth.passwords import hash_password
from devyard.errors import Conflict, UserExists, UserNotFound
from devyard.store.tables import UserRow

ADMIN_NAME = "admin"


async def create_user(
    db: async_sessionmaker[AsyncSession], name: str, password: str, is_admin: bool = False
) -> UserRow:
    """Add a user; UserExists if the name is taken."""
    row = UserRow(name=name, password_hash=hash_password(password), is_admin=is_admin)
    async with db() as s:
        s.add(row)
        try:
            await s.commit()
        except IntegrityError as exc:
            raise UserExists(f"user '{name}' already exists") from exc
    return row


async def list_users(db: async_sessionmaker[AsyncSession]) -> list[UserRow]:
    """Every user, by name."""
    async with db() as s:
        return list((await s.scalars(select(UserRow).order_by(UserRow.name))).all())


async def get_user(db: async_sessionmaker[AsyncSession], name: str) -> UserRow:
    """The user called `name`; UserNotFound otherwise."""
    async with db() as s:
        row = await s.scalar(select(UserRow).where(UserRow.name == name))
    if row is None:
        raise UserNotFound(f"no user '{name}'")
    return row


async def ensure_admin(db: async_sessionmaker[AsyncSession], password: str | None) -> str | None:
    """Create `admin` when there are no users; return the password when it was generated here."""
    async with db() as s:
        if await s.scalar(select(func.count()).select_from(UserRow)):
            return None
    generated = password is None
    pw = password or secrets.token_urlsafe(12)
    await create_user(db, ADMIN_NAME, pw, is_admin=True)
    return pw if generated else None


async def update_user(
    db: async_sessionmaker[AsyncSession],
    name: str,
    *,
    disabled: bool | None = None,
    is_admin: bool | None = None,
    password: str | None = None,
) -> UserRow:
    """Change a user; Conflict when it would leave no enabled admin."""
    user = await get_user(db, name)
    values: dict[str, object] = {}
    if disabled is not None:
        values["disabled"] = disabled
    if is_admin is not None:
        values["is_admin"] = is_admin
    if password is not None:
        values["password_hash"] = hash_password(password)
    if user.is_admin and (disabled or is_admin is False):
        async with db() as s:
            admins = await s.scalar(
                select(func.count()).select_from(UserRow).where(UserRow.is_admin.is_(True), UserRow.disabled.is_(False))
            )
        if (admins or 0) <= 1:
            raise Conflict(f"'{name}' is the last enabled admin; make another admin first", code="last_admin")
    if values:
        async with db() as s:
            await s.execute(update(UserRow).where(UserRow.id == user.id).values(**values))
            await s.commit()
    return await get_user(db, name)


async def set_timezone(db: async_sessionmaker[AsyncSession], name: str, timezone: str | None) -> UserRow:
    """Set the time zone a user's schedules are read in (None: the manager's default)."""
    async with db() as s:
        await s.execute(update(UserRow).where(UserRow.name == name).values(timezone=timezone))
        await s.commit()
    return await get_user(db, name)


async def set_quota(
    db: async_sessionmaker[AsyncSession],
    name: str,
    max_workspaces: int | None,
    max_running: int | None,
    max_disk_mb: int | None,
) -> UserRow:
    """Set a user's own limits (None: the manager's default applies)."""
    user = await get_user(db, name)
    async with db() as s:
        await s.execute(
            update(UserRow)
            .where(UserRow.id == user.id)
            .values(max_workspaces=max_workspaces, max_running=max_running, max_disk_mb=max_disk_mb)
        )
        await s.commit()
    return await get_user(db, name)
