"""Turning a request's credentials (session cookie or bearer token) into a user, and managing them.

Session cookies are `<id>.<HMAC of id>`: a cookie that was not issued here is refused without a
database read; the database keeps only the SHA-256 of the id, so a stolen database yields no
usable cookie, and deleting the row ends the session at once (logout, password change, disable).
The gateway calls resolve() on every proxied request, so answers are cached in memory for a few
seconds (`identity_cache_s`); every change that ends credentials clears the cache.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Update, delete, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devyard.audit import AuditLog
from devyard.auth.passwords import verify_password_async
from devyard.auth.secrets import TOKEN_PREFIX, digest, new_secret
from devyard.auth.throttle import LoginThrottle
from devyard.errors import Forbidden, Invalid, NotFound, Unauthorized, is_storage_full
from devyard.store.tables import SessionRow, TokenRow, UserRow, utcnow

SESSION_COOKIE = "devyard_session"
SCOPES = ("read", "write", "admin")
_LAST_SEEN_EVERY = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request is from, how it proved it, and what it may do (scope)."""

    user_id: int
    name: str
    is_admin: bool
    via: str  # "session" or "token"
    scope: str = "write"  # read: GET only; write: all a user may do; admin: admin routes too
    expires_at: datetime | None = None  # a token's own expiry (None: a session, or a token that never expires)
    groups: tuple[str, ...] = ()  # the groups the user is in (auth/groups.py), as of this credential's resolution

    @property
    def acts_as_admin(self) -> bool:
        """An admin whose credentials carry admin rights (a session, or an admin-scoped token)."""
        return self.is_admin and self.scope == "admin"


@dataclass(frozen=True, slots=True)
class Ended:
    """Credentials that just ended: one (`credential`, "s:<digest>" or "t:<digest>"), a user's sessions, or all of a user's."""

    kind: str  # "credential", "sessions" or "user"
    key: str  # the credential key, or the user's id


async def insert_token(
    db: async_sessionmaker[AsyncSession], user_id: int, name: str, scope: str, expires_at: datetime | None
) -> tuple[TokenRow, str]:
    """Store a new token's digest; returns the row and the token (shown once, never stored)."""
    token = new_secret(TOKEN_PREFIX)
    row = TokenRow(user_id=user_id, name=name, token_hash=digest(token), scope=scope, expires_at=expires_at)
    async with db() as s:
        s.add(row)
        await s.commit()
    return row, token


async def delete_sessions(db: async_sessionmaker[AsyncSession], user_id: int) -> None:
    """Remove every session of a user from the database."""
    async with db() as s:
        await s.execute(delete(SessionRow).where(SessionRow.user_id == user_id))
        await s.commit()


def _user_scope(is_admin: bool) -> str:
    return "admin" if is_admin else "write"


