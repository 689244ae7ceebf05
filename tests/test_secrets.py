"""Per-user secrets: set by CLI and API, seen by a real integrated terminal, written as 0600 files,
rewritten when they change, and absent from the API, the logs and the database file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from devyard.backends import homefiles
from devyard.errors import Invalid
from devyard.usersecrets import check_file, check_name
from tests.browser import chromium, login, open_terminal, run_in_terminal
from tests.support import ADMIN_PASSWORD, Manager, wait_for

VALUE = "s3cr3t-Value-" + os.urandom(6).hex()
CFG = "[DEFAULT]\nhost = https://example.cloud.databricks.com\ntoken = dapi-" + os.urandom(6).hex() + "\n"


@pytest.mark.parametrize(
    "name",
    ["", "1ABC", "A-B", "PATH", "HOME", "DEVYARD_TOKEN", "x" * 129, "A B", "LD_AUDIT", "ld_preload", "GCONV_PATH"],
)
def test_bad_secret_names(name: str) -> None:
    with pytest.raises(Invalid):
        check_name(name)


@pytest.mark.parametrize("path", ["", "/etc/passwd", "../x", "a/../../x", "a\0b", "a\\b"])
def test_bad_secret_files(path: str) -> None:
    with pytest.raises(Invalid):
        check_file(path)


def test_files_are_never_written_through_links(tmp_path: Path) -> None:
    home, outside = tmp_path / "home", tmp_path / "outside"
    home.mkdir()
    outside.mkdir()
    (home / ".config").symlink_to(outside)
    with pytest.raises(OSError):
        homefiles.write(home, {".config/tool.cfg": "x"}, [])
    (home / ".netrc").symlink_to(outside / "netrc")
    homefiles.write(home, {".netrc": "x"}, [])  # the link is replaced by the file, never written through
    assert not (home / ".netrc").is_symlink() and (home / ".netrc").read_text() == "x"
    assert not list(outside.iterdir())
    homefiles.write(home, {"a/b/c.cfg": "v"}, [])
    assert (home / "a" / "b" / "c.cfg").read_text() == "v" and stat.S_IMODE(
        (home / "a" / "b" / "c.cfg").stat().st_mode
    ) == 0o600
    homefiles.write(home, {}, ["a/b/c.cfg", "not/there"])
    assert not (home / "a" / "b" / "c.cfg").exists()


def test_secrets_reach_the_terminal_and_nowhere_else(fresh_manager: Manager, tmp_path: Path) -> None:
    m = fresh_manager
    out = m.cli("secret", "set", "MY_TOKEN", input=VALUE + "\n")
    assert out.returncode == 0, out.stderr
    out = m.cli("secret", "set", "DATABRICKS_CFG", "--file", ".databrickscfg", input=CFG)
    assert out.returncode == 0, out.stderr
    bad = m.cli("secret", "set", "PATH", input="x")
    assert bad.returncode == 1 and "used by the engine" in bad.stderr
    with m.api() as api:
        listed = api.get("/secrets").json()
        assert [(s["name"], s["file"]) for s in listed] == [("DATABRICKS_CFG", ".databrickscfg"), ("MY_TOKEN", None)]
        assert VALUE not in str(listed) and api.get("/secrets/MY_TOKEN").status_code in (404, 405)
        assert api.post("/workspaces", json={"name": "sec"}).status_code == 201
    m.wait_status("sec", "running")
    home = m.data_dir / "workspaces" / "admin" / "sec" / "home"
    files = m.data_dir / "workspaces" / "admin" / "sec" / "files"
    cfg = home / ".databrickscfg"
    assert cfg.read_text() == CFG and stat.S_IMODE(cfg.stat().st_mode) == 0o600

    with chromium(tmp_path / "profile") as browser:
        page = browser.new_page()
        login(page, m.url, "admin", ADMIN_PASSWORD)
        open_terminal(page, m.url + "/w/admin/sec/")
        run_in_terminal(page, 'printf %s "$MY_TOKEN" > seen.txt; cp ~/.databrickscfg cfg-copy.txt')
        wait_for(lambda: (files / "cfg-copy.txt").exists() and (files / "seen.txt").exists(), 30, "the terminal to run")
        page.close()
    assert (files / "seen.txt").read_text() == VALUE
    assert (files / "cfg-copy.txt").read_text() == CFG

    # Changing the file secret rewrites it in the workspace at once; deleting removes it.
    new_cfg = CFG.replace("example", "changed")
    with m.api() as api:
        assert api.put("/secrets/DATABRICKS_CFG", json={"value": new_cfg, "file": ".databrickscfg"}).status_code == 200
        assert cfg.read_text() == new_cfg
        assert api.put("/secrets/BAD", json={"value": "x", "file": "../../escape"}).status_code == 422
        assert api.put("/secrets/OTHER", json={"value": "x", "file": ".databrickscfg"}).status_code == 409
        assert api.delete("/secrets/DATABRICKS_CFG").status_code == 204
        assert not cfg.exists()
        assert api.delete("/secrets/DATABRICKS_CFG").status_code == 404
        audit = api.get("/audit", params={"action": "secret.set"}).json()
        assert audit and VALUE not in str(audit)

    # Never in a log, never in clear in the database.
    logs = m.log + (m.data_dir / "workspaces" / "admin" / "sec" / "logs" / "engine.log").read_text(errors="replace")
    assert VALUE not in logs and "dapi-" not in logs
    for db_file in m.data_dir.glob("devyard.db*"):
        raw = db_file.read_bytes()
        assert VALUE.encode() not in raw and b"dapi-" not in raw
    # Another user does not get them.
    with m.api() as api:
        assert api.post("/users", json={"name": "other", "password": "other-password"}).status_code == 201
    with m.api("other") as api:
        assert api.get("/secrets").json() == []
