"""Engines outlive the manager and are adopted by the next one."""

from __future__ import annotations

import json

import httpx
import psutil

from tests.support import Manager, start_manager


def test_engines_survive_manager_restart_and_are_adopted(fresh_manager: Manager) -> None:
    m = fresh_manager
    with m.api() as api:
        api.post("/workspaces", json={"name": "lasting"})
        api.post("/workspaces", json={"name": "resting", "start": False})
    m.wait_status("lasting", "running")
    pids = m.engine_pids()
    assert len(pids) == 1
    token = m.token()

    m.stop(kill_engines=False)  # like Ctrl-C on `devyard up`
    engine = psutil.Process(pids[0])
    assert engine.is_running() and engine.status() != psutil.STATUS_ZOMBIE

    again = start_manager(m.data_dir)
    try:
        with httpx.Client(base_url=again.url, headers={"authorization": f"Bearer {token}"}) as c:
            ws = c.get("/api/v1/workspaces/lasting").json()
            assert ws["status"] == "running"
            assert c.get("/w/admin/lasting/").status_code == 302  # proxied to the adopted engine
            assert c.get("/api/v1/workspaces/resting").json()["status"] == "stopped"
            assert again.engine_pids() == pids  # adopted, not restarted
            assert c.post("/api/v1/workspaces/lasting/stop").status_code == 202
        again.wait_status("lasting", "stopped")
        assert not engine.is_running()
    finally:
        again.stop()


def test_engine_dead_while_manager_down(fresh_manager: Manager) -> None:
    m = fresh_manager
    with m.api() as api:
        api.post("/workspaces", json={"name": "ghost"})
    m.wait_status("ghost", "running")
    record = next((m.data_dir / "run" / "engines").glob("*.json"))
    pid = json.loads(record.read_text())["pid"]
    m.stop()  # also stops the engine, as a crash would have while nobody watched
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    again = start_manager(m.data_dir)
    try:
        ws = again.wait_status("ghost", "stopped")
        assert "not running" in (ws["error"] or "")
        assert not record.exists()
    finally:
        again.stop()
