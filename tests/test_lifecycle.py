"""Reliability against the real manager and engines: crash restarts and crash loops, idle stop and wake,
quotas, and races between parallel requests."""

from __future__ import annotations

import json
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from websockets.sync.client import connect

from devyard.engine import install
from tests.support import Manager, kill_tree, start_manager, wait_for


@pytest.fixture
def crashy(engine: install.Engine, tmp_path: Path) -> Any:
    m = start_manager(
        tmp_path / "data",
        extra_env={
            "DEVYARD_CRASH_RESTARTS": "2",
            "DEVYARD_CRASH_BACKOFF_S": "0.2",
            "DEVYARD_SUPERVISE_INTERVAL_S": "0.5",
        },
    )
    try:
        yield m
    finally:
        m.stop()


def _engine_pid(m: Manager) -> int:
    pids = m.engine_pids()
    assert len(pids) == 1, pids
    return pids[0]


def test_a_crashed_engine_is_restarted_and_a_crash_loop_fails(crashy: Manager) -> None:
    m = crashy
    with m.api() as api:
        assert api.post("/workspaces", json={"name": "fragile"}).status_code == 201
        m.wait_status("fragile", "running")
        for crash in (1, 2):
            old = _engine_pid(m)
            os.kill(old, signal.SIGKILL)
            # Noticed without anyone opening it, and restarted: a new engine process.
            wait_for(
                lambda: (
                    m.engine_pids()
                    and m.engine_pids() != [old]
                    and api.get("/workspaces/fragile").json()["status"] == "running"
                ),
                30,
                f"the restart after crash {crash}",
            )
            assert "restarting" in m.cli("ws", "logs", "fragile").stdout
            # Why it stopped and started again, on the workspace and (decided by the manager) in the audit log.
            ws = api.get("/workspaces/fragile").json()
            assert ws["last_stop"]["reason"] == "crash" and "exit code" in ws["last_stop"]["detail"]
            assert ws["last_start"]["reason"] == "crash_restart" and ws["last_start"]["by"] is None
        audit = api.get("/audit", params={"action": "workspace.start"}).json()
        assert any(e["actor"] is None and e["detail"]["reason"] == "crash_restart" for e in audit)
        os.kill(_engine_pid(m), signal.SIGKILL)
        ws = m.wait_status("fragile", "failed", timeout=30)
        assert "crashed 3 times" in ws["error"] and "not restarted again" in ws["error"]
        assert ws["last_stop"]["reason"] == "crash" and "3 times in a row" in ws["last_stop"]["detail"]
        assert not m.engine_pids()
    out = m.cli("ws", "ls")
    assert out.returncode == 0 and "failed" in out.stdout
    # A failed workspace starts again when asked.
    with m.api() as api:
        assert api.post("/workspaces/fragile/start").status_code == 202
    m.wait_status("fragile", "running")


def test_idle_workspaces_stop_and_wake_through_the_gateway(engine: install.Engine, tmp_path: Path) -> None:
    m = start_manager(
        tmp_path / "data", extra_env={"DEVYARD_IDLE_TIMEOUT_S": "3", "DEVYARD_SUPERVISE_INTERVAL_S": "0.5"}
    )
    try:
        with m.api() as api:
            assert api.post("/workspaces", json={"name": "sleepy"}).status_code == 201
            assert api.post("/workspaces", json={"name": "awake", "idle_timeout_s": 0}).status_code == 201
            assert api.post("/workspaces", json={"name": "busy"}).status_code == 201
            for name in ("sleepy", "awake", "busy"):
                m.wait_status(name, "running")
            token = m.token()
            with httpx.Client(base_url=m.url, headers={"authorization": f"Bearer {token}"}) as gw:
                # Used through the gateway every second, "busy" stays up while "sleepy" is stopped.
                def sleepy_stopped() -> bool:
                    assert gw.get("/w/admin/busy/healthz").status_code == 200
                    return bool(api.get("/workspaces/sleepy").json()["status"] == "stopped")

                wait_for(sleepy_stopped, 30, "sleepy to be stopped for idleness", interval=1.0)
                assert api.get("/workspaces/busy").json()["status"] == "running"
                assert api.get("/workspaces/awake").json()["status"] == "running"  # its own timeout: never
                assert "idle timeout" in "\n".join(api.get("/workspaces/sleepy/logs").json()["lines"])
                why = api.get("/workspaces/sleepy").json()["last_stop"]
                assert why["reason"] == "idle" and "last activity seen: 20" in why["detail"], why
                # Its owner opening it starts it again, through the starting page.
                page = gw.get("/w/admin/sleepy/", headers={"accept": "text/html"})
                assert page.status_code == 503 and 'id="starting"' in page.text
                woke = m.wait_status("sleepy", "running")
                assert woke["last_start"]["reason"] == "opened" and woke["last_start"]["by"] == "admin"
            # Changing a workspace's own timeout; null goes back to the manager's.
            ws = api.patch("/workspaces/awake", json={"idle_timeout_s": None}).json()
            assert ws["idle_timeout_s"] is None
            m.wait_status("awake", "stopped", timeout=30)
            assert api.patch("/workspaces/awake", json={"idle_timeout_s": -1}).status_code == 422
    finally:
        m.stop()


