"""Carrying a dashboard login to one workspace's origin: a one-time code, then a cookie for that origin alone.

The dashboard's session cookie is host-only and never reaches a workspace host. A browser that
arrives at a workspace origin without that origin's own cookie is sent to the dashboard, which
checks its session and access and sends it back with a code: random, kept only as a SHA-256 in the
database (so any replica can redeem it), valid for CODE_TTL, for one workspace (and port), once.
The workspace origin trades it for `devyard_ws`, a host-only cookie naming the workspace, the port
and the dashboard session it came from, under the manager's HMAC. Every request re-checks that
session, so logging out, a password change or disabling the user ends the cookie's use at once,
and the access rules (owner, share, port visibility) are checked on every request too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devyard.auth.secrets import digest, new_secret
from devyard.store.tables import HandoffRow, utcnow

WORKSPACE_COOKIE = "devyard_ws"
AUTH_PATH = "/_devyard/auth"  # on a workspace origin: where the code is traded for the cookie
CODE_TTL = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Grant:
    """What a workspace origin's cookie (or a redeemed code) stands for."""

    uid: str
    port: int | None
    session_hash: str


class Handoff:
    """Issues and redeems one-time codes, and signs and reads workspace-origin cookies."""

    def __init__(self, db: async_sessionmaker[AsyncSession], key: bytes) -> None:
        self.db = db
        # Its own key, derived: a workspace cookie can never be taken for a session cookie or the reverse.
        self._key = hmac.new(key, b"devyard workspace origin cookie", hashlib.sha256).digest()
        # Cookie values already verified: every request of a workspace's origin carries one (no HMAC per keystroke).
        self._verified: dict[str, Grant] = {}

    async def issue(self, grant: Grant) -> str:
        """A new code for `grant` (expired codes are swept at the same time)."""
        code = new_secret()
        now = utcnow()
        async with self.db() as s:
            await s.execute(delete(HandoffRow).where(HandoffRow.expires_at < now))
            s.add(
                HandoffRow(
                    code_hash=digest(code),
                    workspace_uid=grant.uid,
                    port=grant.port,
                    session_hash=grant.session_hash,
                    expires_at=now + CODE_TTL,
                )
            )
            await s.commit()
        return code

    async def redeem(self, code: str) -> Grant | None:
        """The grant behind a code, which is used up by this call; None when unknown, expired or already used."""
        key = digest(code)
        async with self.db() as s:
            row = await s.scalar(select(HandoffRow).where(HandoffRow.code_hash == key))
            if row is None:
                return None
            gone = await s.execute(delete(HandoffRow).where(HandoffRow.code_hash == key))
            await s.commit()
        # Two redeemers race: only the one whose delete removed the row gets the grant.
        if getattr(gone, "rowcount", 0) != 1 or row.expires_at <= utcnow():
            return None
        return Grant(row.workspace_uid, row.port, row.session_hash)

    def cookie(self, grant: Grant) -> str:
        """The signed value of a workspace origin's cookie."""
        body = f"{grant.uid}.{grant.port or 0}.{grant.session_hash}"
        return f"{body}.{self._mac(body)}"

    def read_cookie(self, value: str | None) -> Grant | None:
        """The grant a cookie value stands for, when it was signed here; else None."""
        if not value:
            return None
        known = self._verified.get(value)
        if known is not None:
            return known
        body, _, mac = value.rpartition(".")
        if not body or not hmac.compare_digest(self._mac(body), mac):
            return None
        uid, port, session_hash = (body.split(".") + ["", "", ""])[:3]
        if not port.isdigit():
            return None
        if len(self._verified) > 10_000:
            self._verified.clear()
        grant = self._verified[value] = Grant(uid, int(port) or None, session_hash)
        return grant

    def _mac(self, body: str) -> str:
        return (
            base64.urlsafe_b64encode(hmac.new(self._key, body.encode(), hashlib.sha256).digest()).decode().rstrip("=")
        )
