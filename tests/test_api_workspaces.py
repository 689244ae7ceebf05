"""REST API for workspaces, against a real manager and real engines."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from tests.support import Manager


def ws_root(manager: Manager, name: str, owner: str = "admin") -> Path:
    return manager.data_dir / "workspaces" / owner / name


def test_create_runs_engine_and_lists(manager: Manager) -> None:
    with manager.api() as api:
        r = api.post("/workspaces", json={"name": "alpha"})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["name"] == "alpha" and body["owner"] == "admin" and body["url"] == "/w/admin/alpha/"
        assert body["status"] in ("provisioning", "starting", "running", "stopped")
        assert set(body) == {
            "name",
            "owner",
            "status",
            "url",
            "template",
            "extension_groups",
            "created_at",
            "started_at",
            "last_activity_at",
            "error",
            "progress",
            "idle_timeout_s",
            "size",
            "reason",
            "devcontainer",
            "last_start",
            "last_stop",
            "stops_due",
            "schedule",
            "dormant_at",
            "delete_at",
            "ssh_login",
        }
        ws = manager.wait_status("alpha", "running")
        assert ws["started_at"] and ws["error"] is None
        assert ws["last_start"]["reason"] == "created" and ws["last_stop"] is None
        assert [w["name"] for w in api.get("/workspaces").json()].count("alpha") == 1
        assert api.get("/workspaces/alpha").json()["status"] == "running"
        root = ws_root(manager, "alpha")
        assert (root / "files").is_dir() and (root / "data" / "User" / "settings.json").is_file()


def test_errors_have_json_bodies(manager: Manager) -> None:
    with manager.api() as api:
        api.post("/workspaces", json={"name": "dup", "start": False})
        r = api.post("/workspaces", json={"name": "dup"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "workspace_exists"
        for bad in ["Bad", "-x", "a" * 40, "a_b", "", "x/y"]:
            r = api.post("/workspaces", json={"name": bad})
            assert r.status_code == 422, bad
            assert "name" in r.json()["error"]["message"]
        r = api.post("/workspaces", json={"nme": "typo"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid"
        r = api.post("/workspaces", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422
        for method, path in [
            ("GET", "/workspaces/nope"),
            ("DELETE", "/workspaces/nope"),
            ("POST", "/workspaces/nope/start"),
            ("POST", "/workspaces/nope/stop"),
            ("POST", "/workspaces/nope/restart"),
            ("GET", "/workspaces/nope/logs"),
            ("GET", "/workspaces/nope/stats"),
        ]:
            r = api.request(method, path)
            assert r.status_code == 404, (method, path)
            assert r.json() == {"error": {"code": "workspace_not_found", "message": "no workspace 'nope'"}}
        r = api.post("/workspaces", json={"name": "grp", "extension_groups": ["nosuch"]})
        assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_extension_group"
        assert api.get("/no/such/route").json()["error"]["code"] == "not_found"
        r = api.get("/workspaces/dup/logs", params={"lines": 0})
        assert r.status_code == 422


def test_stop_start_restart_keep_files(manager: Manager) -> None:
    with manager.api() as api:
        api.post("/workspaces", json={"name": "beta"})
        manager.wait_status("beta", "running")
        pid_before = set(manager.engine_pids())
        (ws_root(manager, "beta") / "files" / "keep.txt").write_text("still here")

        r = api.post("/workspaces/beta/stop")
        assert r.status_code == 202 and r.json()["status"] in ("stopping", "stopped")
        manager.wait_status("beta", "stopped")
        gone = pid_before - set(manager.engine_pids())
        assert gone and not any(
            psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in gone
        )

        r = api.post("/workspaces/beta/start")
        assert r.status_code == 202
        manager.wait_status("beta", "running")
        assert (ws_root(manager, "beta") / "files" / "keep.txt").read_text() == "still here"

        started = api.get("/workspaces/beta").json()["started_at"]
        time.sleep(0.01)
        assert api.post("/workspaces/beta/restart").status_code == 202
        ws = manager.wait_status("beta", "running")
        assert ws["started_at"] != started

        stats = api.get("/workspaces/beta/stats").json()
        assert (
            stats["memory_bytes"] > 10_000_000 and stats["uptime_s"] >= 0 and stats["disk_bytes"] >= len("still here")
        )
        lines = api.get("/workspaces/beta/logs", params={"lines": 500}).json()["lines"]
        assert any("HTTP server listening on" in line for line in lines)
        assert any("devyard: starting code-server" in line for line in lines)


def test_logs_stream(manager: Manager) -> None:
    with manager.api() as api:
        api.post("/workspaces", json={"name": "streamer"})
        manager.wait_status("streamer", "running")
        with api.stream("GET", "/workspaces/streamer/logs/stream", params={"lines": 5}) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            first = next(r.iter_lines())
            assert first.startswith("data: ")


@pytest.mark.parametrize("keep", [False, True])
def test_delete_removes_engine_and_folder(manager: Manager, keep: bool) -> None:
    name = f"gone-{int(keep)}"
    with manager.api() as api:
        api.post("/workspaces", json={"name": name})
        manager.wait_status(name, "running")
        root = ws_root(manager, name)
        pids = set(manager.engine_pids())
        r = api.delete(f"/workspaces/{name}", params={"keep_files": "1"} if keep else None)
        assert r.status_code == 204
        assert api.get(f"/workspaces/{name}").status_code == 404
        assert (root / "files").is_dir() is keep
        assert not (root / "data").exists()
        engine = pids - set(manager.engine_pids())
        assert len(engine) == 1
        assert not psutil.pid_exists(engine.pop())
        # The name is free again.
        assert api.post("/workspaces", json={"name": name, "start": False}).status_code == 201


def test_engine_failing_to_start_is_reported(manager: Manager) -> None:
    with manager.api() as api:
        api.post("/workspaces", json={"name": "broken", "start": False})
        manager.wait_status("broken", "stopped")
        # A file where the engine's user-data folder belongs makes the engine exit at once.
        data = ws_root(manager, "broken") / "data"
        import shutil

        shutil.rmtree(data)
        data.write_text("not a folder")
        api.post("/workspaces/broken/start")
        ws = manager.wait_status("broken", "failed")
        assert "engine" in ws["error"] and len(ws["error"]) > 30


def test_users_see_only_their_own(manager: Manager) -> None:
    out = manager.cli(
        "user",
        "add",
        "carol",
        "--password-stdin",
        "--data-dir",
        str(manager.data_dir),
        token=None,
        input="carol-password\n",
    )
    assert out.returncode == 0, out.stderr
    with manager.api("carol") as carol, manager.api() as admin:
        assert carol.post("/workspaces", json={"name": "mine", "start": False}).status_code == 201
        assert admin.get("/workspaces/mine").status_code == 404
        assert all(w["owner"] == "carol" for w in carol.get("/workspaces").json())
        assert carol.get("/workspaces", params={"all": "1"}).status_code == 403
        everyone = admin.get("/workspaces", params={"all": "1"}).json()
        assert any(w["owner"] == "carol" and w["name"] == "mine" for w in everyone)
        # Same name, another owner: allowed.
        assert admin.post("/workspaces", json={"name": "mine", "start": False}).status_code == 201