def test_quotas_refuse_with_a_message_naming_the_limit(engine: install.Engine, tmp_path: Path) -> None:
    m = start_manager(
        tmp_path / "data", extra_env={"DEVYARD_MAX_WORKSPACES_PER_USER": "2", "DEVYARD_MAX_RUNNING_PER_USER": "1"}
    )
    try:
        with m.api() as api:
            assert api.post("/workspaces", json={"name": "one"}).status_code == 201
            assert api.post("/workspaces", json={"name": "two", "start": False}).status_code == 201
            third = api.post("/workspaces", json={"name": "three", "start": False})
            assert third.status_code == 403 and third.json()["error"]["code"] == "quota_exceeded"
            assert (
                "max_workspaces" in third.json()["error"]["message"] and "at most 2" in third.json()["error"]["message"]
            )
            m.wait_status("one", "running")
            m.wait_status("two", "stopped")
            second = api.post("/workspaces/two/start")
            assert second.status_code == 403 and "max_running" in second.json()["error"]["message"]
            # Opening it through the gateway says why instead of a starting page.
            gw = httpx.get(
                m.url + "/w/admin/two/", headers={"authorization": f"Bearer {m.token()}", "accept": "text/html"}
            )
            assert gw.status_code == 403 and "max_running" in gw.text
            info = api.get("/me/quota").json()
            assert info["effective"] == {"max_workspaces": 2, "max_running": 1, "max_disk_mb": None}
            assert info["workspaces"] == 2 and info["running"] == 1
            # An admin raises this user's own limit: the start goes through.
            raised = api.put(
                "/users/admin/quota", json={"max_workspaces": None, "max_running": 2, "max_disk_mb": None}
            ).json()
            assert raised["own"]["max_running"] == 2 and raised["effective"]["max_workspaces"] == 2
            assert api.post("/workspaces/two/start").status_code == 202
            m.wait_status("two", "running")
            # Disk: a limit already used up refuses the next start (set with the CLI this time).
            out = m.cli("user", "quota", "admin", "--max-running", "5", "--max-disk-mb", "0")
            assert out.returncode == 0, out.stderr
            assert api.get("/users/admin/quota").json()["own"] == {
                "max_workspaces": None,
                "max_running": 5,
                "max_disk_mb": 0,
            }
            assert m.cli("user", "quota", "admin", "--max-running", "many").returncode != 0
            assert api.post("/workspaces/two/stop").status_code == 202
            m.wait_status("two", "stopped")
            disk = api.post("/workspaces/two/start")
            assert disk.status_code == 403 and "max_disk_mb" in disk.json()["error"]["message"]
    finally:
        m.stop()


def test_parallel_creates_and_racing_commands(manager: Manager) -> None:
    m = manager
    with m.api() as api:
        with ThreadPoolExecutor(20) as pool:
            codes = list(
                pool.map(
                    lambda i: api.post("/workspaces", json={"name": f"par-{i}", "start": False}).status_code, range(20)
                )
            )
        assert codes == [201] * 20
        with ThreadPoolExecutor(10) as pool:
            same = sorted(
                pool.map(
                    lambda _: api.post("/workspaces", json={"name": "same", "start": False}).status_code, range(10)
                )
            )
        assert same == [201] + [409] * 9
        names = [w["name"] for w in api.get("/workspaces").json()]
        assert names.count("same") == 1 and all(f"par-{i}" in names for i in range(20))

        # start, stop, restart and delete racing on one workspace: it ends deleted, with no engine left.
        assert api.post("/workspaces", json={"name": "racy"}).status_code == 201
        m.wait_status("racy", "running")
        before = set(m.engine_pids())
        calls = [
            ("post", "/workspaces/racy/stop"),
            ("post", "/workspaces/racy/start"),
            ("post", "/workspaces/racy/restart"),
            ("delete", "/workspaces/racy"),
            ("post", "/workspaces/racy/start"),
        ]
        with ThreadPoolExecutor(len(calls)) as pool:
            answers = list(pool.map(lambda c: getattr(api, c[0])(c[1]).status_code, calls))
        assert all(code < 500 for code in answers), answers
        wait_for(lambda: api.get("/workspaces/racy").status_code == 404, 60, "racy to be deleted")
        wait_for(lambda: not m.engine_pids(), 30, "no engine record left")
        for pid in before:
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        for i in range(20):
            assert api.delete(f"/workspaces/par-{i}").status_code == 204
        assert api.delete("/workspaces/same").status_code == 204
    for pid in m.engine_pids():
        kill_tree(pid)


