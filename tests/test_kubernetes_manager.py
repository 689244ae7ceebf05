"""A real manager on the kubernetes backend: kmock's API emulator, and a node (tests/kube.py) running each pod's real engine.

Everything above the backend works unchanged: provisioning (a git clone) reaches the pod's volume
through the init container's fetch, the owner's secrets reach its environment and home, the
gateway reaches the engine over TCP (HTTP and WebSocket), stop keeps the volume, a restarted
manager adopts the running pod, OOMKilled fails the workspace with out_of_memory, delete removes
what it should.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from websockets.sync.client import connect

from devyard.engine.install import Engine
from tests.browser import chromium, login, open_terminal, run_in_terminal, shot
from tests.kube import KubeApi, Node, ended
from tests.sshclient import developer
from tests.support import ADMIN_PASSWORD, free_port, make_repo, peer, start_manager, wait_for

ECHO = Path(__file__).parent / "peers" / "echo_server.py"


@pytest.fixture(scope="module")
def cluster(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KubeApi, Node, Path]]:
    folder = tmp_path_factory.mktemp("k8s")
    with KubeApi(folder) as api, Node(api, engine, folder / "node") as node:
        logs = re.compile(r"/api/v1/namespaces/devyard/pods/[^/]+/log")
        api.emulator["get", logs] << node.log_answer
        yield api, node, folder


def manager_env(api: KubeApi, folder: Path, port: int) -> dict[str, str]:
    return {
        "DEVYARD_BACKEND": "kubernetes",
        "DEVYARD_KUBERNETES__KUBECONFIG": str(api.kubeconfig),
        "DEVYARD_KUBERNETES__ENGINE_PORT": str(port),
        "DEVYARD_KUBERNETES__START_TIMEOUT_S": "120",
        "DEVYARD_GIT_FILE_ROOTS": f'["{folder}"]',
        "DEVYARD_SUPERVISE_INTERVAL_S": "0.2",
    }


def find_pod(api: KubeApi, workspace: str) -> dict[str, Any]:
    found = [p for p in api.list("pods") if p["metadata"]["labels"].get("devyard.io/workspace") == workspace]
    assert len(found) == 1, [p["metadata"]["name"] for p in found]
    return found[0]


def test_workspace_lifecycle_on_kubernetes(cluster: tuple[KubeApi, Node, Path], tmp_path: Path) -> None:
    api, node, folder = cluster
    repo = make_repo(folder / "repos" / "app.git", {"README.md": "hello from git\n"})
    env = manager_env(api, folder, free_port())
    m = start_manager(tmp_path / "data", env)
    try:
        assert m.cli("secret", "set", "API_TOKEN", input="s3cret\n").returncode == 0
        assert m.cli("secret", "set", "CFG", "--file", ".tool.cfg", input="[tool]\nkey = 1\n").returncode == 0
        with m.api() as client:
            r = client.post("/workspaces", json={"name": "app", "git_url": f"file://{repo}"})
            assert r.status_code == 201, r.text
        m.wait_status("app", "running", timeout=180)
        pod = find_pod(api, "app")
        name = pod["metadata"]["name"]
        volume = node.root / "volumes" / name
        # Provisioning's output reached the volume through the init container's fetch, then left the manager.
        assert (volume / "files" / "README.md").read_text() == "hello from git\n"
        assert '"telemetry.telemetryLevel": "off"' in (volume / "data" / "User" / "settings.json").read_text()
        assert not (m.data_dir / "workspaces" / "admin" / "app" / "files").exists()
        cfg = volume / "home" / ".tool.cfg"
        assert cfg.read_text() == "[tool]\nkey = 1\n" and cfg.stat().st_mode & 0o777 == 0o600
        engine = psutil.Process(node.running[name].pid)
        assert engine.environ()["API_TOKEN"] == "s3cret"
        assert (volume / "home" / ".config" / "code-server" / "config.yaml").read_text() == "auth: none\n"

        # The gateway reaches the engine over TCP: the workbench, and a WebSocket through its port forwarding.
        with (
            httpx.Client(base_url=m.url, timeout=60) as browser,
            peer([sys.executable, str(ECHO), str(port := free_port())]),
        ):
            assert (
                browser.post("/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}).status_code
                == 200
            )
            r = browser.get("/w/admin/app/")
            assert r.status_code == 302 and r.headers["location"].startswith("./?folder=")
            page = browser.get("/w/admin/app/" + r.headers["location"][2:])
            assert page.status_code == 200 and "vscode" in page.text.lower()
            cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
            url = m.url.replace("http://", "ws://") + f"/w/admin/app/proxy/{port}/ws"
            with connect(url, origin=m.url, additional_headers={"cookie": cookie}) as ws:
                ws.send("over the cluster network")
                assert ws.recv(timeout=10) == "over the cluster network"

        with m.api() as client:
            lines = client.get("/workspaces/app/logs", params={"lines": 200}).json()["lines"]
            assert any("provisioning done" in line for line in lines) and any(
                "HTTP server listening" in line for line in lines
            )
            # The live log follows the pod's log: a line the engine writes now arrives.
            with client.stream("GET", "/workspaces/app/logs/stream", params={"lines": 0}) as stream:
                said = threading.Event()

                def engine_says() -> None:  # until heard: the manager starts following a moment after the answer's head
                    while not said.wait(0.3):
                        with (node.root / f"{name}.log").open("a") as out:
                            out.write("the engine says hello\n")

                threading.Thread(target=engine_says, daemon=True).start()
                try:
                    got = next(line for line in stream.iter_lines() if line.startswith("data: "))
                finally:
                    said.set()
                assert got == "data: the engine says hello"
            assert client.post("/workspaces/app/backup").json()["error"]["code"] == "not_on_this_backend"

        # Stop deletes the pod and keeps the volume; start makes a new pod on the same volume.
        assert m.cli("ws", "stop", "app").returncode == 0
        m.wait_status("app", "stopped")
        assert name not in api.names("pods") and name in api.names("persistentvolumeclaims")
        wait_for(lambda: not engine.is_running(), 30, "the stopped pod's engine to end")
        assert m.cli("ws", "start", "app").returncode == 0
        m.wait_status("app", "running", timeout=120)
        assert (volume / "files" / "README.md").exists()
        runs = node.runs

        # A restarted manager adopts the running pod: same engine, still reachable.
        m.stop()
        m = start_manager(tmp_path / "data", env)
        assert m.wait_status("app", "running")["error"] is None
        assert node.runs == runs
        with httpx.Client(base_url=m.url, timeout=60) as browser:
            browser.post("/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
            assert browser.get("/w/admin/app/").status_code == 302

        # The kernel kills the engine for its memory limit: the workspace fails with out_of_memory, and is not restarted.
        api.set_status(name, ended(137, "OOMKilled"))
        failed = m.wait_status("app", "failed", timeout=30)
        assert failed["reason"] == "out_of_memory" and "ran out of memory" in failed["error"]
        assert m.cli("ws", "start", "app").returncode == 0
        m.wait_status("app", "running", timeout=120)

        # Delete keeping the files: the volume stays, everything else goes.
        assert m.cli("ws", "rm", "app", "--keep-files").returncode == 0
        assert name in api.names("persistentvolumeclaims")
        assert not {name, name + "-env", name + "-init"} & (
            api.names("pods") | api.names("services") | api.names("secrets")
        )
        assert name not in api.names("networkpolicies", "networking.k8s.io/v1")
    finally:
        m.stop()


def test_workbench_and_terminal_in_chromium_on_kubernetes(cluster: tuple[KubeApi, Node, Path], tmp_path: Path) -> None:
    """What a user sees: the dashboard, the workbench through the gateway over TCP, a terminal in the pod with their secret."""
    api, node, folder = cluster
    m = start_manager(tmp_path / "data", manager_env(api, folder, free_port()))
    try:
        assert m.cli("secret", "set", "GREETING", input="hello from a secret\n").returncode == 0
        with m.api() as client:
            assert client.post("/workspaces", json={"name": "web"}).status_code == 201
        m.wait_status("web", "running", timeout=180)
        volume = node.root / "volumes" / find_pod(api, "web")["metadata"]["name"]
        with chromium(tmp_path / "profile") as browser:
            page = browser.new_page()
            login(page, m.url, "admin", ADMIN_PASSWORD)
            page.goto(m.url + "/workspaces/web")
            page.wait_for_selector("#no-backup")
            assert page.locator("#backup").count() == 0  # no button that could only fail
            shot(page, "kubernetes-detail")
            open_terminal(page, m.url + "/w/admin/web/")
            run_in_terminal(page, 'echo "$GREETING" > from-the-terminal.txt')
            wait_for(
                lambda: (volume / "files" / "from-the-terminal.txt").exists(), 30, "the terminal's file in the volume"
            )
            shot(page, "kubernetes-workbench")
        assert (volume / "files" / "from-the-terminal.txt").read_text() == "hello from a secret\n"
    finally:
        m.stop()


DEVCONTAINER = """{
  // The team's toolchain image; devyard brings its own engine into it.
  "image": "ghcr.io/example/toolchain:2026.11",
  "containerEnv": {"GREETING": "hello from the image", "API_TOKEN": "from the repository"},
  "remoteEnv": {"TOOLS": "${containerEnv:HOME}/tools"},
  "postCreateCommand": "echo created > created.txt",
  "postStartCommand": "echo \\"started $GREETING\\" >> started.txt",
  "forwardPorts": [8888],
  "portsAttributes": {"8888": {"label": "Notebook"}},
  "build": {"dockerfile": "Dockerfile"},
}
"""


def test_a_devcontainer_image_runs_the_workspace_with_devyards_engine(
    cluster: tuple[KubeApi, Node, Path], tmp_path: Path
) -> None:
    api, node, folder = cluster
    repo = make_repo(folder / "repos" / "tooled.git", {".devcontainer/devcontainer.json": DEVCONTAINER})
    m = start_manager(tmp_path / "data", manager_env(api, folder, free_port()))
    try:
        assert m.cli("secret", "set", "API_TOKEN", input="s3cret\n").returncode == 0
        with m.api() as client:
            assert client.post("/workspaces", json={"name": "tooled", "git_url": f"file://{repo}"}).status_code == 201
        m.wait_status("tooled", "running", timeout=180)
        pod = find_pod(api, "tooled")
        spec = pod["spec"]
        engine = spec["containers"][0]
        # The repository's image runs the workspace; an init container copies the engine into it from the engine image.
        assert engine["image"] == "ghcr.io/example/toolchain:2026.11"
        prepare, copy = spec["initContainers"]
        assert (
            copy["name"] == "engine" and copy["image"] == prepare["image"] == "docker.io/codercom/code-server:4.139.1"
        )
        assert {"name": "DEVYARD_ENGINE_HOME", "value": "/usr/lib/code-server"} in copy["env"]
        assert {"name": "engine", "mountPath": "/opt/devyard-engine", "readOnly": True} in engine["volumeMounts"]
        assert engine["command"][:3] == ["/opt/devyard-engine/dumb-init", "sh", "-c"]
        assert engine["command"][4:] == ["devyard-engine", "/opt/devyard-engine/code-server/bin/code-server"]
        env = {e["name"]: e["value"] for e in engine["env"]}
        assert env["GREETING"] == "hello from the image" and env["TOOLS"] == "$(HOME)/tools"
        assert "API_TOKEN" not in env  # the owner's secret (envFrom) wins: env would beat it
        # The commands ran in the pod: postCreateCommand once, postStartCommand beside the engine.
        volume = node.root / "volumes" / pod["metadata"]["name"]
        assert (volume / "files" / "created.txt").read_text() == "created\n"
        wait_for(lambda: (volume / "files" / "started.txt").exists(), 30, "postStartCommand to run")
        assert (volume / "files" / "started.txt").read_text() == "started hello from the image\n"
        running = psutil.Process(node.running[pod["metadata"]["name"]].pid)
        assert running.environ()["API_TOKEN"] == "s3cret"
        with m.api() as client:
            ws = client.get("/workspaces/tooled").json()
            assert ws["devcontainer"]["image_used"] is True and ws["devcontainer"]["unsupported"] == []
            # Builds are off by default: its `build` is named, and said not to be built.
            assert (
                ws["devcontainer"]["build"] == ".devcontainer/Dockerfile" and ws["devcontainer"]["built_image"] is None
            )
            ports = client.get("/workspaces/tooled/ports").json()
            assert [(p["port"], p["label"]) for p in ports] == [(8888, "Notebook")]
            lines = client.get("/workspaces/tooled/logs", params={"lines": 300}).json()["lines"]
            assert any("image ghcr.io/example/toolchain:2026.11" in line for line in lines)
            assert any("build .devcontainer/Dockerfile is not built" in line for line in lines)
        # Started again, the pod runs postStartCommand again and postCreateCommand never again.
        assert m.cli("ws", "restart", "tooled").returncode == 0
        m.wait_status("tooled", "running", timeout=120)
        wait_for(lambda: len((volume / "files" / "started.txt").read_text().splitlines()) == 2, 30, "a second start")
        assert (volume / "files" / "created.txt").read_text() == "created\n"
        assert m.cli("ws", "rm", "tooled").returncode == 0
    finally:
        m.stop()


BUILT = """{
  // A Dockerfile beside it, with the repository as its context, as the devcontainers templates do.
  "build": {"dockerfile": "Dockerfile", "context": "..", "args": {"GREETING": "hello from the build"}},
  "containerEnv": {"TEAM": "built"},
}
"""
# busybox stands in for a base image: nothing can be pulled here. The RUN line is the tenant's code, run by the build.
DOCKERFILE = """FROM scratch
ARG GREETING=unset
COPY busybox /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox mkdir -p /opt/team && echo \\"$GREETING\\" > /opt/team/greeting"]
COPY . /opt/team/src/
"""
BROKEN = DOCKERFILE.replace("&& echo", "&& echo broken-$((40 + 2)) && exit 3 && echo")
BUILD_TOOLS = ("/usr/bin/buildah", "/usr/bin/skopeo", "/usr/bin/docker-registry", "/bin/busybox")


@pytest.fixture()
def registry(tmp_path: Path) -> Iterator[str]:
    """A real registry (Debian's docker-registry, the CNCF distribution) on loopback, plain HTTP."""
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'blobs'}\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/v2/"), 20, "the registry")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.skipif(
    not all(Path(t).exists() for t in BUILD_TOOLS) or os.geteuid() != 0,
    reason="the node builds with buildah and skopeo, as root (as the build container does)",
)
def test_a_devcontainer_build_is_built_in_the_cluster_and_runs_the_workspace(
    cluster: tuple[KubeApi, Node, Path], registry: str, tmp_path: Path
) -> None:
    api, node, folder = cluster
    repo = make_repo(
        folder / "repos" / "built.git",
        {
            ".devcontainer/devcontainer.json": BUILT,
            ".devcontainer/Dockerfile": BROKEN,
            "busybox": Path("/bin/busybox").read_bytes(),
        },
        executable=("busybox",),
    )
    api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": "registry-push", "namespace": "devyard"},
            "stringData": {".dockerconfigjson": json.dumps({"auths": {registry: {"auth": "cHVzaGVyOmh1bnRlcjI="}}})},
        }
    )
    env = manager_env(api, folder, free_port())
    env["DEVYARD_KUBERNETES__DEVCONTAINER_BUILD"] = (
        f'{{"enabled": true, "repository": "{registry}/devyard/builds", "push_secret": "registry-push", '
        '"registry_tls_verify": false}'
    )
    m = start_manager(tmp_path / "data", env)
    try:
        # A cluster without user namespaces drops `hostUsers: false` silently: no build runs as the node's root.
        api.emulator.drops_host_users = True
        try:
            with m.api() as client:
                created = client.post("/workspaces", json={"name": "built", "git_url": f"file://{repo}"})
                assert created.status_code == 201
            failed = m.wait_status("built", "failed", timeout=180)
        finally:
            api.emulator.drops_host_users = False
        assert (
            failed["reason"] == "image_build_failed" and "dropped the build pod's `hostUsers: false`" in failed["error"]
        )
        wait_for(lambda: not [p for p in api.names("pods") if p.endswith("-build")], 30, "the refused pod to go")
        # The tenant's RUN line fails: provisioning fails naming the step, with the build's output in the log.
        with m.api() as client:
            assert client.post("/workspaces/built/retry-provision").status_code == 202
        failed = m.wait_status("built", "failed", timeout=180)
        assert failed["reason"] == "image_build_failed", failed
        assert failed["error"].startswith("the devcontainer image did not build: step build failed: exit status")
        with m.api() as client:
            lines = client.get("/workspaces/built/logs", params={"lines": 500}).json()["lines"]
        assert any("[build] broken-42" in line for line in lines), lines
        # The build pod: the tenant's code runs in `build`, which holds no credential; only `push` mounts the push Secret.
        pod = next(p for p in node.built if p["spec"].get("hostUsers") is False)  # not the refused one
        assert pod["metadata"]["name"].endswith("-build") and "devyard.io/uid" not in pod["metadata"]["labels"]
        spec = pod["spec"]
        assert spec["automountServiceAccountToken"] is False and spec["hostUsers"] is False
        (fetch, build), (push,) = spec["initContainers"], spec["containers"]
        assert build["securityContext"]["appArmorProfile"] == {"type": "Unconfined"}
        volumes = {v["name"]: v for v in spec["volumes"]}
        secrets = {n for n, v in volumes.items() if "secret" in v}
        assert {m["name"] for m in build["volumeMounts"]} & secrets == set() and "envFrom" not in build
        assert {m["name"] for m in fetch["volumeMounts"]} & secrets == {"token"}
        assert volumes["push"]["secret"]["secretName"] == "registry-push"
        assert {m["name"] for m in push["volumeMounts"]} & secrets == {"push"}
        assert "--build-arg=GREETING=hello from the build" in build["command"]
        assert pod["metadata"]["name"] not in api.names("pods") | api.names("secrets")  # cleaned up
        assert pod["metadata"]["name"] not in api.names("networkpolicies", "networking.k8s.io/v1")
        # The repository is fixed; retry provisioning builds again, pushes, and the workspace runs in its image.
        # The attack: a link in the repository to a file only the manager can read, and a Dockerfile that
        # copies the whole context into the image. Packed by following links, the file would be in the image.
        secret = tmp_path / "manager-only.txt"
        secret.write_text("the manager's own secret\n")
        secret.chmod(0o600)
        work = repo.with_name(repo.name + "-work")
        (work / ".devcontainer" / "Dockerfile").write_text(DOCKERFILE)
        (work / "leak").symlink_to(secret)
        git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@example.com"]
        subprocess.run([*git, "add", "leak"], check=True)
        subprocess.run([*git, "commit", "-qam", "fix"], check=True)
        subprocess.run([*git, "push", "-q", str(repo), "main"], check=True)
        with m.api() as client:
            assert client.post("/workspaces/built/retry-provision").status_code == 202
        m.wait_status("built", "running", timeout=240)
        with m.api() as client:
            ws = client.get("/workspaces/built").json()
            lines = client.get("/workspaces/built/logs", params={"lines": 500}).json()["lines"]
        image = ws["devcontainer"]["built_image"]
        assert re.fullmatch(rf"{registry}/devyard/builds@sha256:[0-9a-f]{{64}}", image), image
        assert ws["devcontainer"]["image_used"] is True and ws["devcontainer"]["build"] == ".devcontainer/Dockerfile"
        assert any(f"built and pushed {image}" in line for line in lines)
        engine = find_pod(api, "built")["spec"]["containers"][0]
        assert engine["image"] == image  # by digest: a tag moved later changes nothing
        assert {"name": "TEAM", "value": "built"} in engine["env"]
        # The registry holds what the tenant's RUN line made, under that digest.
        copied = tmp_path / "pulled"
        subprocess.run(
            ["skopeo", "copy", "--src-tls-verify=false", f"docker://{image}", f"dir:{copied}"],
            check=True,
            capture_output=True,
        )
        manifest = json.loads((copied / "manifest.json").read_text())
        made, everything, leak = [], b"", None
        for layer in manifest["layers"]:
            with tarfile.open(copied / layer["digest"].removeprefix("sha256:")) as tar:
                for member in tar.getmembers():
                    body = tar.extractfile(member).read() if member.isfile() else b""  # type: ignore[union-attr]
                    made += [body] if member.name.endswith("opt/team/greeting") else []
                    leak = member if member.name.endswith("opt/team/src/leak") else leak
                    everything += body
        assert made == [b"hello from the build\n"]
        assert leak is not None and leak.issym() and leak.linkname == str(secret)
        assert b"the manager's own secret" not in everything
        page = httpx.get(
            m.url + "/workspaces/built", headers={"authorization": f"Bearer {m.token()}"}, verify=m.verify
        ).text
        assert "devcontainer-built" in page and image in page
        assert m.cli("ws", "rm", "built").returncode == 0
    finally:
        m.stop()


