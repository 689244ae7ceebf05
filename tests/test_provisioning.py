"""Provisioning: templates, git clones (file:// and smart HTTPS), archive uploads and their attack suite, settings merge.

Against a real manager and engines; the git server is Debian's git http-backend, the archives
are built here with the standard library.
"""

from __future__ import annotations

import functools
import io
import json
import os
import shutil
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devyard import provision
from devyard.backends.base import WorkspaceSpec
from devyard.config import load_settings
from devyard.engine import install
from devyard.errors import ArchiveRefused, Invalid
from devyard.provision import archive, usersettings
from devyard.provision.git import check_url, redact
from devyard.tls import CERT_NAME
from devyard.workspaces import backups
from tests.support import Manager, make_repo, peer, start_manager, wait_for

ATTACK_URLS = [
    "ext::sh -c touch% /tmp/pwned",
    "ext::sh",
    "fd::17",
    "fd::0/x",
    "-uupload-pack=touch /tmp/pwned",
    "--upload-pack=touch",
    "ssh://-oProxyCommand=touch%20/tmp/pwned/x",
    "-oProxyCommand=touch:x",
    "git://example.com/x.git",
    "http://example.com/x.git",
    "https://user:secret@example.com/x.git",
    "file:///etc",
    "/srv/repo",
    "./repo",
    "https://exa mple.com/x",
    "https://",
    "https://-host/x",
    "ftp://example.com/x",
    "https://example.com/x\n--upload-pack=y",
    "",
]
GOOD_URLS = [
    "https://github.com/a/b.git",
    "ssh://git@example.com/a/b.git",
    "git@github.com:a/b.git",
    "ssh://example.com:2222/x",
]


@pytest.mark.parametrize("url", ATTACK_URLS)
def test_dangerous_git_urls_are_refused(url: str, tmp_path: Path) -> None:
    with pytest.raises(Invalid):
        check_url(url, [tmp_path])


@pytest.mark.parametrize("url", GOOD_URLS)
def test_ordinary_git_urls_pass(url: str, tmp_path: Path) -> None:
    assert check_url(url, []) == url


def test_file_urls_only_below_allowed_roots(tmp_path: Path) -> None:
    (tmp_path / "repos" / "r.git").mkdir(parents=True)
    assert check_url(f"file://{tmp_path}/repos/r.git", [tmp_path / "repos"])
    for url in (
        f"file://{tmp_path}/repos/../other",
        f"file://{tmp_path}/elsewhere",
        f"file://host{tmp_path}/repos/r.git",
    ):
        with pytest.raises(Invalid):
            check_url(url, [tmp_path / "repos"])
    with pytest.raises(Invalid, match="none are configured"):
        check_url(f"file://{tmp_path}/repos/r.git", [])
    assert redact("https://tok@example.com/x") == "https://example.com/x"


def test_settings_merge_keeps_what_the_user_has(tmp_path: Path) -> None:
    path = tmp_path / "User" / "settings.json"
    path.parent.mkdir()
    path.write_text('{\n  // mine\n  "editor.fontSize": 17, /* keep */\n  "files.autoSave": "off",\n}\n')
    added = usersettings.merge(tmp_path, {"editor.fontSize": 12, "python.analysis.typeCheckingMode": "strict"})
    assert added == ["python.analysis.typeCheckingMode"]
    assert json.loads(path.read_text()) == {
        "editor.fontSize": 17,
        "files.autoSave": "off",
        "python.analysis.typeCheckingMode": "strict",
    }
    path.write_text("{ not json")
    usersettings.merge(tmp_path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in path.parent.iterdir() if p.name.startswith("settings.json.unreadable-")]


def test_settings_merge_never_writes_through_a_planted_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target").write_text("root's\n")
    data = tmp_path / "data"
    (data / "User").mkdir(parents=True)
    (data / "User" / ".settings.json.tmp").symlink_to(outside / "target")  # what the old merge wrote through
    (data / "User" / "settings.json").symlink_to(outside / "target")
    assert usersettings.merge(data, {"a": 1}) == ["a"]
    assert (outside / "target").read_text() == "root's\n" and json.loads(
        (data / "User" / "settings.json").read_text()
    ) == {"a": 1}
    shutil.rmtree(data / "User")
    (data / "User").symlink_to(outside)  # the folder itself a link
    with pytest.raises(OSError):
        usersettings.merge(data, {"a": 1})
    assert sorted(p.name for p in outside.iterdir()) == ["target"]


