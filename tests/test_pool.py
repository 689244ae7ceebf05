"""The warm pool: engines booted ahead and handed to new workspaces, with real engines and Chromium."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from devyard.backends import cgroups
from devyard.backends.pool import merge_into
from tests.browser import chromium, login, open_terminal, run_in_terminal
from tests.support import ADMIN_PASSWORD, Manager, start_manager, wait_for


def pool_records(m: Manager) -> dict[str, dict[str, object]]:
    """The runtime records of engines waiting in the pool, by slot."""
    found = {}
    for path in (m.data_dir / "run" / "engines").glob("pool-*.json"):
        found[path.stem] = json.loads(path.read_text())
    return found


def wait_pool(m: Manager, ready: int) -> None:
    """Until `ready` engines are booted and waiting (the manager logs each)."""
    wait_for(lambda: m.log.count("warm pool: an engine is ready") >= ready, 120, f"{ready} pool engines ready")


def folder_of(m: Manager, name: str) -> str:
    """The folder the workspace's engine opens (its redirect to ./?folder=)."""
    with m.api() as api:
        r = api.get(m.url + f"/w/admin/{name}/")
    assert r.status_code == 302, r.text
    return r.headers["location"].split("folder=", 1)[1]


@pytest.fixture
def pooled(engine: object, tmp_path: Path) -> Manager:
    """A manager with a warm pool of one engine; each test stops it (with every engine) itself."""
    return start_manager(tmp_path / "data", extra_env={"DEVYARD_POOL__SIZE": "1"})


def test_a_pooled_engine_becomes_the_workspace(pooled: Manager, tmp_path: Path) -> None:
    m = pooled
    try:
        wait_pool(m, 1)
        (slot,) = pool_records(m)
        with m.api() as api:
            r = api.post("/workspaces", json={"name": "pw"})
            assert r.status_code == 201
        m.wait_status("pw", "running", timeout=30)
        root = m.data_dir / "workspaces" / "admin" / "pw"
        # The engine kept the paths it booted with; they lead to the workspace's own folder now.
        assert folder_of(m, "pw") == str(m.data_dir / "pool" / slot / "files")
        assert os.readlink(m.data_dir / "pool" / slot) == str(root) and root.is_dir() and not root.is_symlink()
        assert "taken from the warm pool for admin/pw" in (root / "logs" / "engine.log").read_text()
        assert slot not in pool_records(m)  # its record is the workspace's now
        wait_pool(m, 2)  # and a replacement booted

        with chromium(tmp_path / "profile") as browser:
            page = browser.new_page()
            login(page, m.url, "admin", ADMIN_PASSWORD)
            open_terminal(page, m.url + "/w/admin/pw/")
            run_in_terminal(page, "echo pooled-$((6*7)) > made-in-terminal.txt")
            wait_for(
                lambda: (root / "files" / "made-in-terminal.txt").exists(),
                60,
                "the terminal's file in the workspace folder",
            )
        assert (root / "files" / "made-in-terminal.txt").read_text() == "pooled-42\n"

        # Stopped, the borrowed paths go; the next start is an ordinary engine on the workspace's own paths.
        with m.api() as api:
            assert api.post("/workspaces/pw/stop").status_code == 202
        m.wait_status("pw", "stopped")
        assert not (m.data_dir / "pool" / slot).exists()
        with m.api() as api:
            assert api.post("/workspaces/pw/start").status_code == 202
        m.wait_status("pw", "running")
        assert folder_of(m, "pw") == str(root / "files") and (root / "files" / "made-in-terminal.txt").exists()
    finally:
        m.stop()


def test_what_the_pool_does_not_serve_and_a_manager_restart(pooled: Manager) -> None:
    m, ok = pooled, False
    try:
        wait_pool(m, 1)
        (slot,) = pool_records(m)
        # A size's limits are applied as the engine is handed over: its groups made, its processes moved in.
        with m.api() as api:
            assert api.post("/workspaces", json={"name": "sized", "size": "medium"}).status_code == 201
        m.wait_status("sized", "running")
        assert slot in folder_of(m, "sized")
        record = next(
            json.loads(p.read_text())
            for p in (m.data_dir / "run" / "engines").glob("*.json")
            if '"sized"' in p.read_text()
        )
        assert record["memory_bytes"] == 4096 << 20
        if cgroups.detect().available:
            memory = Path(record["cgroups"][0])
            limit = (
                (memory / "memory.limit_in_bytes")
                if (memory / "memory.limit_in_bytes").exists()
                else memory / "memory.max"
            )
            assert (
                limit.read_text().strip() == str(4096 << 20)
                and str(record["pid"]) in (memory / "cgroup.procs").read_text().split()
            )

        # Secret variables are fixed when an engine boots: a workspace whose owner has some starts its own.
        wait_pool(m, 2)
        (slot,) = pool_records(m)
        with m.api() as api:
            assert api.put("/secrets/POOL_TEST", json={"value": "x"}).status_code == 201
            assert api.post("/workspaces", json={"name": "secretive"}).status_code == 201
            m.wait_status("secretive", "running")
            assert folder_of(m, "secretive") == str(
                m.data_dir / "workspaces" / "admin" / "secretive" / "files"
            ) and slot in pool_records(m)
            assert api.delete("/secrets/POOL_TEST").status_code == 204

        # A manager killed outright: the waiting engine is taken back into the pool, not booted again.
        pid = int(pool_records(m)[slot]["pid"])  # type: ignore[call-overload]
        os.kill(m.proc.pid, signal.SIGKILL)
        m.proc.wait()
        m = start_manager(m.data_dir, extra_env={"DEVYARD_POOL__SIZE": "1"})
        assert int(pool_records(m)[slot]["pid"]) == pid  # type: ignore[call-overload]
        with m.api() as api:
            assert api.post("/workspaces", json={"name": "after"}).status_code == 201
        m.wait_status("after", "running", timeout=30)
        assert slot in folder_of(m, "after")
        with m.api() as api:
            assert api.delete("/workspaces/after").status_code == 204
        wait_for(
            lambda: not (m.data_dir / "workspaces" / "admin" / "after").exists(),
            30,
            "the deleted workspace's folder gone",
        )
        assert not os.path.lexists(m.data_dir / "pool" / slot)
        ok = True
    finally:
        m.stop(kill_engines=not ok)  # on success the waiting engine is left for the next manager
    # A pool of 0: engines left waiting are stopped at the next start instead of kept.
    m = start_manager(m.data_dir, extra_env={"DEVYARD_POOL__SIZE": "0"})
    try:
        assert pool_records(m) == {} and not any(
            p.name.startswith("pool-") and p.is_dir() and not p.is_symlink() for p in (m.data_dir / "pool").iterdir()
        )
    finally:
        m.stop()


def test_merge_into(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "User").mkdir(parents=True)
    (src / "User" / "settings.json").write_text("{}")
    (src / "top.txt").write_text("new")
    (dst / "User").mkdir(parents=True)
    (dst / "User" / "state.db").write_text("kept")
    (dst / "top.txt").write_text("old")
    merge_into(src, dst)
    assert (dst / "User" / "settings.json").read_text() == "{}" and (dst / "User" / "state.db").read_text() == "kept"
    assert (dst / "top.txt").read_text() == "new" and not any(p.is_file() for p in src.rglob("*"))
