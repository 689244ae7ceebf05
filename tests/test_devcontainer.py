"""A repository's devcontainer.json, read as repositories write it, against a real manager and engine.

Repositories are made by the tests and cloned through the existing git path. The workspace takes
the file's extensions (under the allow-list) and settings, its variables reach the engine and its
terminals (the owner's secrets win), postCreateCommand runs once as the workspace's account in
its sandbox, postStartCommand at every start, forwardPorts are listed with their labels; the
image cannot apply on the local backend, and that and every unsupported key are said once.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devyard import osaccounts as accounts
from devyard.engine import install
from devyard.errors import ProvisionError
from devyard.provision import devcontainer
from tests.support import Manager, make_repo, passable_dir, start_manager, wait_for
from tests.vsix import make_vsix

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="per-user OS accounts need the manager to run as root")

# As the devcontainers/templates write theirs: comments, trailing commas, features, a remoteUser.
DEVCONTAINER = """// For format details, see https://aka.ms/devcontainer.json. For config options, see the
// README at: https://github.com/devcontainers/templates/tree/main/src/python
{
\t"name": "Python 3",
\t// Or use a Dockerfile or Docker Compose file. More info: https://containers.dev/guide/dockerfile
\t"image": "mcr.microsoft.com/devcontainers/python:1-3.12-bookworm",

\t// Features to add to the dev container. More info: https://containers.dev/features.
\t"features": {
\t\t"ghcr.io/devcontainers/features/node:1": {}
\t},

\t// Use 'forwardPorts' to make a list of ports inside the container available locally.
\t"forwardPorts": [3000, "db:5432"],
\t"portsAttributes": {
\t\t"3000": {"label": "Web app", "onAutoForward": "notify"},
\t},

\t"containerEnv": {"GREETING": "hello from the devcontainer", "PORT": "3000"},
\t"remoteEnv": {"TOOLS_HOME": "${containerEnv:HOME}/tools"},

\t// Use 'postCreateCommand' to run commands after the container is created.
\t"postCreateCommand": "echo \\"created by $(id -un) in $(pwd) on $(hostname)\\" > created.txt",
\t"postStartCommand": ["sh", "-c", "echo \\"$GREETING|$TOOLS_HOME|$PORT\\" >> started.txt"],

\t// Configure tool-specific properties.
\t"customizations": {
\t\t"vscode": {
\t\t\t"extensions": ["devyardtest.hello", "evil.outside-the-allow-list"],
\t\t\t"settings": {"editor.tabSize": 3,},
\t\t},
\t\t"codespaces": {"openFiles": ["README.md"]},
\t},

\t// Uncomment to connect as root instead. More info: https://aka.ms/dev-containers-non-root.
\t"remoteUser": "vscode",
}
"""


def test_parse_takes_what_applies_and_lists_the_rest() -> None:
    import json5

    found = devcontainer.parse(json5.loads(DEVCONTAINER), ".devcontainer/devcontainer.json")
    assert found.name == "Python 3" and found.image == "mcr.microsoft.com/devcontainers/python:1-3.12-bookworm"
    assert found.extensions == ["devyardtest.hello", "evil.outside-the-allow-list"]
    assert found.settings == {"editor.tabSize": 3}
    assert found.env == {
        "GREETING": "hello from the devcontainer",
        "PORT": "3000",
        "TOOLS_HOME": "${containerEnv:HOME}/tools",
    }
    assert found.post_create == 'echo "created by $(id -un) in $(pwd) on $(hostname)" > created.txt'
    assert found.post_start == "sh -c 'echo \"$GREETING|$TOOLS_HOME|$PORT\" >> started.txt'"
    assert [(p.port, p.label) for p in found.ports] == [(3000, "Web app")]
    assert found.unsupported == [
        "features",
        "remoteUser",
        "customizations.codespaces",
        "portsAttributes.3000.onAutoForward",
        "forwardPorts db:5432",
    ]
    assert devcontainer.expand(found.env["TOOLS_HOME"], {"HOME": "/h"}) == "/h/tools"
    # An object of commands runs them side by side, and fails when one does.
    both = devcontainer.parse({"postCreateCommand": {"a": "true", "b": ["false"]}}).post_create
    assert both is not None
    assert subprocess.run(["sh", "-c", both]).returncode == 1
    assert subprocess.run(["sh", "-c", devcontainer.script({"a": "true", "b": ["true"]})]).returncode == 0
    # Variables devyard sets stay its own.
    kept = devcontainer.parse(
        {"containerEnv": {"HOME": "/elsewhere", "DEVYARD_X": "1", "A": "b", "LD_AUDIT": "/x.so", "gconv_path": "/x"}}
    )
    assert kept.env == {"A": "b"}
    assert kept.unsupported == [f"{k} (devyard sets it)" for k in ("HOME", "DEVYARD_X", "LD_AUDIT", "gconv_path")]


@pytest.mark.parametrize(
    "raw, message",
    [
        ([], "devcontainer.json: must be an object"),
        (
            {"customizations": {"vscode": {"extensions": "ms-python.python"}}},
            "customizations.vscode.extensions must be an array",
        ),
        ({"containerEnv": {"A": {"b": 1}}}, "containerEnv.A must be a string"),
        ({"postStartCommand": 42}, "postStartCommand must be a string, an array of strings or an object of commands"),
        ({"forwardPorts": [70000]}, "forwardPorts 70000 is not a port number"),
        ({"image": ["a"]}, "image must be a string"),
    ],
)
def test_a_wrong_value_is_one_clear_line(raw: object, message: str) -> None:
    with pytest.raises(ProvisionError) as exc:
        devcontainer.parse(raw)
    assert exc.value.message.endswith(message) and exc.value.code == "devcontainer_invalid"


def test_read_never_follows_a_planted_link(tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    secret = tmp_path / "elsewhere"
    secret.mkdir()
    (secret / "devcontainer.json").write_text('{"name": "not yours"}')
    (files / ".devcontainer").symlink_to(secret)
    with pytest.raises(ProvisionError) as exc:
        devcontainer.read(files)
    assert "cannot be read" in exc.value.message
    (files / ".devcontainer").unlink()
    assert devcontainer.read(files) is None
    (files / ".devcontainer.json").write_text("{/* JSONC */ 'name': 'second place',}")
    found = devcontainer.read(files)
    assert found is not None and (found.path, found.name) == (".devcontainer.json", "second place")


@pytest.fixture(scope="module")
def repos() -> Iterator[Path]:
    """A folder the workspace's account may pass through (its clone and extension installs run as it)."""
    with passable_dir("devyard-devcontainer-") as base:
        yield base


