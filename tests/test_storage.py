"""Storage faults: a full disk while provisioning or writing the database, and schema upgrades that keep every workspace.

The full-disk tests run a real manager whose data dir is a small tmpfs (mounted here, so they
need root) and fill it with a file of their own; the upgrade tests build a database at each
older schema revision with the project's own migrations, seed it, and start the current manager on it.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, inspect, text
from sqlalchemy.exc import OperationalError

from devyard.auth.passwords import hash_password
from devyard.auth.secrets import TOKEN_PREFIX, digest, new_secret
from devyard.config import load_settings
from devyard.engine import install
from devyard.errors import StorageFull
from devyard.store.db import MIGRATIONS, migrate, sync_url
from tests.pg import Postgres
from tests.support import ADMIN_PASSWORD, DEVYARD, Manager, make_repo, start_manager, wait_for

DISK_FULL_WHILE_PROVISIONING = "no space left on device while provisioning: free some space, then retry provisioning"
MB = 1 << 20


# -- a small disk -------------------------------------------------------------------------------
def mount_tmpfs(where: Path, size_mb: int) -> None:
    """Mount a tmpfs of `size_mb` at `where`; skip the test, saying why, where that cannot be done."""
    if os.geteuid() != 0:
        pytest.skip("a full disk is simulated with a small tmpfs, and mounting one needs root")
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs at {where} here: {(done.stderr or done.stdout).strip()}")


def unmount(where: Path) -> None:
    """Unmount what mount_tmpfs mounted; lazily if something still holds it, and then fail."""
    done = subprocess.run(["umount", str(where)], capture_output=True, text=True)
    if done.returncode != 0:
        subprocess.run(["umount", "-l", str(where)], check=False)
        raise AssertionError(f"{where} was still in use at teardown: {done.stderr.strip()}")


def fill(disk: Path, leave: int, name: str = "filler") -> Path:
    """Write `disk/name` until only `leave` bytes are free there (0: every last page)."""
    filler = disk / name
    with filler.open("wb", buffering=0) as f:
        for size in (MB, 64 * 1024, 4096):  # tmpfs hands out whole pages: 4 KiB is the last step
            try:
                while shutil.disk_usage(disk).free - size >= leave:
                    f.write(bytes(size))  # tmpfs keeps every page written, zeros included
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    return filler


@contextmanager
def connect(db: Path) -> Iterator[sqlite3.Connection]:
    """A connection to `db` that commits and, unlike sqlite3's own `with`, closes (an open file keeps a mount busy)."""
    c = sqlite3.connect(db, timeout=10)
    try:
        with c:
            yield c
    finally:
        c.close()


def integrity(db: Path) -> str:
    """SQLite's verdict on the database file."""
    with connect(db) as c:
        return str(c.execute("PRAGMA integrity_check").fetchone()[0])


def random_repo(path: Path, size: int) -> Path:
    """A bare repository whose one commit holds `size` random (incompressible) bytes."""
    return make_repo(path, {"blob.bin": os.urandom(size), "README.md": "# big\n"})


def zeros_tar_gz(size: int) -> bytes:
    """A tiny .tar.gz that unpacks to `size` bytes."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo("zeros.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(bytes(size)))
    return out.getvalue()


@pytest.fixture(scope="module")
def small(engine: install.Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Manager, Path]]:
    """A manager whose data dir is a 24 MB tmpfs, allowed to clone file:// repositories under the returned folder."""
    base = tmp_path_factory.mktemp("small")
    disk, repos = base / "data", base / "repos"
    repos.mkdir()
    config = base / "devyard.yaml"
    config.write_text(json.dumps({"devyard": {"git_file_roots": [str(repos)]}}))
    mount_tmpfs(disk, 24)
    try:
        m = start_manager(disk, args=("--config", str(config)))  # its log goes next to the mount, not on it
        try:
            yield m, repos
        finally:
            m.stop()
    finally:
        unmount(disk)


