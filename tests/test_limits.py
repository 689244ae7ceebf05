"""Sizes and limits: presets chosen at create and changed while stopped, memory and CPU limits through the
host's cgroups (the kernel's own OOM killer ends a workspace that outgrows its size), disk kept to at start.

Against a real manager and engines; the memory kill is typed into the workbench's terminal in
headless Chromium. Where the host gives no cgroups to the manager, the limit tests are skipped with
the host's reason (the one `devyard doctor` prints).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from devyard.backends import cgroups
from devyard.engine import install
from tests.browser import chromium, login, open_terminal, run_in_terminal
from tests.support import ADMIN_PASSWORD, Manager, start_manager, wait_for

V1_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:36 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
V1_PROC = "4:memory:/sandbox/a1\n1:cpu:/\n0::/\n"
V2_MOUNTINFO = "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
V2_PROC = "0::/system.slice/devyard.service\n"
MB = 1 << 20


def test_the_host_kinds_are_told_apart() -> None:
    v1 = cgroups.detect(V1_MOUNTINFO, V1_PROC)
    # No such folders on a machine without this layout: then the reason says so.
    if v1.available:
        assert v1.version == 1 and v1.memory == Path("/sys/fs/cgroup/memory/sandbox/a1/devyard")
    else:
        assert "v1" in v1.detail or "mounted" in v1.detail
    v2 = cgroups.detect(V2_MOUNTINFO, V2_PROC)
    assert not v2.available or v2.memory == Path("/sys/fs/cgroup/system.slice/devyard.service/devyard")
    none = cgroups.detect("22 1 0:21 / /proc rw - proc proc rw\n", "0::/\n")
    assert not none.available and "no cgroup" in none.detail
    assert cgroups._own_groups(V1_PROC) == {"memory": "/sandbox/a1", "cpu": "/", "": "/"}


@pytest.fixture(scope="module")
def sized(engine: install.Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    """A manager with a tiny preset (the engine cannot even boot in it) and a default size."""
    base = tmp_path_factory.mktemp("sized")
    config = base / "devyard.yaml"
    config.write_text(
        json.dumps(
            {
                "devyard": {
                    "sizes": {
                        "tiny": {"memory_mb": 40, "cpus": 0.5},
                        "small": {"memory_mb": 1024, "cpus": 1, "disk_mb": 1},
                        "medium": {"memory_mb": 1536, "cpus": 1.5, "disk_mb": 1024, "description": "for builds"},
                    },
                    "default_size": "medium",
                }
            }
        )
    )
    with start_manager(base / "data", args=("--config", str(config))) as m:
        yield m


def record_of(m: Manager, name: str) -> dict[str, Any] | None:
    """The runtime record of the workspace's engine (pid, socket, control groups), None when it has none."""
    for path in (m.data_dir / "run" / "engines").glob("*.json"):
        data: dict[str, Any] = json.loads(path.read_text())
        if data.get("name") == name:
            return data
    return None


def test_sizes_are_chosen_and_changed_while_stopped(sized: Manager) -> None:
    with sized.api() as api:
        listed = api.get("/sizes").json()
        assert [(s["name"], s["default"]) for s in listed] == [("tiny", False), ("small", False), ("medium", True)]
        assert listed[2]["description"] == "for builds" and listed[2]["memory_mb"] == 1536
        bad = api.post("/workspaces", json={"name": "nope", "size": "huge"})
        assert (
            bad.status_code == 422
            and bad.json()["error"]["code"] == "unknown_size"
            and "medium" in bad.json()["error"]["message"]
        )
        created = api.post("/workspaces", json={"name": "sz"})
        assert created.status_code == 201 and created.json()["size"] == "medium"  # the default
    sized.wait_status("sz", "running")
    support = cgroups.detect()
    record = record_of(sized, "sz")
    assert record is not None
    if support.available:
        groups = [Path(g) for g in record["cgroups"]]
        limits = "".join(
            (g / f).read_text() for g in groups for f in ("memory.max", "memory.limit_in_bytes") if (g / f).exists()
        )
        assert str(1536 * MB) in limits
        assert str(record["pid"]) in (groups[0] / "cgroup.procs").read_text().split()
    else:
        log = (sized.data_dir / "workspaces" / "admin" / "sz" / "logs" / "engine.log").read_text()
        assert "limits are NOT enforced" in log
    with sized.api() as api:
        busy = api.patch("/workspaces/sz", json={"size": "small"})
        assert busy.status_code == 409 and "stop it" in busy.json()["error"]["message"]
    out = sized.cli("ws", "stop", "sz")
    assert out.returncode == 0, out.stderr
    out = sized.cli("ws", "set", "sz", "--size", "small")
    assert out.returncode == 0 and "size small" in out.stdout, out.stderr
    bad = sized.cli("ws", "set", "sz", "--size", "huge")
    assert bad.returncode == 1 and "unknown size 'huge'" in bad.stderr and "Traceback" not in bad.stderr
    table = sized.cli("ws", "sizes")
    assert "medium (default)" in table.stdout and "1536 MB" in table.stdout
    # small allows 1 MB of disk: a bigger folder is refused at start, naming the limit.
    (sized.data_dir / "workspaces" / "admin" / "sz" / "files" / "big.bin").write_bytes(b"x" * (2 * MB))
    with sized.api() as api:
        refused = api.post("/workspaces/sz/start")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "quota_exceeded"
        assert "size 'small' allows (1 MB)" in refused.json()["error"]["message"]
        assert api.patch("/workspaces/sz", json={"size": None}).json()["size"] == "medium"
        assert api.post("/workspaces/sz/start").status_code == 202
    sized.wait_status("sz", "running")


