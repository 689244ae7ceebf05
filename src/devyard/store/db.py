"""Opening the database: engine, sessions, SQLite pragmas, and migrating to the newest schema.

On SQLite a migration runs as one transaction with foreign keys off: Alembic's batch mode rebuilds
a table by copy, DROP and rename, and with foreign keys on that DROP would cascade to every row
pointing at the table (rebuilding `users` deleted every workspace, token and session). Checking
the references before commit, as SQLite's ALTER TABLE guide does, keeps the result consistent; an
upgrade that fails (a full disk) rolls back whole, never leaving a half-migrated schema.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from devyard.errors import DevyardError, StorageFull, StoreError, is_storage_full

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK = int.from_bytes(b"dy-schema", "big") & ((1 << 63) - 1)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the CLI read while the manager writes; busy_timeout rides out short write locks.
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _migration_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver opens transactions itself only before INSERT/UPDATE/DELETE, so DDL would run
    # outside one: leave them to us (_begin), so that the whole upgrade commits or rolls back.
    dbapi_connection.isolation_level = None
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA foreign_keys=OFF")  # a no-op inside a transaction: set before BEGIN
    cur.close()


def _begin(conn: Connection) -> None:
    # IMMEDIATE: take the write lock now, so two processes starting at once migrate one after the other.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _broken_references(conn: Connection) -> set[tuple[Any, ...]]:
    return {tuple(r) for r in conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()}


def sync_url(url: str) -> str:
    """The synchronous driver's URL for an async one (Alembic runs synchronously)."""
    return url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")


def head_revision() -> str:
    """The newest schema revision this devyard knows (its migrations are named <revision>_<what>.py)."""
    return max(p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("[0-9]*_*.py"))


def current_revision(url: str) -> str | None:
    """The schema revision of the database at `url`, or None when it has none (new, or unreadable)."""
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:
        return None
    finally:
        engine.dispose()


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to the newest schema (or to `revision`), in one transaction.

    StorageFull when the disk fills up, StoreError when the upgrade would break a reference;
    the database is unchanged after either.
    """
    if revision == "head" and current_revision(url) == head_revision():
        return
    # Alembic (10 MB resident) is loaded only when there is something to upgrade.
    from alembic import command
    from alembic.config import Config

    logging.getLogger("alembic").setLevel(logging.WARNING)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    engine = create_engine(sync_url(url))
    sqlite = engine.dialect.name == "sqlite"
    if sqlite:
        event.listen(engine, "connect", _migration_pragmas)
        event.listen(engine, "begin", _begin)
    try:
        with engine.begin() as conn:
            if not sqlite:  # replicas starting together: one migrates, the others wait and find nothing left to do
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            before = _broken_references(conn) if sqlite else set()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            broken = _broken_references(conn) - before if sqlite else set()
            if broken:  # raising rolls the whole upgrade back
                tables = ", ".join(sorted({str(r[0]) for r in broken}))
                raise StoreError(
                    f"upgrading the database would leave rows of {tables} pointing at nothing; nothing was changed"
                )
    except OperationalError as exc:
        if is_storage_full(exc):
            raise StorageFull.during("upgrading the database", "start devyard again") from exc
        raise
    finally:
        engine.dispose()


def migrate_apart(url: str) -> None:
    """migrate(), in a child process when there is anything to upgrade; the same errors, raised here.

    Alembic's modules stay resident once imported (about 10 MB the manager would carry for weeks
    for a few hundred milliseconds of work at start), so the long-running process never loads them.
    """
    if current_revision(url) == head_revision():
        return
    child = subprocess.run([sys.executable, "-m", "devyard.store.db", url], capture_output=True, text=True)
    if child.returncode == 0:
        return
    try:
        said = json.loads(child.stdout.strip().splitlines()[-1])
        kind = {"StorageFull": StorageFull, "StoreError": StoreError}.get(said["type"], DevyardError)
    except (ValueError, IndexError, KeyError, TypeError):
        raise StoreError(
            "upgrading the database failed: " + (child.stderr.strip().splitlines() or ["no reason given"])[-1]
        ) from None
    raise kind(said["message"], code=said["code"])


def open_engine(url: str) -> AsyncEngine:
    """An async engine for `url`, with SQLite pragmas applied to every connection."""
    # A pooled PostgreSQL connection may have been closed by the server or a proxy meanwhile: checked before use.
    engine = create_async_engine(url, pool_pre_ping=not url.startswith("sqlite"))
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Session factory whose objects stay readable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


if __name__ == "__main__":  # migrate_apart's child: python -m devyard.store.db URL
    try:
        migrate(sys.argv[1])
    except DevyardError as exc:
        print(json.dumps({"type": type(exc).__name__, "message": exc.message, "code": exc.code}))
        sys.exit(1)
