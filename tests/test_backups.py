"""Backup and restore: a backup taken while files are being saved loses nothing saved before it began and holds
no torn file; a restore brings back files, user settings and extensions; scheduled backups keep their number.

Against a real manager and engines; the extension is a real .vsix installed again on restore from
the configured mirror. The "typing" is a thread saving files in place the way VS Code saves them
(truncate, then write) as fast as it can while the backup streams.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from devyard.engine import install
from tests.browser import chromium, login, shot
from tests.support import ADMIN_PASSWORD, Manager, start_manager, wait_for
from tests.vsix import make_vsix


@pytest.fixture(scope="module")
def bm(engine: install.Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    base = tmp_path_factory.mktemp("backups")
    mirror = base / "vsix"
    mirror.mkdir()
    make_vsix(mirror, "devyardtest", "keeper", "1.0.0")
    config = base / "devyard.yaml"
    config.write_text(
        json.dumps(
            {
                "devyard": {"extensions": {"gallery": "", "vsix_dir": str(mirror)}},
                "extension_groups": [
                    {"name": "keep", "extensions": ["devyardtest.keeper"], "user_settings": {"editor.tabSize": 3}}
                ],
            }
        )
    )
    with start_manager(base / "data", args=("--config", str(config))) as m:
        yield m


def folder(m: Manager, name: str, part: str = "files") -> Path:
    return m.data_dir / "workspaces" / "admin" / name / part


def test_a_backup_while_saving_restores_everything_saved_before_it(bm: Manager, tmp_path: Path) -> None:
    with bm.api() as api:
        assert api.post("/workspaces", json={"name": "src", "extension_groups": ["keep"]}).status_code == 201
    bm.wait_status("src", "running")
    files = folder(bm, "src")
    saved = {f"saved/{i:03}.bin": os.urandom(64 << 10) for i in range(300)}  # ~19 MB: the backup takes a while
    for rel, data in saved.items():
        (files / rel).parent.mkdir(exist_ok=True)
        (files / rel).write_bytes(data)
    settings_file = folder(bm, "src", "data") / "User" / "settings.json"
    settings_file.write_text(settings_file.read_text().rstrip().rstrip("}") + ',\n  "editor.fontSize": 17\n}\n')

    stop = threading.Event()
    versions: list[int] = []

    def type_and_save() -> None:
        k = 0
        with (files / "typing.txt").open("w"):
            pass
        while not stop.is_set():
            k += 1
            with (files / "typing.txt").open("r+b") as f:  # in place, as the editor saves
                f.truncate(0)
                f.write(f"version {k}\n".encode() * (200 + k % 500))
            (files / f"new-{k % 50}.txt").write_text(f"{k}\n")
            versions.append(k)

    typist = threading.Thread(target=type_and_save)
    typist.start()
    try:
        out = bm.cli("ws", "backup", "src", "-o", str(tmp_path / "src.tar.gz"))
    finally:
        stop.set()
        typist.join()
    assert out.returncode == 0, out.stderr
    assert len(versions) > 10  # the saving really overlapped the backup

    with tarfile.open(tmp_path / "src.tar.gz") as tar:
        manifest = json.load(tar.extractfile("devyard-backup.json"))  # type: ignore[arg-type]
        for rel, data in saved.items():
            assert tar.extractfile(f"files/{rel}").read() == data, rel  # type: ignore[union-attr]
        typed = tar.extractfile("files/typing.txt").read().decode()  # type: ignore[union-attr]
        lines = set(typed.splitlines())
        assert len(lines) <= 1, "typing.txt is torn: it mixes versions"
        names = tar.getnames()
    assert manifest["name"] == "src" and manifest["extensions"] == ["devyardtest.keeper"] and manifest["format"] == 1
    assert not any(n.startswith("data/logs") for n in names)

    out = bm.cli("ws", "restore", str(tmp_path / "src.tar.gz"), "--name", "copy")
    assert out.returncode == 0, out.stderr
    assert "copy: running" in out.stdout
    restored = folder(bm, "copy")
    for rel, data in saved.items():
        assert (restored / rel).read_bytes() == data
    assert json.loads((folder(bm, "copy", "data") / "User" / "settings.json").read_text())["editor.fontSize"] == 17
    assert any(p.name.startswith("devyardtest.keeper-1.0.0") for p in folder(bm, "copy", "extensions").iterdir())
    with bm.api() as api:
        again = api.post("/workspaces/restore", params={"name": "copy"}, content=(tmp_path / "src.tar.gz").read_bytes())
        assert again.status_code == 409
        not_backup = io.BytesIO()
        with tarfile.open(fileobj=not_backup, mode="w:gz") as tar:
            info = tarfile.TarInfo("hello.txt")
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
        refused = api.post("/workspaces/restore", params={"name": "nope"}, content=not_backup.getvalue())
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "not_a_backup"
        empty = api.post("/workspaces/restore", content=b"")
        assert empty.status_code == 422 and empty.json()["error"]["code"] == "backup_missing"
        bad_name = api.post(
            "/workspaces/restore", params={"name": "Bad Name"}, content=(tmp_path / "src.tar.gz").read_bytes()
        )
        assert bad_name.status_code == 422 and "name" in bad_name.json()["error"]["message"]
        assert api.get("/workspaces/nope").status_code == 404
    assert not [p for p in (bm.data_dir / "uploads").iterdir()]  # nothing left behind by the refusals
    missing = bm.cli("ws", "backup", "no-such", "-o", str(tmp_path / "x.tar.gz"))
    assert (
        missing.returncode == 1 and "no workspace 'no-such'" in missing.stderr and not (tmp_path / "x.tar.gz").exists()
    )


def test_scheduled_backups_keep_the_newest(engine: install.Engine, tmp_path: Path) -> None:
    with start_manager(
        tmp_path / "data", extra_env={"DEVYARD_BACKUP_INTERVAL_S": "2", "DEVYARD_BACKUP_KEEP": "2"}
    ) as bm:
        with bm.api() as api:
            assert api.post("/workspaces", json={"name": "sched", "start": False}).status_code == 201
        bm.wait_status("sched", "stopped")
        (folder(bm, "sched") / "notes.md").write_text("# kept\n")
        backups = bm.data_dir / "backups" / "admin" / "sched"

        def rounds() -> list[str]:
            return sorted(p.name for p in backups.glob("sched-*.tar.gz")) if backups.exists() else []

        first = wait_for(lambda: rounds() or None, 30, "a first scheduled backup")
        wait_for(lambda: len(rounds()) == 2 and rounds()[0] not in first, 30, "two newer backups replacing the first")
        assert not list(backups.glob(".*"))  # no partial file left
        with tarfile.open(backups / rounds()[-1]) as tar:
            assert tar.extractfile("files/notes.md").read() == b"# kept\n"  # type: ignore[union-attr]


def test_the_dashboard_downloads_a_backup_and_changes_the_size(bm: Manager, tmp_path: Path) -> None:
    with bm.api() as api:
        assert api.post("/workspaces", json={"name": "dash", "start": False}).status_code == 201
    bm.wait_status("dash", "stopped")
    (folder(bm, "dash") / "hello.py").write_text("print('hi')\n")
    with chromium(tmp_path / "profile") as browser:
        page = browser.new_page()
        login(page, bm.url, "admin", ADMIN_PASSWORD)
        page.goto(bm.url + "/workspaces/dash")
        assert (
            page.locator("[data-field=size]").first.inner_text() == "small"
        )  # the default size: limits unless "none" is said
        page.select_option("#resize select", "large")
        page.click("#resize button")
        page.wait_for_selector("#resize-message:has-text('is now large')")
        with page.expect_download() as download:
            page.click("#backup")
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        shot(page, "detail-size-backup")
    assert saved.name.startswith("dash-") and saved.name.endswith(".tar.gz")
    with tarfile.open(saved) as tar:
        assert tar.extractfile("files/hello.py").read() == b"print('hi')\n"  # type: ignore[union-attr]
    with bm.api() as api:
        assert api.get("/workspaces/dash").json()["size"] == "large"