class Authenticator:
    """Logs users in and out, issues and resolves credentials, with a short in-memory cache."""

    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        throttle: LoginThrottle,
        audit: AuditLog,
        key: bytes,
        session_ttl_s: int,
        session_idle_s: int,
        cache_s: float,
        group_admin: Callable[[list[str] | None], bool] = lambda groups: False,
    ) -> None:
        self.db = db
        self.throttle = throttle
        self.audit = audit
        self._key = key
        self.session_ttl = timedelta(seconds=session_ttl_s)
        self.session_idle = timedelta(seconds=session_idle_s)
        self.cache_s = cache_s  # how long a resolved credential is remembered (Settings.identity_cache_s)
        self._cache: dict[str, tuple[float, Identity | None]] = {}
        # Told of every credential that ends (Ended), so live connections opened with it close too (devyard/live.py).
        self.listeners: list[Callable[[Ended], Awaitable[None]]] = []
        # Credential as sent -> its cache key: a request with a known cookie or token costs no HMAC or hash.
        self._keys: dict[str, str] = {}
        self.group_admin = group_admin  # whether a user's groups (by name) make them an admin (settings `groups`)

    # -- cookies ------------------------------------------------------------------------
    def _sign(self, session_id: str) -> str:
        mac = hmac.new(self._key, session_id.encode(), hashlib.sha256).digest()
        return f"{session_id}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"

    def _verify(self, cookie: str) -> str | None:
        session_id, _, _sig = cookie.partition(".")
        return session_id if session_id and hmac.compare_digest(self._sign(session_id), cookie) else None

    # -- logging in and out -------------------------------------------------------------
    async def login(self, username: str, password: str, address: str) -> tuple[str, Identity]:
        """Check a password and open a session; returns (cookie value, identity)."""
        try:
            self.throttle.check(username, address)
        except Exception:
            await self.audit.record(username, "login", success=False, address=address, detail={"reason": "throttled"})
            raise
        async with self.db() as s:
            user = await s.scalar(select(UserRow).where(UserRow.name == username))
        if not await verify_password_async(user.password_hash if user else None, password) or user is None:
            self.throttle.failed(username, address)
            await self.audit.record(
                username, "login", success=False, address=address, detail={"reason": "wrong password or user"}
            )
            raise Unauthorized("wrong user name or password", code="invalid_credentials")
        if user.disabled:
            await self.audit.record(username, "login", success=False, address=address, detail={"reason": "disabled"})
            raise Forbidden("this account is disabled", code="account_disabled")
        self.throttle.succeeded(username, address)
        cookie = await self.open_session(user.id)
        await self.audit.record(username, "login", address=address)
        admin = user.is_admin or self.group_admin(user.groups)
        return cookie, Identity(
            user.id, user.name, admin, "session", _user_scope(admin), None, tuple(user.groups or ())
        )

    async def open_session(self, user_id: int) -> str:
        """A new session for a user who has proved who they are; returns the cookie value."""
        session_id = new_secret()
        now = utcnow()
        async with self.db() as s:
            s.add(
                SessionRow(
                    id_hash=digest(session_id), user_id=user_id, expires_at=now + self.session_ttl, last_seen_at=now
                )
            )
            await s.commit()
        return self._sign(session_id)

    async def logout(self, cookie: str) -> None:
        """End the session behind `cookie`."""
        session_id = self._verify(cookie)
        if session_id is None:
            return
        key = digest(session_id)
        self._cache.pop("s:" + key, None)
        async with self.db() as s:
            await s.execute(delete(SessionRow).where(SessionRow.id_hash == key))
            await s.commit()
        await self.tell(Ended("credential", "s:" + key))

    async def end_sessions(self, user_id: int) -> None:
        """End every session of a user (password change, disabling)."""
        await delete_sessions(self.db, user_id)
        self.invalidate()
        await self.tell(Ended("sessions", str(user_id)))

    async def end_user(self, user_id: int) -> None:
        """Everything of a user ends, sessions and what tokens opened (the account was disabled)."""
        await self.end_sessions(user_id)
        await self.tell(Ended("user", str(user_id)))

    async def tell(self, ended: Ended) -> None:
        """Tell the listeners that credentials ended."""
        for listener in self.listeners:
            await listener(ended)

    def invalidate(self) -> None:
        """Forget every cached answer (credentials changed)."""
        self._cache.clear()

    # -- tokens -------------------------------------------------------------------------
    async def create_token(
        self, who: Identity | UserRow, name: str, scope: str, expires_at: datetime | None
    ) -> tuple[TokenRow, str]:
        """Issue an API token; the token is returned once and stored only as a digest."""
        is_admin = who.is_admin
        user_id = who.user_id if isinstance(who, Identity) else who.id
        if scope not in SCOPES:
            raise Invalid(f"scope must be one of {', '.join(SCOPES)}", code="invalid_scope")
        if scope == "admin" and not (is_admin and (not isinstance(who, Identity) or who.acts_as_admin)):
            raise Forbidden("only admins may create admin-scoped tokens", code="admin_required")
        if isinstance(who, Identity) and SCOPES.index(scope) > SCOPES.index(who.scope):
            raise Forbidden(f"a {who.scope}-scoped token cannot create a {scope}-scoped one", code="token_scope")
        # Else a leaked short-lived token could mint itself a permanent successor.
        if (
            isinstance(who, Identity)
            and who.via == "token"
            and who.expires_at is not None
            and (expires_at is None or expires_at > who.expires_at)
        ):
            raise Forbidden(
                f"this token expires at {who.expires_at:%Y-%m-%d %H:%M:%S} UTC and cannot create a token that outlives it: "
                "give a shorter expires_in, or create it from a logged-in session",
                code="token_lifetime",
            )
        return await insert_token(self.db, user_id, name, scope, expires_at)

    async def list_tokens(self, user_id: int) -> list[TokenRow]:
        """A user's tokens, newest first (revoked and expired included)."""
        async with self.db() as s:
            return list(
                (
                    await s.scalars(select(TokenRow).where(TokenRow.user_id == user_id).order_by(TokenRow.id.desc()))
                ).all()
            )

    async def revoke_token(self, user_id: int, token_id: int) -> TokenRow:
        """Revoke one of the user's tokens at once; NotFound for anyone else's."""
        async with self.db() as s:
            row = await s.scalar(select(TokenRow).where(TokenRow.id == token_id, TokenRow.user_id == user_id))
            if row is None:
                raise NotFound(f"no token {token_id}", code="token_not_found")
            row.revoked_at = row.revoked_at or utcnow()
            await s.commit()
        self._cache.pop("t:" + row.token_hash, None)
        await self.tell(Ended("credential", "t:" + row.token_hash))
        return row

    # -- resolving ----------------------------------------------------------------------
    async def resolve(self, cookie: str | None, bearer: str | None) -> Identity | None:
        """The identity behind a bearer token or session cookie (token first), or None."""
        if bearer:
            key = self._keys.get("b" + bearer)
            if key is None:
                key = self._remember("b" + bearer, "t:" + digest(bearer))
            return await self._cached(key, self._from_token)
        if cookie:
            key = self._keys.get("c" + cookie)
            if key is None:
                session_id = self._verify(cookie)
                if not session_id:
                    return None
                key = self._remember("c" + cookie, "s:" + digest(session_id))
            return await self._cached(key, self._from_session)
        return None

    def credential_key(self, cookie: str | None, bearer: str | None) -> str | None:
        """After resolve(): "s:<session digest>" or "t:<token digest>" for the credential, from memory (live connections register under it)."""
        if bearer:
            return self._keys.get("b" + bearer)
        return self._keys.get("c" + cookie) if cookie else None

    def session_hash(self, cookie: str | None) -> str | None:
        """The stored digest of the session behind a session cookie issued here (None for anything else)."""
        session_id = self._verify(cookie) if cookie else None
        return digest(session_id) if session_id else None

    async def resolve_session(self, session_hash: str) -> Identity | None:
        """The identity of a live session, by its digest (a workspace origin's cookie names its session this way)."""
        return await self._cached("s:" + session_hash, self._from_session)

    def _remember(self, credential: str, key: str) -> str:
        if len(self._keys) > 10_000:
            self._keys.clear()
        self._keys[credential] = key
        return key

    async def _cached(self, key: str, load: Callable[[str], Awaitable[Identity | None]]) -> Identity | None:
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit and hit[0] > now:
            return hit[1]
        ident = await load(key[2:])
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (now + self.cache_s, ident)
        return ident

    async def _from_session(self, id_hash: str) -> Identity | None:
        now = utcnow()
        async with self.db() as s:
            row = await s.execute(
                select(UserRow.id, UserRow.name, UserRow.is_admin, SessionRow.last_seen_at, UserRow.groups)
                .join(SessionRow, SessionRow.user_id == UserRow.id)
                .where(SessionRow.id_hash == id_hash, SessionRow.expires_at > now, UserRow.disabled.is_(False))
            )
            found = row.first()
            if found is None:
                return None
            last_seen = found[3] or now
            if last_seen < now - self.session_idle:
                await s.execute(delete(SessionRow).where(SessionRow.id_hash == id_hash))
                await s.commit()
                return None
            if last_seen < now - _LAST_SEEN_EVERY:  # written at most once a minute, off the hot path
                await _note_use(s, update(SessionRow).where(SessionRow.id_hash == id_hash).values(last_seen_at=now))
        admin = found[2] or self.group_admin(found[4])
        return Identity(found[0], found[1], admin, "session", _user_scope(admin), None, tuple(found[4] or ()))

    async def _from_token(self, token_hash: str) -> Identity | None:
        now = utcnow()
        async with self.db() as s:
            row = await s.execute(
                select(
                    UserRow.id,
                    UserRow.name,
                    UserRow.is_admin,
                    TokenRow.id,
                    TokenRow.scope,
                    TokenRow.expires_at,
                    UserRow.groups,
                )
                .join(TokenRow, TokenRow.user_id == UserRow.id)
                .where(TokenRow.token_hash == token_hash, TokenRow.revoked_at.is_(None), UserRow.disabled.is_(False))
                .where((TokenRow.expires_at.is_(None)) | (TokenRow.expires_at > now))
            )
            found = row.first()
            if found:
                await _note_use(s, update(TokenRow).where(TokenRow.id == found[3]).values(last_used_at=now))
        if not found:
            return None
        # A token never carries more than its user has now (an admin may have been demoted, or left a group).
        admin = found[2] or self.group_admin(found[6])
        scope = found[4] if found[4] != "admin" or admin else "write"
        return Identity(found[0], found[1], admin, "token", scope, found[5], tuple(found[6] or ()))


async def _note_use(s: AsyncSession, stmt: Update) -> None:
    """Record when a credential was last used; on a full disk skip it (a nicety must not lock everyone out)."""
    try:
        await s.execute(stmt)
        await s.commit()
    except OperationalError as exc:
        if not is_storage_full(exc):
            raise
        await s.rollback()