# -- archives -------------------------------------------------------------------------------
def tar_bytes(entries: list[tarfile.TarInfo], data: dict[str, bytes] | None = None, gz: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tar:
        for info in entries:
            content = (data or {}).get(info.name)
            if content is not None:
                info.size = len(content)
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return buf.getvalue()


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    return info


def zip_bytes(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            zf.writestr(name, content)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, target)
    return buf.getvalue()


@functools.cache
def bomb() -> bytes:
    """A .tar.gz of about 1 MB that expands to 1 GB of zeros."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo("zeros.bin")
        info.size = 1 << 30

        class Zeros:
            left = 1 << 30

            def read(self, size: int = -1) -> bytes:
                n = min(size if size >= 0 else self.left, self.left)
                self.left -= n
                return bytes(n)

        tar.addfile(info, Zeros())  # type: ignore[arg-type]
    return buf.getvalue()


def many_entries(n: int) -> bytes:
    return zip_bytes({f"f{i}.txt": b"x" for i in range(n)})


ARCHIVE_ATTACKS: dict[str, Any] = {
    "zip slip": lambda: zip_bytes({"../../escaped.txt": b"pwned"}),
    "tar slip": lambda: tar_bytes([entry("ok/../../escaped.txt")], {"ok/../../escaped.txt": b"pwned"}),
    "absolute path": lambda: tar_bytes([entry("/tmp/devyard-escaped.txt")], {"/tmp/devyard-escaped.txt": b"pwned"}),
    "symlink escape": lambda: tar_bytes(
        [entry("up", tarfile.SYMTYPE, "../../.."), entry("up/escaped.txt")], {"up/escaped.txt": b"pwned"}
    ),
    "absolute symlink": lambda: tar_bytes([entry("etc", tarfile.SYMTYPE, "/etc")]),
    "zip symlink escape": lambda: zip_bytes({}, {"out": "../../../outside"}),
    # Each link looks inside by its text; on disk `x` is the folder itself, so x/x/x/data leads three folders up.
    "chained links": lambda: tar_bytes(
        [entry("x", tarfile.SYMTYPE, "."), entry("x/x/x/data", tarfile.SYMTYPE, "../../../outside")]
    ),
    # l1 leads inside while l2 does; a later entry makes l2 the folder itself, and l1 then leads out.
    "link changed by a later entry": lambda: tar_bytes(
        [
            entry("deep", tarfile.DIRTYPE),
            entry("deep/in", tarfile.DIRTYPE),
            entry("l2", tarfile.SYMTYPE, "deep/in"),
            entry("l1", tarfile.SYMTYPE, "l2/x/../.."),
            entry("l2", tarfile.SYMTYPE, "."),
        ]
    ),
    "hard link escape": lambda: tar_bytes([entry("passwd", tarfile.LNKTYPE, "../../../../etc/passwd")]),
    "device file": lambda: tar_bytes([entry("null", tarfile.CHRTYPE)]),
    "fifo": lambda: tar_bytes([entry("pipe", tarfile.FIFOTYPE)]),
    "10,000 entries": lambda: many_entries(10_000),
    "1 GB bomb": bomb,
    "corrupt": lambda: zip_bytes({"a.txt": b"hello" * 1000})[:-40],
    "truncated tar.gz": lambda: tar_bytes([entry("a.txt")], {"a.txt": os.urandom(100_000)})[:5000],
    "not an archive": lambda: b"just some text, not an archive at all",
}
LIMITS = archive.Limits(max_entries=5_000, max_bytes=100 << 20)


@pytest.mark.parametrize("attack", sorted(ARCHIVE_ATTACKS))
def test_archive_attacks_are_refused(attack: str, tmp_path: Path) -> None:
    source = tmp_path / "upload"
    source.write_bytes(ARCHIVE_ATTACKS[attack]())
    jail = tmp_path / "a" / "b" / "c"
    jail.mkdir(parents=True)
    with pytest.raises(ArchiveRefused):
        archive.extract(source, jail / "dest", LIMITS)
    assert not (jail / "dest").exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "c", "upload"]
    assert not Path("/tmp/devyard-escaped.txt").exists()


def test_a_backup_whose_data_is_a_link_is_refused(tmp_path: Path) -> None:
    unpacked = tmp_path / "unpacked"
    (unpacked / "elsewhere").mkdir(parents=True)
    (unpacked / "data").symlink_to("elsewhere")  # inside the folder, but a link where a folder must be
    with pytest.raises(Invalid) as exc:
        backups.real_folders(unpacked)
    assert exc.value.code == "not_a_backup" and "data/" in exc.value.message
    (unpacked / "data").unlink()
    (unpacked / "data").mkdir()
    backups.real_folders(unpacked)


def test_archives_unpack_with_folders_links_and_modes(tmp_path: Path) -> None:
    exe = entry("bin/run.sh")
    exe.mode = 0o4755  # setuid is dropped
    source = tmp_path / "ok.tar.gz"
    source.write_bytes(
        tar_bytes(
            [
                entry("bin", tarfile.DIRTYPE),
                exe,
                entry("README.md"),
                entry("docs/readme", tarfile.SYMTYPE, "../README.md"),
                entry("copy.md", tarfile.LNKTYPE, "README.md"),
            ],
            {"bin/run.sh": b"#!/bin/sh\necho hi\n", "README.md": b"# hi\n"},
        )
    )
    assert archive.extract(source, tmp_path / "out", LIMITS) == 3
    out = tmp_path / "out"
    assert (out / "docs" / "readme").read_text() == "# hi\n" and os.readlink(out / "docs" / "readme") == "../README.md"
    assert (out / "copy.md").read_text() == "# hi\n" and not (out / "copy.md").is_symlink()
    assert (out / "bin" / "run.sh").stat().st_mode & 0o7777 == 0o755
    z = tmp_path / "ok.zip"
    z.write_bytes(zip_bytes({"src/main.py": b"print(1)\n", "src/": b""}))
    assert (
        archive.extract(z, tmp_path / "zout", LIMITS) == 1
        and (tmp_path / "zout" / "src" / "main.py").read_text() == "print(1)\n"
    )


# -- against a real manager -------------------------------------------------------------------
@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repos")
    make_repo(root / "starter.git", {"README.md": "# starter\n", "src/app.py": "print('hello')\n"})
    return root


@pytest.fixture(scope="module")
def prov(engine: install.Engine, repos: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    """A manager with a template catalog, extension groups, file:// allowed under `repos` and small archive limits."""
    base = tmp_path_factory.mktemp("prov")
    config = base / "devyard.yaml"
    config.write_text(
        json.dumps(
            {
                "devyard": {
                    "git_file_roots": [str(repos)],
                    "archive_max_entries": 5000,
                    "archive_max_expanded_mb": 100,
                },
                "extension_groups": [
                    {
                        "name": "python",
                        "extensions": [],
                        "user_settings": {"python.analysis.typeCheckingMode": "strict", "editor.tabSize": 4},
                    },
                    {"name": "web", "extensions": [], "user_settings": {"editor.tabSize": 2, "files.eol": "\n"}},
                ],
                "packaged_assets": {
                    "tabs": [
                        {
                            "name": "Starters",
                            "items": [
                                {
                                    "name": "Python starter",
                                    "description": "A tiny app",
                                    "extensions_groups": ["python"],
                                    "github_url": f"file://{repos}/starter.git",
                                    "thumbnail_url": "https://example.com/t.png",
                                },
                            ],
                        }
                    ]
                },
                "ui": {"default_extension_groups": ["python"], "workspace": {"max_upload_size_mb": 8}},
            }
        )
    )
    m = start_manager(base / "data", args=("--config", str(config)))
    try:
        yield m
    finally:
        m.stop()


def files_of(m: Manager, name: str, owner: str = "admin") -> Path:
    return m.data_dir / "workspaces" / owner / name / "files"


def user_settings(m: Manager, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (m.data_dir / "workspaces" / "admin" / name / "data" / "User" / "settings.json").read_text()
    )
    return data


def test_templates_are_listed_and_used(prov: Manager) -> None:
    with prov.api() as api:
        listed = api.get("/templates").json()
        assert [t["name"] for t in listed] == ["empty", "Python starter"]
        assert listed[1]["tab"] == "Starters" and listed[1]["extension_groups"] == ["python"]
        r = api.post(
            "/workspaces", json={"name": "from-template", "template": "Python starter", "extension_groups": ["web"]}
        )
        assert r.status_code == 201, r.text
        assert r.json()["extension_groups"] == ["python", "web"]
        bad = api.post("/workspaces", json={"name": "nope", "template": "No such"})
        assert bad.status_code == 422 and "Python starter" in bad.json()["error"]["message"]
    prov.wait_status("from-template", "running")
    files = files_of(prov, "from-template")
    assert (files / "src" / "app.py").read_text() == "print('hello')\n"
    settings = user_settings(prov, "from-template")
    # Groups in order: web's tabSize wins over python's; the base defaults are there too.
    assert settings["python.analysis.typeCheckingMode"] == "strict" and settings["editor.tabSize"] == 2
    assert settings["telemetry.telemetryLevel"] == "off"
    assert (
        "provisioning: clone"
        in (prov.data_dir / "workspaces" / "admin" / "from-template" / "logs" / "engine.log").read_text()
    )


def test_git_url_attacks_are_refused_by_the_api(prov: Manager) -> None:
    with prov.api() as api:
        for i, url in enumerate(ATTACK_URLS):
            r = api.post("/workspaces", json={"name": f"attack{i}", "git_url": url})
            assert r.status_code == 422, (url, r.text)
        assert not [w for w in api.get("/workspaces").json() if w["name"].startswith("attack")]
    assert not Path("/tmp/pwned").exists()


def test_failed_clone_can_be_retried(prov: Manager, repos: Path) -> None:
    url = f"file://{repos}/later.git"
    with prov.api() as api:
        assert api.post("/workspaces", json={"name": "later", "git_url": url}).status_code == 201
        failed = prov.wait_status("later", "failed")
        assert "git clone of" in failed["error"] and "later.git" in failed["error"]
        refused = api.post("/workspaces/later/start")
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "not_provisioned"
        make_repo(repos / "later.git", {"notes.txt": "arrived later\n"})
        assert api.post("/workspaces/later/retry-provision").status_code == 202
        prov.wait_status("later", "running")
        assert api.post("/workspaces/later/retry-provision").status_code == 409
    assert (files_of(prov, "later") / "notes.txt").read_text() == "arrived later\n"


def test_clone_over_https_from_git_http_backend(prov: Manager, repos: Path, tmp_path: Path) -> None:
    token = "tok-" + os.urandom(8).hex()
    with peer(
        [sys.executable, "-m", "tests.peers.git_https", str(repos), str(tmp_path / "cert"), token],
        cwd=Path(__file__).parent.parent,
    ) as ready:
        port = int(ready.split()[1])
        url = f"https://127.0.0.1:{port}/starter.git"
        cert = tmp_path / "cert" / CERT_NAME
        # Only what the admin gives engines and clones (engine_env) reaches git, never the manager's own environment.
        manager = start_manager(
            tmp_path / "data", extra_env={"DEVYARD_ENGINE_ENV": json.dumps({"GIT_SSL_CAINFO": str(cert)})}
        )
        try:
            with manager.api() as api:
                # Without the owner's GIT_TOKEN secret the server refuses, and the workspace says so.
                assert api.post("/workspaces", json={"name": "no-token", "git_url": url}).status_code == 201
                failed = manager.wait_status("no-token", "failed")
                assert "git clone of" in failed["error"]
                assert api.put("/secrets/GIT_TOKEN", json={"value": token}).status_code == 201
                assert api.post("/workspaces", json={"name": "https-clone", "git_url": url}).status_code == 201
            manager.wait_status("https-clone", "running")
            assert (files_of(manager, "https-clone") / "README.md").read_text() == "# starter\n"
            assert (files_of(manager, "https-clone") / ".git" / "shallow").exists()  # --depth 1
            git_config = (files_of(manager, "https-clone") / ".git" / "config").read_text()
            logs = (
                manager.log
                + (manager.data_dir / "workspaces" / "admin" / "https-clone" / "logs" / "engine.log").read_text()
            )
            assert token not in git_config and token not in logs
        finally:
            manager.stop()


def upload(m: Manager, name: str, content: bytes, filename: str = "a.tar.gz", **fields: str) -> Any:
    with m.api() as api:
        return api.post("/workspaces/upload", data={"name": name, **fields}, files={"archive": (filename, content)})


def test_archive_upload_creates_a_workspace(prov: Manager, tmp_path: Path) -> None:
    body = tar_bytes(
        [entry("project/main.py"), entry("project/data", tarfile.DIRTYPE)], {"project/main.py": b"print('up')\n"}
    )
    r = upload(prov, "uploaded", body, extension_groups="web")
    assert r.status_code == 201, r.text
    assert r.json()["extension_groups"] == ["web"]
    prov.wait_status("uploaded", "running")
    assert (files_of(prov, "uploaded") / "project" / "main.py").read_text() == "print('up')\n"
    assert not list((prov.data_dir / "uploads").iterdir())
    # The CLI streams a file from disk the same way.
    z = tmp_path / "site.zip"
    z.write_bytes(zip_bytes({"index.html": b"<h1>hi</h1>"}))
    out = prov.cli("ws", "create", "cli-upload", "--archive", str(z))
    assert out.returncode == 0, out.stderr
    assert (files_of(prov, "cli-upload") / "index.html").read_text() == "<h1>hi</h1>"
    missing = prov.cli("ws", "create", "cli-missing", "--archive", str(tmp_path / "nope.zip"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr and "Traceback" not in missing.stderr


@pytest.mark.parametrize("attack", sorted(ARCHIVE_ATTACKS))
def test_archive_attacks_are_refused_by_the_api(prov: Manager, attack: str) -> None:
    name = "x" + str(sorted(ARCHIVE_ATTACKS).index(attack))
    r = upload(prov, name, ARCHIVE_ATTACKS[attack]())
    assert r.status_code in (413, 422), r.text
    assert r.json()["error"]["message"]
    with prov.api() as api:
        assert api.get(f"/workspaces/{name}").status_code == 404
    assert not list((prov.data_dir / "uploads").iterdir())
    assert not (prov.data_dir / "workspaces" / "admin" / name).exists()
    for outside in (
        prov.data_dir / "escaped.txt",
        prov.data_dir.parent / "escaped.txt",
        Path("/tmp/devyard-escaped.txt"),
    ):
        assert not outside.exists()


def test_upload_limits_and_bad_forms(prov: Manager) -> None:
    big = upload(prov, "big", os.urandom(9 << 20))
    assert big.status_code == 413 and "8 MB" in big.json()["error"]["message"]
    assert not list((prov.data_dir / "uploads").iterdir())
    bad_name = upload(prov, "Bad Name", zip_bytes({"a": b"b"}))
    assert bad_name.status_code == 422 and "name" in bad_name.json()["error"]["message"]
    with prov.api() as api:
        no_file = api.post("/workspaces/upload", data={"name": "nofile"}, files={"other": ("x", b"y")})
        assert no_file.status_code == 422 and no_file.json()["error"]["code"] == "archive_missing"
        not_multipart = api.post("/workspaces/upload", content=b"raw")
        assert not_multipart.status_code == 422
        taken = upload(prov, "uploaded", zip_bytes({"a": b"b"}))
        assert taken.status_code == 409
    assert not list((prov.data_dir / "uploads").iterdir())


def test_progress_is_reported_while_provisioning(prov: Manager, repos: Path, tmp_path: Path) -> None:
    make_repo(repos / "bigger.git", {f"dir{i}/file{j}.txt": f"{i}-{j}\n" * 50 for i in range(30) for j in range(30)})
    # The provisioning code itself, reporting to a recorder.
    seen: list[tuple[str, int, int]] = []
    spec = WorkspaceSpec(uid="u1", owner="o", name="n", root=tmp_path / "d" / "workspaces" / "o" / "n")
    settings = load_settings(data_dir=tmp_path / "d", git_file_roots=[repos])
    settings.data_dir.mkdir()
    plan = provision.Plan(groups=[], git_url=f"file://{repos}/bigger.git")
    provision.provision(spec, plan, settings, lambda step, current, total: seen.append((step, current, total)))
    steps = [s for s, _, _ in seen]
    assert steps[0] == "folders" and steps[-1] == "settings" and "clone" in steps
    received = [(c, t) for s, c, t in seen if s == "clone: receiving objects"]
    assert received and received[-1][0] == received[-1][1] > 900
    # Through the manager: the API shows progress while provisioning, the log stream has the steps.
    shown: list[dict[str, Any]] = []
    with prov.api() as api:
        assert (
            api.post("/workspaces", json={"name": "progress", "git_url": f"file://{repos}/bigger.git"}).status_code
            == 201
        )

        def settled() -> bool:
            ws = api.get("/workspaces/progress").json()
            if ws.get("progress"):
                shown.append(ws["progress"])
            return ws["status"] in ("running", "failed")

        wait_for(settled, 120, "the workspace to settle", interval=0.02)
    assert all(set(p) == {"step", "current", "total"} for p in shown)
    log = (prov.data_dir / "workspaces" / "admin" / "progress" / "logs" / "engine.log").read_text()
    assert (
        "provisioning: folders 1/3" in log
        and "provisioning: clone: receiving objects" in log
        and "provisioning done" in log
    )
    assert (files_of(prov, "progress") / "dir29" / "file29.txt").exists()