def require_limits() -> None:
    support = cgroups.detect()
    if not support.available:
        print(f"memory limits unavailable here: {support.detail}")
        pytest.skip(f"this host gives the manager no cgroups: {support.detail}")


def test_an_engine_that_cannot_boot_in_its_size_says_out_of_memory(sized: Manager) -> None:
    require_limits()
    with sized.api() as api:
        assert api.post("/workspaces", json={"name": "tiny", "size": "tiny"}).status_code == 201
    failed = sized.wait_status("tiny", "failed")
    assert failed["reason"] == "out_of_memory" and "ran out of memory" in failed["error"] and "40 MB" in failed["error"]
    assert record_of(sized, "tiny") is None


def test_a_workspace_over_its_memory_limit_fails_with_out_of_memory(sized: Manager, tmp_path: Path) -> None:
    require_limits()
    with sized.api() as api:
        assert api.post("/workspaces", json={"name": "hog", "size": "small", "start": False}).status_code == 201
        sized.wait_status("hog", "stopped")
        assert api.post("/workspaces/hog/start").status_code == 202
    sized.wait_status("hog", "running")
    record = record_of(sized, "hog")
    assert record is not None
    with chromium(tmp_path / "profile") as browser:
        page = browser.new_page()
        login(page, sized.url, "admin", ADMIN_PASSWORD)
        open_terminal(page, sized.url + "/w/admin/hog/")
        # Writes every byte, so the pages are really used (a bare bytearray(n) is untouched zero pages).
        run_in_terminal(page, "python3 -c \"x = b'y' * (3 << 30)\"")
        failed = sized.wait_status("hog", "failed", timeout=60)
    assert failed["reason"] == "out_of_memory" and "1024 MB" in failed["error"], failed
    assert record_of(sized, "hog") is None
    wait_for(lambda: not psutil.pid_exists(record["pid"]), 10, "the rest of the engine ended with it")
    assert not any(Path(g).exists() for g in record["cgroups"])  # its groups removed
    out = sized.cli("ws", "ls")
    assert "failed" in out.stdout
    with sized.api() as api:  # the owner decides: a larger size, and it starts again
        assert api.patch("/workspaces/hog", json={"size": "medium"}).status_code == 200
        assert api.post("/workspaces/hog/start").status_code == 202
    assert sized.wait_status("hog", "running")["reason"] is None


def test_no_limits_must_be_asked_for_and_keep_the_pids_limit(engine: install.Engine, tmp_path: Path) -> None:
    # By default a workspace has its default size's limits; only `default_size: none` takes them away, and not the pids limit.
    with start_manager(tmp_path / "data", extra_env={"DEVYARD_DEFAULT_SIZE": "none"}) as m:
        with m.api() as api:
            assert api.post("/workspaces", json={"name": "free"}).status_code == 201
            assert [s["default"] for s in api.get("/sizes").json()] == [False, False, False]
        m.wait_status("free", "running")
        record = record_of(m, "free")
        assert record is not None and record["memory_bytes"] is None
        support = cgroups.detect()
        if support.available and support.pids is not None:
            (pids,) = [Path(g) for g in record["cgroups"] if (Path(g) / "pids.max").exists()]
            assert (pids / "pids.max").read_text().strip() == "4096" and str(record["pid"]) in (
                pids / "cgroup.procs"
            ).read_text().split()
        else:
            print(f"no pids controller here: {support.detail}")


def test_a_running_workspace_over_its_disk_is_warned_then_stopped(engine: install.Engine, tmp_path: Path) -> None:
    config = tmp_path / "devyard.yaml"
    config.write_text(
        json.dumps(
            {
                "devyard": {
                    "sizes": {"small": {"memory_mb": 1024, "cpus": 1, "disk_mb": 20}},
                    "disk_check_interval_s": 0.5,
                    "disk_grace_s": 4,
                }
            }
        )
    )
    with start_manager(tmp_path / "data", args=("--config", str(config))) as m:
        with m.api() as api:
            for name in ("full", "tidy"):
                assert api.post("/workspaces", json={"name": name}).status_code == 201
        for name in ("full", "tidy"):
            m.wait_status(name, "running")
        root = m.data_dir / "workspaces" / "admin"
        for name in ("full", "tidy"):
            (root / name / "files" / "big.bin").write_bytes(b"x" * (30 * MB))
        with m.api() as api:

            def warned(name: str) -> dict[str, Any] | None:
                ws: dict[str, Any] = api.get(f"/workspaces/{name}").json()
                return (
                    ws
                    if ws["status"] == "running" and "more than its size 'small' allows (20 MB)" in (ws["error"] or "")
                    else None
                )

            for name in ("full", "tidy"):
                assert "it stops in" in wait_for(lambda: warned(name), 30, f"{name} warned")["error"]
            # Brought back under its allowance in time: the warning goes and it runs on.
            (root / "tidy" / "files" / "big.bin").unlink()
            wait_for(lambda: api.get("/workspaces/tidy").json()["error"] is None, 30, "tidy's warning gone")
            # Still over after the grace: stopped, saying why.
            stopped = m.wait_status("full", "stopped", timeout=60)
            assert stopped["error"].startswith("stopped: it uses") and "(20 MB)" in stopped["error"]
            assert api.get("/workspaces/tidy").json()["status"] == "running"
        log = (root / "full" / "logs" / "engine.log").read_text()
        assert "it stops in" in log and "stopped: it uses" in log
