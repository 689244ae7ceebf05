"""Extension groups: real .vsix packages built here, installed by the real engine from a mirror folder,
activated in a real workbench in Chromium; allow-list, per-extension errors, settings merge, `extensions check`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from devyard.backends.base import WorkspaceSpec
from devyard.config import ExtensionSettings
from devyard.engine import install
from devyard.errors import Invalid
from devyard.provision import extensions
from tests.browser import chromium, login
from tests.support import ADMIN_PASSWORD, Manager, start_manager, wait_for
from tests.vsix import make_vsix


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("vsix")
    make_vsix(folder, "devyardtest", "hello", "0.0.1")
    make_vsix(folder, "devyardtest", "hello", "0.0.2")  # the newest in the mirror wins
    make_vsix(folder, "devyardtest", "second", "1.2.3")
    make_vsix(folder, "devyardtest", "broken", "0.1.0", activate="throw new Error('broken on purpose')")
    make_vsix(folder, "devyardtest", "lazy", "0.1.0", event="onLanguage:rust")
    return folder


@pytest.fixture(scope="module")
def config(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "devyard.yaml"
    path.write_text(
        json.dumps(
            {
                "devyard": {
                    "extensions": {"gallery": "", "vsix_dir": str(mirror), "allow": ["devyardtest.*", "nosuch.*"]}
                },
                "extension_groups": [
                    {
                        "name": "tools",
                        "extensions": ["devyardtest.hello", "nosuch.thing"],
                        "user_settings": {"editor.tabSize": 3},
                    },
                    {
                        "name": "extra",
                        "extensions": ["devyardtest.second"],
                        "user_settings": {"editor.fontSize": 20, "files.autoSave": "afterDelay"},
                    },
                    {"name": "forbidden", "extensions": ["evil.miner"]},
                    {"name": "activation", "extensions": ["devyardtest.broken", "devyardtest.lazy"]},
                ],
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def ext_manager(engine: install.Engine, config: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    m = start_manager(tmp_path_factory.mktemp("ext") / "data", args=("--config", str(config)))
    try:
        yield m
    finally:
        m.stop()


def spec(m: Manager, name: str) -> WorkspaceSpec:
    return WorkspaceSpec(uid="x", owner="admin", name=name, root=m.data_dir / "workspaces" / "admin" / name)


def test_groups_install_from_the_mirror_and_activate(
    ext_manager: Manager, engine: install.Engine, tmp_path: Path
) -> None:
    m = ext_manager
    with m.api() as api:
        assert api.post("/workspaces", json={"name": "exts", "extension_groups": ["tools"]}).status_code == 201
    ws = m.wait_status("exts", "running")
    # The unknown extension is named with its reason; the other one installed anyway.
    assert (
        ws["error"]
        and "nosuch.thing" in ws["error"]
        and "not found" in ws["error"]
        and "devyardtest.hello" not in ws["error"]
    )
    listed = extensions.listed(engine, spec(m, "exts"), ExtensionSettings(gallery=""))
    assert listed == {"devyardtest.hello": "0.0.2"}
    log = (spec(m, "exts").log_file).read_text()
    assert "extension devyardtest.hello: installed 0.0.2" in log and "extension nosuch.thing: NOT installed" in log
    settings = json.loads((spec(m, "exts").data_dir / "User" / "settings.json").read_text())
    assert settings["editor.tabSize"] == 3
    # The engine loads it: the workbench's extension host activates it.
    with chromium(tmp_path / "profile") as browser:
        page = browser.new_page()
        login(page, m.url, "admin", ADMIN_PASSWORD)
        page.goto(m.url + "/w/admin/exts/")
        page.wait_for_selector(".monaco-workbench", timeout=90_000)
        marker = spec(m, "exts").home_dir / "devyardtest.hello-activated"
        wait_for(marker.exists, 60, "the extension to activate in the workbench")
        assert marker.read_text() == "0.0.2"
        page.close()


def test_allow_list_and_bad_ids_are_refused(ext_manager: Manager) -> None:
    with ext_manager.api() as api:
        r = api.post("/workspaces", json={"name": "evil", "extension_groups": ["forbidden"]})
        assert (
            r.status_code == 422
            and r.json()["error"]["code"] == "extension_not_allowed"
            and "evil.miner" in r.json()["error"]["message"]
        )
        assert api.get("/workspaces/evil").status_code == 404
    with pytest.raises(Invalid, match="not extension ids"):
        extensions.check_allowed(["../../etc", "--force"], ExtensionSettings())
    extensions.check_allowed(["Any.thing"], ExtensionSettings())  # no allow-list: anything well-formed


def test_adding_a_group_keeps_the_users_settings(ext_manager: Manager, engine: install.Engine) -> None:
    m = ext_manager
    with m.api() as api:
        assert api.post("/workspaces", json={"name": "later-groups"}).status_code == 201
        m.wait_status("later-groups", "running")
        settings_file = spec(m, "later-groups").data_dir / "User" / "settings.json"
        settings_file.write_text('{\n  // set by the user\n  "editor.fontSize": 11,\n}\n')
        r = api.post("/workspaces/later-groups/extension-groups", json={"groups": ["extra"]})
        assert r.status_code == 200, r.text
        assert r.json()["extensions"] == [{"id": "devyardtest.second", "installed": True, "detail": "1.2.3"}]
        assert r.json()["workspace"]["extension_groups"] == ["extra"]
        assert api.post("/workspaces/later-groups/extension-groups", json={"groups": ["nope"]}).status_code == 422
        assert api.post("/workspaces/later-groups/extension-groups", json={"groups": ["forbidden"]}).status_code == 422
    assert json.loads(settings_file.read_text()) == {"editor.fontSize": 11, "files.autoSave": "afterDelay"}
    assert "devyardtest.second" in extensions.listed(engine, spec(m, "later-groups"), ExtensionSettings(gallery=""))
    out = m.cli("ws", "add-groups", "later-groups", "tools")
    assert (
        out.returncode == 1
        and "installed" in out.stdout
        and "devyardtest.hello" in out.stdout
        and "nosuch.thing" in out.stdout
    )


def test_extensions_check_reports_each_extension(ext_manager: Manager, config: Path) -> None:
    out = ext_manager.cli("extensions", "check", "--config", str(config), token=None)
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stdout.splitlines()

    def line_of(ext_id: str) -> str:
        return next(ln for ln in lines if ext_id in ln)

    assert line_of("devyardtest.hello").startswith("ok") and "0.0.2" in line_of("devyardtest.hello")
    assert "activated (onStartupFinished)" in line_of("devyardtest.hello"), out.stdout
    assert line_of("devyardtest.second").startswith("ok")
    # Installed fine, but throws when the workbench activates it: the check says so, with the error.
    assert line_of("devyardtest.broken").startswith("FAIL") and "broken on purpose" in line_of("devyardtest.broken"), (
        out.stdout
    )
    assert line_of("devyardtest.lazy").startswith("ok") and "activates on: onLanguage:rust" in line_of(
        "devyardtest.lazy"
    )
    assert line_of("nosuch.thing").startswith("FAIL") and "not found" in line_of("nosuch.thing")
    assert line_of("evil.miner").startswith("FAIL") and "not allowed" in line_of("evil.miner")
    only = ext_manager.cli("extensions", "check", "--config", str(config), "--group", "extra", token=None)
    assert only.returncode == 0 and "devyardtest.second" in only.stdout and "hello" not in only.stdout