@pytest.fixture(scope="module")
def user() -> Iterator[str]:
    """A fresh user, whose workspaces run as a system account of their own, removed afterwards."""
    name = f"dc{secrets.token_hex(3)}"
    yield name
    account = accounts.lookup(name)
    if account:
        accounts.kill_processes(account, Path("/"))
        subprocess.run(["userdel", account.name], check=False, capture_output=True)


@pytest.fixture(scope="module")
def m(engine: install.Engine, repos: Path, user: str) -> Iterator[Manager]:
    mirror = repos / "vsix"
    mirror.mkdir()
    make_vsix(mirror, "devyardtest", "hello", "0.0.1")
    config = repos / "devyard.yaml"
    config.write_text(
        json.dumps(
            {
                "devyard": {
                    "git_file_roots": [str(repos)],
                    "extensions": {"gallery": "", "vsix_dir": str(mirror), "allow": ["devyardtest.*"]},
                    # The test's repositories are root's; the clones run as the workspace's account.
                    "engine_env": {
                        "GIT_CONFIG_COUNT": "1",
                        "GIT_CONFIG_KEY_0": "safe.directory",
                        "GIT_CONFIG_VALUE_0": "*",
                    },
                }
            }
        )
    )
    # As root: each user's engines (and their commands) run as their own account, in a sandbox.
    env = {"DEVYARD_OS_ACCOUNTS": "on", "DEVYARD_SANDBOX": "on"}
    with start_manager(repos / "data", extra_env=env, args=("--config", str(config))) as manager:
        manager.add_user(user)
        yield manager