EDITOR_WS = "/w/admin/{name}/stable-x?reconnectionToken=t&reconnection=false&skipWebSocketFrames=false"


def _editor_socket_opens(m: Manager, name: str, token: str) -> bool:
    """The engine's own WebSocket (what the workbench opens) upgrades through the gateway."""
    url = m.url.replace("http://", "ws://") + EDITOR_WS.format(name=name)
    with connect(url, additional_headers={"authorization": f"Bearer {token}"}, open_timeout=30) as conn:
        return bool(conn.protocol.state.name == "OPEN")


def test_kill_9_of_the_manager_adopts_running_engines(engine: install.Engine, tmp_path: Path) -> None:
    m = start_manager(tmp_path / "data")
    again: Manager | None = None
    try:
        with m.api() as api:
            assert api.post("/workspaces", json={"name": "keep"}).status_code == 201
        m.wait_status("keep", "running")
        files = m.data_dir / "workspaces" / "admin" / "keep" / "files"
        (files / "saved.txt").write_text("before the crash")
        token = m.token()
        assert _editor_socket_opens(m, "keep", token)
        pid = _engine_pid(m)
        m.proc.kill()  # kill -9: no shutdown code runs
        m.proc.wait()
        again = start_manager(m.data_dir)
        with httpx.Client(base_url=again.url, headers={"authorization": f"Bearer {token}"}) as c:
            assert c.get("/api/v1/workspaces/keep").json()["status"] == "running"
            r = c.get("/w/admin/keep/")
            assert r.status_code == 302 and r.headers["location"].startswith("./?folder=")
        assert _editor_socket_opens(again, "keep", token)
        assert again.engine_pids() == [pid]  # the same process, adopted, not restarted
        assert (files / "saved.txt").read_text() == "before the crash"
    finally:
        if again is not None:
            again.stop()
        m.stop()


def test_stop_workspaces_on_exit_metrics_and_json_logs(engine: install.Engine, tmp_path: Path) -> None:
    m = start_manager(tmp_path / "data", args=("--stop-workspaces-on-exit", "--log-format", "json"))
    try:
        with m.api() as api:
            assert api.post("/workspaces", json={"name": "counted"}).status_code == 201
            m.wait_status("counted", "running")
            assert httpx.get(m.url + "/w/admin/counted/", headers=api.headers).status_code == 302
            pid = _engine_pid(m)
            metrics = api.get(m.url + "/metrics")
            assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
            text = metrics.text
            for expected in (
                'devyard_workspaces{status="running"} 1.0',
                "devyard_workspace_starts_total 1.0",
                'devyard_gateway_requests_total{code="302"}',
                "devyard_workspace_start_seconds_count 1.0",
                "devyard_gateway_open_websockets 0.0",
                'devyard_engine_memory_bytes{owner="admin",workspace="counted"}',
            ):
                assert expected in text, expected
            assert api.post("/users", json={"name": "viewer", "password": "viewer-password"}).status_code == 201
        assert httpx.get(m.url + "/metrics").status_code == 401
        assert (
            httpx.get(m.url + "/metrics", headers={"authorization": f"Bearer {m.token('viewer')}"}).status_code == 403
        )
    finally:
        m.stop(kill_engines=False)
    # Stopped with the manager, as asked.
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    records = [json.loads(line) for line in m.log.splitlines() if line.startswith("{")]
    assert any(
        r["logger"] == "devyard.workspaces" and r["message"] == "workspace admin/counted: running" for r in records
    )
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
