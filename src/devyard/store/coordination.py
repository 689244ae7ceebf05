"""Manager replicas sharing one database: which one runs the background loops, which are alive, what another changed.

PostgreSQL (a cluster deployment, two replicas or more), on one connection of the replica's own:
- Leadership is a session-level advisory lock (pg_try_advisory_lock). The replica holding it runs
  what must run once: crash restarts, idle stop, scheduled backups, reconciling workspaces after a
  restart. The lock lives and dies with the connection, so a replica that dies, or loses the
  database, loses it, and another takes it within `retry_s`.
- Liveness: each replica holds a second advisory lock, keyed by its own id, for its whole life;
  replica R is alive exactly while that lock is held.
- Changes: a replica that changes a workspace sends NOTIFY in the same transaction (delivered at
  commit); the others, listening on their own connection, reload that workspace into their route
  tables, so any replica's gateway routes to any workspace.

SQLite (one manager on one machine): a file lock beside the database; a second manager on the
same data dir waits to lead, and nobody else changes workspaces.

Written on asyncpg directly rather than SQLAlchemy's pool: the locks and LISTEN belong to one
connection held for the replica's life, which a pool would hand out and take back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from devyard.errors import StoreError

log = logging.getLogger("devyard.replicas")
LEADER_KEY = int.from_bytes(b"devyard", "big")  # one lock per database: the leader's
REPLICA_CLASS = int.from_bytes(b"dy", "big")  # with a replica's key: the two-integer form of advisory locks
CHANNEL = "devyard_workspaces"
RETRY_S = 2.0
OnLeadership = Callable[[bool], Awaitable[None]]
OnChange = Callable[[str], None]


def replica_id() -> str:
    """This manager's name among replicas: its host (a pod's name in a cluster) and process."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _replica_key(replica: str) -> int:
    return int.from_bytes(hashlib.sha256(replica.encode()).digest()[:4], "big", signed=True)


class Coordinator:
    """Leadership, liveness and change notices for one manager (base: alone, always leading)."""

    def __init__(self, replica: str | None = None) -> None:
        self.replica = replica or replica_id()
        self.leader = False
        self._on_leadership: OnLeadership | None = None
        self._on_change: OnChange | None = None
        self._task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        """Join: the first try to lead is made here, so a lone manager leads before it serves."""
        self.leader = True

    def watch(self, on_leadership: OnLeadership, on_change: OnChange) -> None:
        """From now on: tell `on_leadership` when leading begins or ends, `on_change` the uid of each workspace another replica changed."""
        self._on_leadership, self._on_change = on_leadership, on_change
        self._task = asyncio.get_running_loop().create_task(self._run(), name="devyard-replicas")

    async def _run(self) -> None:
        """Keep leadership current (nothing to do alone)."""

    async def _lead(self, leading: bool) -> None:
        if leading != self.leader:
            self.leader = leading
            log.warning(
                "this manager (%s) %s the background work", self.replica, "now runs" if leading else "no longer runs"
            )
            if self._on_leadership is not None:
                await self._on_leadership(leading)

    async def notify(self, session: AsyncSession, uid: str) -> None:
        """Tell the other replicas, when `session` commits, that workspace `uid` changed."""

    async def alive(self, replica: str) -> bool:
        """Whether the replica named `replica` still runs."""
        return replica == self.replica

    async def close(self) -> None:
        """Leave: stop watching and give up leadership."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


class FileCoordinator(Coordinator):
    """SQLite: leadership is a file lock beside the database."""

    def __init__(self, lock_file: Path, replica: str | None = None) -> None:
        super().__init__(replica)
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(lock_file))

    async def connect(self) -> None:
        """Lead at once unless another manager on this data dir does."""
        self.leader = self._try()

    def _try(self) -> bool:
        try:
            self._lock.acquire(timeout=0)
            return True
        except Timeout:
            return False

    async def _run(self) -> None:
        while not self.leader:
            await asyncio.sleep(RETRY_S)
            if self._try():
                await self._lead(True)

    async def close(self) -> None:
        """Leave, letting a waiting manager lead."""
        await super().close()
        if self.leader:
            self._lock.release()
            self.leader = False


class PostgresCoordinator(Coordinator):
    """PostgreSQL: advisory locks and LISTEN/NOTIFY on a connection of this replica's own."""

    def __init__(self, url: str, replica: str | None = None) -> None:
        super().__init__(replica)
        self.dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._conn: Any = None
        self._busy = asyncio.Lock()  # one statement at a time on the connection

    async def connect(self) -> None:
        """Open the connection, hold this replica's liveness lock, listen, and try to lead; StoreError when the database is unreachable."""
        try:
            await self._open()
        except Exception as exc:
            raise StoreError(f"cannot reach the PostgreSQL database to coordinate with other managers: {exc}") from exc

    async def _open(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.dsn, server_settings={"application_name": f"devyard {self.replica}"})
        try:
            await conn.execute("SELECT pg_advisory_lock($1, $2)", REPLICA_CLASS, _replica_key(self.replica))
            await conn.add_listener(CHANNEL, self._heard)
            self.leader = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_KEY))
        except BaseException:
            await conn.close()
            raise
        self._conn = conn

    def _heard(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        sender, _, uid = payload.partition(" ")
        if sender != self.replica and uid and self._on_change is not None:
            self._on_change(uid)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(RETRY_S)
            try:
                async with self._busy:
                    if self._conn is None or self._conn.is_closed():
                        self._conn = None
                        await self._open()  # a new session: whatever it held is gone, leadership included
                        leading = self.leader
                        self.leader = False
                    elif self.leader:
                        leading = await self._conn.fetchval("SELECT 1") == 1
                    else:
                        leading = bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_KEY))
                await self._lead(leading)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database went away: whoever can reach it leads now
                log.warning("lost the coordination connection to PostgreSQL (%s); trying again", exc)
                await self._drop()
                await self._lead(False)

    async def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close(timeout=2)
            self._conn = None

    async def notify(self, session: AsyncSession, uid: str) -> None:
        """NOTIFY in `session`'s transaction: the others hear it only if, and when, it commits."""
        await session.execute(
            text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": f"{self.replica} {uid}"}
        )

    async def alive(self, replica: str) -> bool:
        """Whether `replica` holds its liveness lock (taking it, then giving it back, means it does not)."""
        if replica == self.replica:
            return True
        key = _replica_key(replica)
        async with self._busy:
            if self._conn is None:
                return True  # cannot tell: assume alive, never take over another's work blindly
            if not await self._conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", REPLICA_CLASS, key):
                return True
            await self._conn.execute("SELECT pg_advisory_unlock($1, $2)", REPLICA_CLASS, key)
            return False

    async def close(self) -> None:
        """Leave: closing the connection gives up both locks."""
        await super().close()
        async with self._busy:
            await self._drop()
        self.leader = False


def for_database(url: str, lock_file: Path) -> Coordinator:
    """The coordinator that fits the database at `url`."""
    return PostgresCoordinator(url) if make_url(url).get_backend_name() == "postgresql" else FileCoordinator(lock_file)