def repository(path: Path, files: dict[str, str], user: str, executable: tuple[str, ...] = ()) -> Path:
    """A bare repository the user's account owns, as its own would be (git refuses to clone another's)."""
    made = make_repo(path, files, executable)
    accounts.chown_tree(made, accounts.ensure(user))
    return made


def log_of(m: Manager, name: str, user: str) -> list[str]:
    with m.api(user) as api:
        lines: list[str] = api.get(f"/workspaces/{name}/logs", params={"lines": 500}).json()["lines"]
        return lines


@as_root
def test_a_repository_devcontainer_shapes_its_workspace(m: Manager, repos: Path, user: str) -> None:
    repo = repository(repos / "app.git", {"README.md": "hi\n", ".devcontainer/devcontainer.json": DEVCONTAINER}, user)
    with m.api(user) as api:
        # The owner's secret beats the devcontainer's variable of the same name.
        assert api.put("/secrets/PORT", json={"value": "4000"}).status_code == 201
        assert api.post("/workspaces", json={"name": "devc", "git_url": f"file://{repo}"}).status_code == 201
    ws = m.wait_status("devc", "running", token=user, timeout=180)
    root = m.data_dir / "workspaces" / user / "devc"
    files = root / "files"
    account = accounts.lookup(user)
    assert account is not None

    # postCreateCommand ran once, as the workspace's account, in its folder, in its sandbox (its own host name).
    created = f"created by {account.name} in {files} on devc\n"
    assert (files / "created.txt").read_text() == created
    assert (files / "created.txt").stat().st_uid == account.uid
    # postStartCommand runs beside the engine, with the devcontainer's variables and the owner's secret over them.
    home = root / "home"
    wait_for(lambda: (files / "started.txt").exists(), 30, "postStartCommand to run")
    assert (files / "started.txt").read_text() == f"hello from the devcontainer|{home}/tools|4000\n"
    # Its extension is installed and its settings merged, like an extension group; the allow-list holds.
    assert any(p.name.startswith("devyardtest.hello-") for p in (root / "extensions").iterdir())
    assert json.loads((root / "data" / "User" / "settings.json").read_text())["editor.tabSize"] == 3
    assert "evil.outside-the-allow-list" in (ws["error"] or "")
    # Its ports are listed, with their labels, before anything listens.
    with m.api(user) as api:
        ports = api.get("/workspaces/devc/ports").json()
        assert [(p["port"], p["label"], p["listening"]) for p in ports] == [(3000, "Web app", False)]
        assert api.get("/workspaces/devc").json()["devcontainer"] == {
            "path": ".devcontainer/devcontainer.json",
            "image": "mcr.microsoft.com/devcontainers/python:1-3.12-bookworm",
            "image_used": False,
            "build": None,
            "built_image": None,
            "unsupported": [
                "features",
                "remoteUser",
                "customizations.codespaces",
                "portsAttributes.3000.onAutoForward",
                "forwardPorts db:5432",
            ],
        }
    # The log says what was taken, and once what cannot apply here; so does the workspace's page.
    lines = log_of(m, "devc", user)
    said = [line.removeprefix("--- devyard: ") for line in lines if line.startswith("--- devyard: devcontainer.json")]
    assert said[0].startswith(
        "devcontainer.json (.devcontainer/devcontainer.json): 2 extension(s), settings, variables"
    )
    assert (
        sum(
            "image mcr.microsoft.com/devcontainers/python:1-3.12-bookworm cannot apply on the local backend" in s
            for s in said
        )
        == 1
    )
    assert sum("not supported here, left out: features, remoteUser" in s for s in said) == 1
    page = httpx.get(m.url + "/workspaces/devc", headers={"authorization": f"Bearer {m.token(user)}"}).text
    assert "cannot apply on the local backend" in page and "Not supported here, left out: features" in page
    assert "Web app" in page

    # Every start runs postStartCommand again; postCreateCommand never again.
    with m.api(user) as api:
        assert api.post("/workspaces/devc/restart").status_code == 202
    m.wait_status("devc", "running", token=user)
    wait_for(lambda: len((files / "started.txt").read_text().splitlines()) == 2, 30, "postStartCommand at the restart")
    assert (files / "created.txt").read_text() == created