def test_full_disk_while_provisioning_fails_clearly_and_can_be_retried(small: tuple[Manager, Path]) -> None:
    m, repos = small
    repo = random_repo(repos / "big.git", 6 * MB)  # a clone needs ~12 MB: the pack and the checked-out file
    keep_files = m.data_dir / "workspaces" / "admin" / "keep" / "files"
    with m.api() as api:
        assert api.post("/users", json={"name": "bob", "password": "bob-password"}).status_code == 201
        assert api.post("/workspaces", json={"name": "keep", "start": False}).status_code == 201
        m.wait_status("keep", "stopped")
        (keep_files / "notes.txt").write_text("mine\n")
        filler = fill(m.data_dir, leave=2 * MB)
        try:
            # An upload that expands past the free space: refused at once, nothing left behind.
            r = api.post(
                "/workspaces/upload",
                data={"name": "unpacked", "start": "false"},
                files={"archive": ("z.tar.gz", zeros_tar_gz(8 * MB))},
            )
            assert r.status_code == 507, r.text
            assert r.json()["error"] == {
                "code": "storage_full",
                "message": StorageFull.during("unpacking the archive", "upload it again").message,
            }
            assert api.get("/workspaces/unpacked").status_code == 404
            assert not list((m.data_dir / "uploads").iterdir())

            # A clone that does not fit: the workspace fails, saying so, and the rest is untouched.
            assert (
                api.post("/workspaces", json={"name": "big", "git_url": f"file://{repo}", "start": False}).status_code
                == 201
            )
            failed = m.wait_status("big", "failed")
            # Needs this change to Provisioner.run (workspaces/provisioning.py); without it the
            # error is git's own last lines ("... No space left on device fatal: fetch-pack: ...").
            assert failed["error"] == DISK_FULL_WHILE_PROVISIONING
            assert not list((m.data_dir / "workspaces" / "admin" / "big" / "files").iterdir())
            assert api.get("/workspaces/keep").json()["status"] == "stopped"
            assert (keep_files / "notes.txt").read_text() == "mine\n"
            assert "bob" in [u["name"] for u in api.get("/users").json()]
            assert integrity(m.data_dir / "devyard.db") == "ok"
        finally:
            filler.unlink()

        # With space again, the same source provisions.
        assert api.post("/workspaces/big/retry-provision").status_code == 202
        ready = m.wait_status("big", "running")
        assert ready["error"] is None
        assert (m.data_dir / "workspaces" / "admin" / "big" / "files" / "README.md").read_text() == "# big\n"
        assert api.post("/workspaces/big/stop").status_code == 202
        m.wait_status("big", "stopped")
    assert integrity(m.data_dir / "devyard.db") == "ok"


def test_full_disk_under_the_database_is_507_and_corrupts_nothing(small: tuple[Manager, Path]) -> None:
    m, _ = small
    db = m.data_dir / "devyard.db"
    with m.api() as api:
        before = sorted(w["name"] for w in api.get("/workspaces").json())

        # Empty the write-ahead log, so the next write must grow a file instead of reusing its pages
        # (the first value is 1 while a reader of the manager's holds the log: try again).
        def truncated() -> bool:
            with connect(db) as c:
                return bool(c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0)

        wait_for(truncated, 10, "an empty write-ahead log")
        filler = fill(m.data_dir, leave=0)
        try:
            for path, body in (
                ("/users", {"name": "carol", "password": "carol-password"}),
                ("/workspaces", {"name": "more", "start": False}),
            ):
                r = api.post(path, json=body)
                assert r.status_code == 507, (path, r.text)
                error = r.json()["error"]
                assert error["code"] == "storage_full" and error["message"].startswith("no space left on device"), error
            assert httpx.get(m.url + "/healthz", timeout=10).status_code == 200  # the manager still answers
            assert integrity(db) == "ok"
        finally:
            filler.unlink()
        assert api.post("/users", json={"name": "carol", "password": "carol-password"}).status_code == 201
        assert {"bob", "carol"} <= {u["name"] for u in api.get("/users").json()}
        assert sorted(w["name"] for w in api.get("/workspaces").json()) == before
        assert api.get("/workspaces/more").status_code == 404
    assert m.proc.poll() is None
    assert integrity(db) == "ok"


