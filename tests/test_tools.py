"""Tool bundles: a small real npm package and a small real PyPI package, installed once into the
shared cache and run from a real engine's integrated terminal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from devyard.config import Tool
from devyard.engine import install
from tests.browser import chromium, login, open_terminal, run_in_terminal
from tests.support import ADMIN_PASSWORD, start_manager, wait_for

TOOLS = [{"name": "json", "npm": "json@11.0.0"}, {"name": "cowsay", "pypi": "cowsay==6.1"}]


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "x", "npm": "json"},
        {"name": "x", "pypi": "cowsay>=6"},
        {"name": "x"},
        {"name": "x", "npm": "--global@1"},
        {"name": "X Y", "npm": "json@11.0.0"},
    ],
)
def test_tools_must_be_one_pinned_package(bad: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        Tool(**bad)


def test_tools_are_on_the_terminals_path(engine: install.Engine, tmp_path: Path) -> None:
    tools_dir = tmp_path / "tools"
    config = tmp_path / "devyard.yaml"
    config.write_text(json.dumps({"devyard": {"tools_dir": str(tools_dir)}, "tools": TOOLS}))
    m = start_manager(tmp_path / "data", args=("--config", str(config)))
    try:
        with m.api() as api:
            assert api.post("/workspaces", json={"name": "t1"}).status_code == 201
            ws = m.wait_status("t1", "running", timeout=600)
            assert ws["error"] is None
            installed = sorted(p.name for p in tools_dir.iterdir() if not p.name.endswith(".lock"))
            assert installed == ["npm-json_11.0.0", "pypi-cowsay==6.1"]
            # The PyPI tool exposes its command, not its venv's python or pip.
            assert sorted(p.name for p in (tools_dir / "pypi-cowsay==6.1" / "bin").iterdir()) == ["cowsay"]
            marker = tools_dir / "npm-json_11.0.0" / ".installed"
            first = marker.stat().st_mtime_ns
            # A second workspace reuses the cache.
            assert api.post("/workspaces", json={"name": "t2", "start": False}).status_code == 201
            m.wait_status("t2", "stopped")
            assert marker.stat().st_mtime_ns == first

        files = m.data_dir / "workspaces" / "admin" / "t1" / "files"
        with chromium(tmp_path / "profile") as browser:
            page = browser.new_page()
            login(page, m.url, "admin", ADMIN_PASSWORD)
            open_terminal(page, m.url + "/w/admin/t1/")
            run_in_terminal(
                page,
                "echo '{\"tool\":\"json\"}' | json tool > j.txt; cowsay -t moo > c.txt; python3 -c 'import sys; print(sys.prefix)' > p.txt",
            )
            wait_for(
                lambda: all((files / n).exists() and (files / n).stat().st_size for n in ("j.txt", "c.txt", "p.txt")),
                60,
                "the tools to run",
            )
            page.close()
        assert (files / "j.txt").read_text().strip() == "json"
        assert "moo" in (files / "c.txt").read_text() and "^__^" in (files / "c.txt").read_text()
        assert "cowsay" not in (files / "p.txt").read_text()  # python3 is still the system's
    finally:
        m.stop()