@as_root
def test_a_failing_post_create_command_fails_provisioning_with_a_retry(m: Manager, repos: Path, user: str) -> None:
    failing = '{"postCreateCommand": "echo boom-$((1 + 1)); exit 3"}'
    repo = repository(repos / "broken.git", {".devcontainer.json": failing}, user)
    with m.api(user) as api:
        assert api.post("/workspaces", json={"name": "broken", "git_url": f"file://{repo}"}).status_code == 201
        failed = m.wait_status("broken", "failed", token=user, timeout=120)
        assert failed["reason"] == "post_create_failed"
        assert failed["error"].startswith("devcontainer.json's postCreateCommand failed with exit status 3")
        assert any("boom-2" in line for line in log_of(m, "broken", user))
        # The repository is fixed; retry provisioning clones it again and runs the command again.
        work = repo.with_name(repo.name + "-work")
        (work / ".devcontainer.json").write_text('{"postCreateCommand": "echo fixed > fixed.txt"}')
        git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@example.com"]
        subprocess.run([*git, "commit", "-qam", "fix"], check=True)
        subprocess.run(["chown", "-R", "root:root", str(repo)], check=True)  # root pushes to its own
        subprocess.run([*git, "push", "-q", str(repo), "main"], check=True)
        accounts.chown_tree(repo, accounts.ensure(user))
        assert api.post("/workspaces/broken/retry-provision").status_code == 202
    m.wait_status("broken", "running", token=user, timeout=120)
    assert (m.data_dir / "workspaces" / user / "broken" / "files" / "fixed.txt").read_text() == "fixed\n"


@as_root
def test_a_devcontainer_cannot_choose_what_root_runs(m: Manager, repos: Path, user: str) -> None:
    """The attack: containerEnv's PATH aimed at root, which starts the sandbox (`bwrap`) with the engine's variables."""
    marker = repos / "root-ran-the-tenants-bwrap"  # in a folder of root's, which the tenant cannot write
    files = m.data_dir / "workspaces" / user / "evil" / "files"
    planted = f"#!/bin/sh\nid -u > {marker}\nexit 1\n"
    spec = {
        "containerEnv": {"PATH": f"{files}/bin:/usr/bin:/bin", "LD_PRELOAD": f"{files}/evil.so"},
        "postCreateCommand": "echo made > made.txt",
    }
    repo = repository(
        repos / "evil.git", {"bin/bwrap": planted, ".devcontainer.json": json.dumps(spec)}, user, ("bin/bwrap",)
    )
    with m.api(user) as api:
        assert api.post("/workspaces", json={"name": "evil", "git_url": f"file://{repo}"}).status_code == 201
        ws = m.wait_status("evil", "running", token=user, timeout=180)
    assert not marker.exists(), "root ran the tenant's program"
    assert (files / "made.txt").read_text() == "made\n"
    assert {"PATH (devyard sets it)", "LD_PRELOAD (devyard sets it)"} <= set(ws["devcontainer"]["unsupported"])


