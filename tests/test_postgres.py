"""The manager on a real PostgreSQL server (tests/pg.py): the store's work end to end, as a cluster deployment uses it."""

from __future__ import annotations

from pathlib import Path

from devyard.engine.install import Engine
from tests.pg import Postgres
from tests.support import start_manager


def test_the_manager_keeps_its_state_in_postgres(pg: Postgres, engine: Engine, tmp_path: Path) -> None:
    url = pg.create_database("manager")
    m = start_manager(tmp_path / "data", {"DEVYARD_DATABASE_URL": url})
    try:
        assert not (tmp_path / "data" / "devyard.db").exists()
        out = m.cli("user", "add", "alice")
        assert out.returncode == 0, out.stderr
        with m.api() as api:
            assert (
                api.post("/workspaces", json={"name": "pgws", "size": "small", "idle_timeout_s": 600}).status_code
                == 201
            )
            assert (
                api.post("/workspaces", json={"name": "pgws"}).json()["error"]["code"] == "workspace_exists"
            )  # the unique constraint
            m.wait_status("pgws", "running")
            assert api.post("/workspaces/pgws/shares", json={"user": "alice"}).status_code == 201
            assert api.post("/workspaces/pgws/shares", json={"user": "alice"}).status_code == 409
            assert api.put("/secrets/TOKEN", json={"value": "v"}).status_code in (200, 201)
        with m.api("alice") as api:
            shared = api.get("/workspaces", params={"shared": 1}).json()
            assert [(w["owner"], w["name"]) for w in shared] == [("admin", "pgws")]
        with m.api() as api:
            assert api.post("/workspaces/pgws/stop").status_code == 202
            m.wait_status("pgws", "stopped")
            stopped = api.get("/workspaces/pgws").json()
            assert stopped["size"] == "small" and stopped["idle_timeout_s"] == 600 and stopped["started_at"]
            actions = {e["action"] for e in api.get("/audit").json()}
            assert {"workspace.create", "workspace.share", "user.create"} <= actions
        # What the database holds is what the manager said.
        assert (
            pg.sql(
                "SELECT status, address IS NULL, busy_replica IS NULL FROM workspaces WHERE name = 'pgws'", "manager"
            )
            == "stopped|t|t"
        )
        assert pg.sql("SELECT count(*) FROM shares", "manager") == "1"
        m.stop()
        m = start_manager(tmp_path / "data", {"DEVYARD_DATABASE_URL": url})  # a restart finds it all again
        with m.api() as api:
            assert [w["name"] for w in api.get("/workspaces").json()] == ["pgws"]
            assert api.delete("/workspaces/pgws").status_code == 204
        assert pg.sql("SELECT count(*) FROM workspaces", "manager") == "0"
    finally:
        m.stop()
