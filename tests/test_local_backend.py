"""What only the local backend does, with the real engine; the Backend contract itself is tests/test_backend_contract.py."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import psutil
import pytest

from devyard.backends.base import WorkspaceSpec
from devyard.backends.local import LocalBackend
from devyard.config import load_settings
from devyard.engine.install import CODE_SERVER_VERSION, Engine
from devyard.errors import BackendError
from devyard.logfiles import tail


@pytest.fixture
def backend(engine: Engine, tmp_path: Path) -> LocalBackend:
    return LocalBackend(load_settings(data_dir=tmp_path / "d", engine_start_timeout_s=60))


def spec(backend: LocalBackend, uid: str = "aaaa11112222") -> WorkspaceSpec:
    return WorkspaceSpec(uid=uid, owner="ann", name="proj", root=backend.settings.workspaces_dir / "ann" / "proj")


def test_engine_is_a_detached_process_tree_on_a_private_socket(backend: LocalBackend) -> None:
    """What only the local backend promises (the shared contract is tests/test_backend_contract.py)."""
    ws = spec(backend)

    async def scenario() -> None:
        endpoint = await backend.start(ws)
        assert endpoint.unix_socket and Path(endpoint.unix_socket).is_socket()
        assert oct(Path(endpoint.unix_socket).stat().st_mode & 0o777) == "0o600"
        assert oct(backend.run_dir.stat().st_mode & 0o777) == "0o700"
        st = await backend.status(ws)
        assert st.pid and psutil.Process(st.pid).is_running()
        assert (await backend.stats(ws)).memory_bytes > 10_000_000
        # A restarted manager knows the engine by its pid (and start time) from disk alone.
        assert [(a.uid, a.pid) for a in await LocalBackend(backend.settings).adopt()] == [(ws.uid, st.pid)]

        engine = psutil.Process(st.pid)
        tree = [engine, *engine.children(recursive=True)]
        await backend.stop(ws, timeout=5)
        assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in tree)
        assert not Path(endpoint.unix_socket).exists()

    asyncio.run(scenario())


def test_remove_keeps_only_the_files_when_asked(backend: LocalBackend) -> None:
    ws = spec(backend, "eeee11112222")
    for folder in (ws.files_dir, ws.home_dir, ws.data_dir):
        folder.mkdir(parents=True)
        (folder / "x").write_text("x")
    asyncio.run(backend.remove(ws, keep_files=True))
    assert sorted(p.name for p in ws.root.iterdir()) == ["files"] and (ws.files_dir / "x").exists()
    # A file where the workspace's folder belongs: the OSError is the backend's error, naming the workspace.
    shutil.rmtree(ws.root)
    ws.root.write_text("not a folder")
    with pytest.raises(BackendError) as exc:
        asyncio.run(backend.remove(ws, keep_files=True))
    assert exc.value.message.startswith("could not remove workspace ann/proj: ") and str(ws.root) in exc.value.message


def test_reused_pid_is_not_adopted(backend: LocalBackend) -> None:
    backend.records_dir.mkdir(parents=True)
    me = psutil.Process()
    record = backend.records_dir / "bbbb11112222.json"
    # Our own pid, but a different start time: a reused pid must not be taken for the engine.
    record.write_text(json.dumps({"pid": me.pid, "create_time": me.create_time() - 1000, "socket": "/nonexistent"}))
    assert asyncio.run(backend.adopt()) == []
    assert not record.exists()
    assert asyncio.run(backend.status(spec(backend, "bbbb11112222"))).state == "stopped"


def test_broken_folder_is_a_clear_error(backend: LocalBackend) -> None:
    ws = spec(backend, "cccc11112222")
    ws.root.mkdir(parents=True)
    ws.data_dir.write_text("a file where a folder belongs")
    with pytest.raises(BackendError) as exc:
        asyncio.run(backend.start(ws))
    assert exc.value.code == "engine_start_failed" and str(ws.data_dir) in exc.value.message


def test_engine_exiting_while_starting_reports_its_log(tmp_path: Path) -> None:
    # A tiny real engine that fails the way a broken install does: prints and exits 3.
    version_dir = tmp_path / "engines" / CODE_SERVER_VERSION
    version_dir.mkdir(parents=True)
    script = version_dir / "entry.sh"
    script.write_text("echo 'fatal: cannot load native module' >&2\nexit 3\n")
    (version_dir / "engine.json").write_text(
        json.dumps({"version": CODE_SERVER_VERSION, "root": str(version_dir), "node": "/bin/sh", "entry": str(script)})
    )
    backend = LocalBackend(load_settings(data_dir=tmp_path / "d", engine_dir=tmp_path / "engines"))
    ws = spec(backend, "dddd11112222")
    with pytest.raises(BackendError) as exc:
        asyncio.run(backend.start(ws))
    assert exc.value.code == "engine_start_failed"
    assert "exited with code 3" in exc.value.message and "cannot load native module" in exc.value.message
    assert asyncio.run(backend.status(ws)).state == "stopped"


def test_socket_path_too_long(engine: Engine, tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 90)
    backend = LocalBackend(load_settings(data_dir=deep))
    with pytest.raises(BackendError) as exc:
        asyncio.run(backend.start(spec(backend)))
    assert exc.value.code == "socket_path_too_long" and "--data-dir" in exc.value.message


def test_tail(tmp_path: Path) -> None:
    f = tmp_path / "log"
    assert tail(f, 5) == []
    f.write_text("".join(f"line {i}\n" for i in range(10_000)))
    assert tail(f, 3) == ["line 9997", "line 9998", "line 9999"]
    f.write_text("only\n")
    assert tail(f, 3) == ["only"]