def test_build_is_read_with_its_paths_inside_the_files() -> None:
    found = devcontainer.parse(
        {"build": {"dockerfile": "Dockerfile", "context": "..", "args": {"V": 3}, "target": "dev", "cacheFrom": "x"}},
        ".devcontainer/devcontainer.json",
    )
    assert found.build == devcontainer.Build(".devcontainer/Dockerfile", ".", {"V": "3"}, "dev")
    assert found.unsupported == ["build.cacheFrom"]
    # The older top-level form, next to a .devcontainer.json at the top.
    legacy = devcontainer.parse({"dockerFile": "tools/Dockerfile", "context": "tools"}, ".devcontainer.json")
    assert legacy.build == devcontainer.Build("tools/Dockerfile", "tools")
    assert devcontainer.DevContainer.from_json(found.to_json()) == found
    for wrong, said in (
        ({"build": {"dockerfile": "../../etc/Dockerfile"}}, "build.dockerfile '../../etc/Dockerfile' lies outside"),
        ({"build": {"dockerfile": "D", "context": "/"}}, "build.context '/' lies outside the workspace's files"),
        ({"build": {"context": "."}}, "build.dockerfile is needed to build an image"),
        ({"build": {"dockerfile": "D", "args": {"A": []}}}, "args.A must be a string"),
    ):
        with pytest.raises(ProvisionError, match=re.escape(said)):
            devcontainer.parse(wrong, ".devcontainer/devcontainer.json", builds=True)
    # Where no image is built, a `build` devyard could not use is a key left out, not a failed provisioning.
    left = devcontainer.parse({"build": {"dockerfile": "/etc/D"}}, ".devcontainer/devcontainer.json")
    assert left.build is None and left.unsupported == [
        "build (build.dockerfile '/etc/D' lies outside the workspace's files)"
    ]


def test_a_build_context_never_follows_a_planted_link(tmp_path: Path) -> None:
    import tarfile

    from devyard.backends.kubernetes.build import write_context
    from devyard.errors import Invalid

    files = tmp_path / "files"
    (files / ".devcontainer").mkdir(parents=True)
    (files / ".devcontainer" / "Dockerfile").write_text("FROM scratch\n")
    (files / "app.py").write_text("print('hi')\n")
    secret = tmp_path / "root-only"
    secret.write_text("the manager's secret\n")
    (files / "planted").symlink_to(secret)  # a link in the context: kept a link, never read through
    build = devcontainer.Build(".devcontainer/Dockerfile", ".")
    out = tmp_path / "context.tar.gz"
    write_context(files, build, out, 1 << 20)
    with tarfile.open(out) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert tar.extractfile("Dockerfile").read() == b"FROM scratch\n"  # type: ignore[union-attr]
        assert members["context/planted"].issym() and members["context/planted"].linkname == str(secret)
        assert b"the manager's secret" not in b"".join(
            tar.extractfile(m).read()
            for m in members.values()
            if m.isfile()  # type: ignore[union-attr]
        )
    # A Dockerfile named through a planted folder link is refused, not read.
    (files / "tools").symlink_to(tmp_path)
    with pytest.raises(Invalid, match="tools/root-only"):  # ENOTDIR: O_NOFOLLOW met the link
        write_context(files, devcontainer.Build("tools/root-only", "."), out, 1 << 20)
    with pytest.raises(Invalid, match="is too large"):
        write_context(files, build, out, 10)


def test_an_image_may_never_name_the_built_images_repository(tmp_path: Path) -> None:
    from devyard.config import Settings

    build = {"enabled": True, "repository": "registry.example.com/devyard/builds", "push_secret": "push"}
    settings = Settings(data_dir=tmp_path, backend="kubernetes", kubernetes={"devcontainer_build": build})
    assert devcontainer.image_allowed("ghcr.io/example/toolchain:1", settings)
    for other in ("registry.example.com/devyard/builds:0123456789ab", "Registry.Example.com/devyard/builds@sha256:00"):
        assert not devcontainer.image_allowed(
            other, settings
        )  # another workspace's build, pulled with the admin's keys
