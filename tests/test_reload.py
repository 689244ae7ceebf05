"""Reading devyard.yaml again in a running manager: SIGHUP and `devyard reload`, against a real manager and engine.

The catalog, groups, sizes and quotas apply at once and the running engine is left alone; a
change to a setting only read at start is refused as a whole, and a broken file changes nothing.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devyard.engine import install
from tests.support import Manager, start_manager, wait_for

BEFORE = """
extension_groups:
  python: {name: "Python", extensions: []}
devyard:
  sizes: {small: {memory_mb: 1024}}
  max_workspaces_per_user: 5
"""

AFTER = """
extension_groups:
  python: {name: "Python", extensions: []}
  notebooks: {name: "Notebooks", description: "added while running", extensions: []}
ui:
  workspace: {default_type: github}
devyard:
  sizes: {small: {memory_mb: 1024}, huge: {memory_mb: 8192, description: "for the big jobs"}}
  max_workspaces_per_user: 1
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reload") / "devyard.yaml"
    path.write_text(BEFORE)
    return path


@pytest.fixture(scope="module")
def m(engine: install.Engine, config: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    with start_manager(tmp_path_factory.mktemp("reload-data") / "data", args=("--config", str(config))) as manager:
        yield manager


def group_ids(m: Manager) -> list[str]:
    with m.api() as api:
        return [g["id"] for g in api.get("/extension-groups").json()]


def test_sighup_applies_the_catalog_sizes_and_quotas_without_touching_engines(m: Manager, config: Path) -> None:
    with m.api() as api:
        assert api.post("/workspaces", json={"name": "keep"}).status_code == 201
    m.wait_status("keep", "running")
    engines = m.engine_pids()
    assert group_ids(m) == ["python"]

    config.write_text(AFTER)
    os.kill(m.proc.pid, signal.SIGHUP)
    wait_for(lambda: group_ids(m) == ["python", "notebooks"], 10, "the new group to be offered")
    with m.api() as api:
        assert [s["name"] for s in api.get("/sizes").json()] == ["small", "huge"]
        # The quota is the new one: one workspace each, and admin has one.
        refused = api.post("/workspaces", json={"name": "second", "start": False})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "quota_exceeded", refused.text
        assert api.get("/workspaces/keep").json()["status"] == "running"
    assert m.engine_pids() == engines  # the running engine was not touched
    assert "configuration reloaded: extension_groups, ui, max_workspaces_per_user, sizes" in m.log
    # The create form offers the new group and starts from the new default source.
    form = httpx.get(m.url + "/new", headers={"authorization": f"Bearer {m.token()}"}, verify=m.verify).text
    assert 'value="notebooks"' in form and 'value="git" checked' in form


def test_a_setting_read_only_at_start_refuses_the_whole_reload(m: Manager, config: Path) -> None:
    config.write_text(AFTER.replace("notebooks:", "data:") + "  session_ttl_s: 60\n  crash_restarts: 9\n")
    out = m.cli("reload")
    assert out.returncode == 1
    assert out.stderr == (
        "error: session_ttl_s: only read at start; restart the manager to apply them (nothing was changed)\n"
    )
    assert group_ids(m) == ["python", "notebooks"]  # nothing applied, not even the reloadable changes
    assert "reload refused, nothing changed: session_ttl_s is only read at start" in m.log


def test_a_broken_file_changes_nothing(m: Manager, config: Path) -> None:
    config.write_text(AFTER.replace("extensions: []}\nui", 'extensions: "x"}\nui'))
    out = m.cli("reload")
    assert out.returncode == 2  # a configuration error, as at start
    assert out.stderr == f"error: {config}: extension_groups.notebooks.extensions: Input should be a valid list\n"
    os.kill(m.proc.pid, signal.SIGHUP)  # the same through the signal: logged, and the manager serves on
    wait_for(lambda: "reload failed, nothing changed" in m.log, 10, "the failed reload to be logged")
    assert group_ids(m) == ["python", "notebooks"]


def test_reload_through_the_cli(m: Manager, config: Path) -> None:
    config.write_text(BEFORE)
    out = m.cli("reload")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "reloaded: extension_groups, ui, max_workspaces_per_user, sizes\n"
    assert group_ids(m) == ["python"]
    assert m.cli("reload").stdout == "reloaded: nothing changed\n"
    m.add_user("reloader")
    refused = m.cli("reload", token="reloader")
    assert refused.returncode == 1 and "admin" in refused.stderr