def test_full_disk_during_an_upgrade_changes_nothing(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    mount_tmpfs(disk, 8)
    try:
        url = f"sqlite+aiosqlite:///{disk / 'devyard.db'}"
        migrate(url, "0001")
        with connect(disk / "devyard.db") as c:  # rebuilding `users` (0003) copies these: ~2 MB
            c.executemany(
                "INSERT INTO users (name, password_hash, is_admin, created_at) VALUES (?, ?, 0, '2024-01-01 00:00:00')",
                [(f"user{i}", "h" * 255) for i in range(6000)],
            )
            c.execute(
                "INSERT INTO workspaces (uid, owner_id, name, status, extension_groups, created_at) "
                "VALUES ('u1', 1, 'w1', 'stopped', '[]', '2024-01-01 00:00:00')"
            )
        filler = fill(disk, leave=256 * 1024)
        try:
            with pytest.raises(
                StorageFull, match="while upgrading the database: free some space, then start devyard again"
            ):
                migrate(url)
            up = subprocess.run(
                [DEVYARD, "up", "--data-dir", str(disk), "--port", "0", "--no-install-engine"],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert up.returncode == 1 and "no space left on device while upgrading the database" in up.stderr, up.stderr
            assert "Traceback" not in up.stderr
            assert schema_of(sqlite_url(disk / "devyard.db"))["version"] == "0001"  # all or nothing
        finally:
            filler.unlink()
        migrate(url)
        with connect(disk / "devyard.db") as c:
            assert c.execute("SELECT count(*) FROM users").fetchone()[0] == 6000
            assert c.execute("SELECT name FROM workspaces").fetchall() == [("w1",)]
        assert integrity(disk / "devyard.db") == "ok"
    finally:
        unmount(disk)


# -- upgrades ---------------------------------------------------------------------------------
def _scripts() -> ScriptDirectory:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg)


SCRIPTS = _scripts()
HEAD = SCRIPTS.get_current_head()
OLDER = [r.revision for r in reversed(list(SCRIPTS.walk_revisions())) if r.revision != HEAD]
CREATED = "2024-03-01 10:00:00"


def sqlite_url(db: Path) -> str:
    """devyard's URL of an SQLite database file."""
    return f"sqlite+aiosqlite:///{db}"


def schema_of(url: str) -> dict[str, Any]:
    """The revision and the columns of each table, as the database (SQLite or PostgreSQL) has them."""
    engine = create_engine(sync_url(url))
    try:
        found = inspect(engine)
        tables = found.get_table_names()
        with engine.connect() as c:
            version = (
                c.execute(text("SELECT version_num FROM alembic_version")).scalar()
                if "alembic_version" in tables
                else None
            )
        return {"version": version, **{t: [col["name"] for col in found.get_columns(t)] for t in tables}}
    finally:
        engine.dispose()


def insert(c: Connection, table: str, columns: list[str], row: dict[str, Any]) -> int:
    """Insert the values of `row` this revision has columns for; the new row's id (0 for a table without one)."""
    values = {k: v for k, v in row.items() if k in columns}
    returning = " RETURNING id" if "id" in columns else ""
    found = c.execute(
        text(f"INSERT INTO {table} ({', '.join(values)}) VALUES ({', '.join(':' + k for k in values)}){returning}"),
        values,
    )
    return int(found.scalar_one()) if returning else 0


# name → (owner, status, template, groups, error), and the status and error after the upgrade: no engine runs.
SEEDED = {
    "alpha": ("admin", "stopped", None, [], None),
    "beta": ("admin", "running", "empty", ["python"], None),
    "gamma": ("admin", "failed", "Flask app", [], "exit code 1"),
    "delta": ("alice", "provisioning", None, [], None),
    "epsilon": ("alice", "stopping", "empty", [], None),
}
AFTER = {
    "alpha": ("stopped", None),
    "beta": ("stopped", "the engine was not running when the manager started"),
    "gamma": ("failed", "exit code 1"),
    "delta": ("failed", "interrupted while provisioning by a manager restart"),
    "epsilon": ("stopped", None),
}


def seed(data_dir: Path, revision: str, url: str) -> str:
    """A data dir and the database at `url`, at schema `revision`, with users, workspaces, a share, a token and files; alice's token."""
    data_dir.mkdir(parents=True)
    migrate(url, revision)
    columns = schema_of(url)
    assert columns["version"] == revision
    token: str = new_secret(TOKEN_PREFIX)
    passwords = {"admin": ADMIN_PASSWORD, "alice": "alice-password"}
    engine = create_engine(sync_url(url))
    with engine.begin() as c:
        users = {
            name: insert(
                c,
                "users",
                columns["users"],
                {
                    "name": name,
                    "password_hash": hash_password(pw),
                    "is_admin": name == "admin",
                    "created_at": CREATED,
                    "disabled": False,
                },
            )
            for name, pw in passwords.items()
        }
        insert(
            c,
            "api_tokens",
            columns["api_tokens"],
            {"user_id": users["alice"], "name": "old", "token_hash": digest(token), "created_at": CREATED},
        )
        ids = {}
        for n, (name, (owner, status, template, groups, error)) in enumerate(SEEDED.items()):
            ids[name] = insert(
                c,
                "workspaces",
                columns["workspaces"],
                {
                    "uid": f"seeded{n:06d}",
                    "owner_id": users[owner],
                    "name": name,
                    "status": status,
                    "template": template,
                    "extension_groups": json.dumps(groups),
                    "error": error,
                    "created_at": CREATED,
                    "idle_timeout_s": 600,
                    "provisioned_at": None if status == "provisioning" else CREATED,
                },
            )
            folder = data_dir / "workspaces" / owner / name
            (folder / "files" / "src").mkdir(parents=True)
            (folder / "files" / "src" / "main.py").write_text(f"print({name!r})\n")
            (folder / "files" / ".env").write_bytes(os.urandom(64))
            (folder / "home").mkdir()
            (folder / "home" / ".bash_history").write_text("ls\n")
        if "shares" in columns:
            insert(
                c,
                "shares",
                columns["shares"],
                {"workspace_id": ids["alpha"], "user_id": users["alice"], "created_at": CREATED},
            )
    engine.dispose()
    return token


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_upgrade_is_one_transaction(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'devyard.db'}"
    migrate(url, "0001")
    with connect(tmp_path / "devyard.db") as c:  # makes 0003's rebuild of `users` fail, after 0002 ran
        c.execute("CREATE TABLE _alembic_tmp_users (id INTEGER)")
    with pytest.raises(OperationalError, match="_alembic_tmp_users"):
        migrate(url)
    schema = schema_of(url)
    assert schema["version"] == "0001" and "audit" not in schema and "disabled" not in schema["users"]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
@pytest.mark.parametrize("revision", OLDER)
def test_upgrade_keeps_every_workspace(
    engine: install.Engine, tmp_path: Path, revision: str, database: str, request: pytest.FixtureRequest
) -> None:
    data_dir = tmp_path / "data"
    if database == "postgresql":
        pg: Postgres = request.getfixturevalue("pg")
        given = pg.create_database(f"upgrade_{revision}")
        url, env = load_settings(database_url=given).db_url, {"DEVYARD_DATABASE_URL": given}
    else:
        url, env = sqlite_url(data_dir / "devyard.db"), {}
    alice_token = seed(data_dir, revision, url)
    files_before = snapshot(data_dir / "workspaces")
    m = start_manager(data_dir, env)
    try:
        assert schema_of(url)["version"] == HEAD
        with m.api() as api:
            listed = {w["name"]: w for w in api.get("/workspaces", params={"all": 1}).json()}
            assert sorted(listed) == sorted(SEEDED)
            for name, (owner, _, template, groups, _) in SEEDED.items():
                ws = listed[name]
                assert (ws["owner"], ws["template"], ws["extension_groups"]) == (owner, template, groups), ws
                assert (ws["status"], ws["error"]) == AFTER[name], ws
                assert ws["created_at"].startswith("2024-03-01T10:00:00"), ws
            assert {u["name"] for u in api.get("/users").json()} == {"admin", "alice"}
            if revision >= "0002":
                assert [s["user"] for s in api.get("/workspaces/alpha/shares").json()] == ["alice"]
        with m.api(alice_token) as api:  # her token and password from before the upgrade still work
            assert sorted(w["name"] for w in api.get("/workspaces").json()) == ["delta", "epsilon"]
        with m.api(None) as api:
            assert api.post("/auth/login", json={"username": "alice", "password": "alice-password"}).status_code == 200
        assert snapshot(data_dir / "workspaces") == files_before
        if revision == OLDER[0]:  # an upgraded workspace is a working one
            with m.api() as api:
                assert api.post("/workspaces/alpha/start").status_code == 202
            m.wait_status("alpha", "running")
            assert (
                data_dir / "workspaces" / "admin" / "alpha" / "files" / "src" / "main.py"
            ).read_text() == "print('alpha')\n"
    finally:
        m.stop()
    if database == "sqlite":
        assert integrity(data_dir / "devyard.db") == "ok"
