"""Turning a request's credentials (session cookie or bearer token) into a user.

The gateway calls resolve() on every proxied request, so answers are cached in memory for a few
seconds; logout and token revocation drop the cached entry at once.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devyard.auth.passwords import verify_password_async
from devyard.auth.secrets import TOKEN_PREFIX, digest, new_secret
from devyard.auth.throttle import LoginThrottle
from devyard.errors import Unauthorized
from devyard.store.tables import SessionRow, TokenRow, UserRow, utcnow

SESSION_COOKIE = "devyard_session"
_CACHE_TTL_S = 5.0


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request is from, and how it proved it."""

    user_id: int
    name: str
    is_admin: bool
    via: str  # "session" or "token"


class Authenticator:
    """Logs users in and out and resolves credentials, with a short in-memory cache."""

    def __init__(self, db: async_sessionmaker[AsyncSession], throttle: LoginThrottle, session_ttl_s: int) -> None:
        self.db = db
        self.throttle = throttle
        self.session_ttl = timedelta(seconds=session_ttl_s)
        self._cache: dict[str, tuple[float, Identity | None]] = {}

    async def login(self, username: str, password: str, client: str) -> tuple[str, Identity]:
        """Check a password and open a session; returns (cookie value, identity)."""
        user_key, addr_key = f"user:{username}", f"addr:{client}"
        self.throttle.check(user_key, addr_key)
        async with self.db() as s:
            user = await s.scalar(select(UserRow).where(UserRow.name == username))
        if not await verify_password_async(user.password_hash if user else None, password) or user is None:
            self.throttle.failed(user_key, addr_key)
            raise Unauthorized("wrong user name or password", code="invalid_credentials")
        self.throttle.succeeded(user_key)
        cookie = new_secret()
        async with self.db() as s:
            s.add(SessionRow(id_hash=digest(cookie), user_id=user.id, expires_at=utcnow() + self.session_ttl))
            await s.commit()
        return cookie, Identity(user.id, user.name, user.is_admin, "session")

    async def logout(self, cookie: str) -> None:
        """End the session behind `cookie`."""
        key = digest(cookie)
        self._cache.pop("s:" + key, None)
        async with self.db() as s:
            await s.execute(delete(SessionRow).where(SessionRow.id_hash == key))
            await s.commit()

    async def create_token(self, user_id: int, name: str, expires_at: datetime | None) -> str:
        """Issue an API token for a user; the token is returned once and stored only as a digest."""
        token = new_secret(TOKEN_PREFIX)
        async with self.db() as s:
            s.add(TokenRow(user_id=user_id, name=name, token_hash=digest(token), expires_at=expires_at))
            await s.commit()
        return token

    async def resolve(self, cookie: str | None, bearer: str | None) -> Identity | None:
        """The identity behind a bearer token or session cookie (token first), or None."""
        if bearer:
            return await self._cached("t:" + digest(bearer), self._from_token)
        if cookie:
            return await self._cached("s:" + digest(cookie), self._from_session)
        return None

    async def _cached(self, key: str, load: Callable[[str], Awaitable[Identity | None]]) -> Identity | None:
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit and hit[0] > now:
            return hit[1]
        ident = await load(key[2:])
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (now + _CACHE_TTL_S, ident)
        return ident

    async def _from_session(self, id_hash: str) -> Identity | None:
        async with self.db() as s:
            row = await s.execute(
                select(UserRow.id, UserRow.name, UserRow.is_admin)
                .join(SessionRow, SessionRow.user_id == UserRow.id)
                .where(SessionRow.id_hash == id_hash, SessionRow.expires_at > utcnow())
            )
            found = row.first()
        return Identity(found[0], found[1], found[2], "session") if found else None

    async def _from_token(self, token_hash: str) -> Identity | None:
        now = utcnow()
        async with self.db() as s:
            row = await s.execute(
                select(UserRow.id, UserRow.name, UserRow.is_admin, TokenRow.id)
                .join(TokenRow, TokenRow.user_id == UserRow.id)
                .where(TokenRow.token_hash == token_hash)
                .where((TokenRow.expires_at.is_(None)) | (TokenRow.expires_at > now))
            )
            found = row.first()
            if found:
                await s.execute(update(TokenRow).where(TokenRow.id == found[3]).values(last_used_at=now))
                await s.commit()
        return Identity(found[0], found[1], found[2], "token") if found else None