@pytest.mark.skipif(not Path("/usr/sbin/sshd").exists(), reason="the node copies this machine's sshd (openssh-server)")
def test_ssh_into_a_pod(cluster: tuple[KubeApi, Node, Path], tmp_path: Path) -> None:
    """config-ssh, then plain ssh and scp, through the manager to the sshd the pod's init container brought in."""
    api, node, folder = cluster
    env = {
        **manager_env(api, folder, free_port()),
        "DEVYARD_KUBERNETES__SSH_IMAGE": "registry.example.com/devyard:test",
        "DEVYARD_KUBERNETES__SSH_PORT": str(free_port()),
    }
    m = start_manager(tmp_path / "data", env)
    try:
        assert m.cli("secret", "set", "POD_SECRET", input="from the pod\n").returncode == 0
        with m.api() as client:
            assert client.post("/workspaces", json={"name": "box"}).status_code == 201
        m.wait_status("box", "running", timeout=180)
        pod = find_pod(api, "box")
        assert [c["name"] for c in pod["spec"]["initContainers"]][-1] == "ssh-bundle"
        engine = pod["spec"]["containers"][0]
        assert {"name": "ssh", "mountPath": "/etc/passwd", "subPath": "passwd", "readOnly": True} in engine[
            "volumeMounts"
        ]
        policy = api.get("networkpolicies", pod["metadata"]["name"], group="networking.k8s.io/v1")
        assert policy is not None
        assert {"protocol": "TCP", "port": int(env["DEVYARD_KUBERNETES__SSH_PORT"])} in policy["spec"]["ingress"][0][
            "ports"
        ]
        dev = developer(m, tmp_path, "admin").configured()
        done = dev.run("devyard--box", 'pwd; id -un; echo "$POD_SECRET"')
        assert done.returncode == 0, done.stderr + node.log(pod["metadata"]["name"])[-2000:]
        volume = node.root / "volumes" / pod["metadata"]["name"]
        assert done.stdout.splitlines() == [str(volume / "files"), "devyard", "from the pod"]
        (tmp_path / "up.txt").write_text("sent over scp\n")
        assert dev.run(str(tmp_path / "up.txt"), "devyard--box:up.txt", tool="scp").returncode == 0
        assert (volume / "files" / "up.txt").read_text() == "sent over scp\n"
        again = dev.run("devyard--box", "true")  # pinned: no host-key prompt the second time either
        assert again.returncode == 0, again.stderr
    finally:
        m.stop()
