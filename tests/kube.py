"""A Kubernetes API for the tests: kmock's emulator on a real HTTP port, and the tests playing the node.

No cluster can run on these machines (../shared/kubernetes-notes.md). kmock's KubernetesEmulator
keeps objects in memory and serves create, list, read, patch, delete and watch over real HTTP to
the real kubernetes_asyncio client; `Emulator` adds what an API server does that the backend
relies on and kmock 0.8 does not (below). The tests then play the kubelet: `KubeApi.set_status`
patches a pod's status as a node reports it (ready, OOMKilled, an image pull error, unschedulable),
and `Node` goes further, running each new pod's init script and engine on this machine with the
real code-server, so that a manager on the kubernetes backend serves real workbenches.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import kmock
import yaml

from devyard.engine.install import Engine
from tests.support import kill_tree

NAMESPACE = "devyard"


class Emulator(kmock.KubernetesEmulator):  # type: ignore[misc]
    """kmock 0.8, made to behave like an API server where the backend notices the difference."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._service_ips = (f"127.0.{n // 250 + 1}.{n % 250 + 2}" for n in itertools.count())
        # As an API server without user namespaces does (before Kubernetes 1.33): hostUsers dropped without a word.
        self.drops_host_users = False

    async def __call__(self, raw_request: Any) -> Any:
        # kubernetes_asyncio's Watch sends ?watch=True; kmock recognises only watch=true and would answer a list.
        if raw_request.query.get("watch") == "True":
            raw_request = raw_request.clone(rel_url=raw_request.rel_url.update_query(watch="true"))
        return await super().__call__(raw_request)

    async def _handle(self, request: Any) -> Any:
        # An API server gives every Service a cluster IP when it is made: here a loopback address,
        # where Node runs the engine of the pod the Service selects.
        if (
            request.action == kmock.action.CREATE
            and request.resource is not None
            and request.resource.plural == "services"
        ):
            spec = request.data.setdefault("spec", {})
            spec.setdefault("clusterIP", next(self._service_ips))
        if (
            self.drops_host_users
            and request.action == kmock.action.CREATE
            and request.resource is not None
            and request.resource.plural == "pods"
        ):
            request.data.get("spec", {}).pop("hostUsers", None)
        try:
            return await super()._handle(request)
        except kmock.KubernetesError as exc:
            # Outside `async with emulator` kmock answers its own 404 and 409 with a 500; an API
            # server answers them with a Status of that code, which the backend relies on.
            return await self._render_error(exc)


class KubeApi:
    """The emulator serving in a thread of its own, with a kubeconfig pointing at it and the kubelet's hands."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.emulator = Emulator()
        self.emulator.resources.load_bundled()
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Future[None] | None = None
        self._thread = threading.Thread(target=self._serve, name="kmock", daemon=True)

    def _serve(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = self._loop.create_future()
            async with kmock.Server(self.emulator) as server:
                self.url = str(server.url).rstrip("/")
                self._ready.set()
                await self._stop

        asyncio.run(main())

    def __enter__(self) -> KubeApi:
        self._thread.start()
        assert self._ready.wait(10), "kmock did not start"
        self.http = httpx.Client(base_url=self.url, timeout=10)
        self.kubeconfig = self.folder / "kubeconfig"
        self.kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "kmock",
                    "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
                    "users": [{"name": "tests", "user": {"token": "not-checked"}}],
                    "contexts": [
                        {"name": "kmock", "context": {"cluster": "kmock", "user": "tests", "namespace": NAMESPACE}}
                    ],
                }
            )
        )
        return self

    def __exit__(self, *_: object) -> None:
        self.http.close()
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)

    # -- reading and changing objects, as kubectl would ---------------------------------------
    def list(self, plural: str, group: str = "") -> list[dict[str, Any]]:
        """Every object of a resource in the namespace."""
        base = f"/apis/{group}" if group else "/api/v1"
        items: list[dict[str, Any]] = self.http.get(f"{base}/namespaces/{NAMESPACE}/{plural}").json()["items"]
        return items

    def get(self, plural: str, name: str, group: str = "") -> dict[str, Any] | None:
        """One object, or None."""
        return next((o for o in self.list(plural, group) if o["metadata"]["name"] == name), None)

    def names(self, plural: str, group: str = "") -> set[str]:
        """The names of a resource's objects."""
        return {o["metadata"]["name"] for o in self.list(plural, group)}

    def set_status(self, pod: str, status: dict[str, Any]) -> None:
        """Report a pod's status, as its node does."""
        r = self.http.patch(
            f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}/status",
            json={"status": status},
            headers={"content-type": "application/merge-patch+json"},
        )
        assert r.status_code == 200, r.text

    def create(self, manifest: dict[str, Any]) -> None:
        """Make an object (one devyard did not make, say)."""
        plural = manifest["kind"].lower() + "s"
        r = self.http.post(f"/api/v1/namespaces/{NAMESPACE}/{plural}", json=manifest)
        assert r.status_code in (200, 201), r.text

    def secret_data(self, name: str) -> dict[str, str]:
        """A Secret's keys and values, decoded (stringData as sent, or data as an API server keeps it)."""
        found = self.get("secrets", name) or {}
        data = {k: base64.b64decode(v).decode() for k, v in (found.get("data") or {}).items()}
        return {**data, **(found.get("stringData") or {})}


def now() -> str:
    """The API's time format."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def ready(ip: str) -> dict[str, Any]:
    """A pod whose init container completed and whose engine is running and ready."""
    cond = [
        {"type": t, "status": "True", "lastTransitionTime": now()}
        for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
    ]
    return {
        "phase": "Running",
        "podIP": ip,
        "startTime": now(),
        "conditions": cond,
        "initContainerStatuses": [
            {
                "name": "prepare",
                "ready": True,
                "restartCount": 0,
                "image": "",
                "imageID": "",
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
            }
        ],
        "containerStatuses": [
            {
                "name": "engine",
                "ready": True,
                "restartCount": 0,
                "image": "",
                "imageID": "",
                "state": {"running": {"startedAt": now()}},
            }
        ],
    }


def ended(code: int, reason: str) -> dict[str, Any]:
    """A pod whose engine ended (reason OOMKilled: the kernel killed it for its memory limit)."""
    return {
        "phase": "Failed",
        "conditions": [{"type": "Ready", "status": "False"}],
        "containerStatuses": [
            {
                "name": "engine",
                "ready": False,
                "restartCount": 0,
                "image": "",
                "imageID": "",
                "state": {"terminated": {"exitCode": code, "reason": reason}},
            }
        ],
    }


def image_pull_failing(image: str) -> dict[str, Any]:
    """A pod whose node cannot pull the engine image."""
    return {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "True"}],
        "containerStatuses": [
            {
                "name": "engine",
                "ready": False,
                "restartCount": 0,
                "image": image,
                "imageID": "",
                "state": {
                    "waiting": {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{image}": not found'}
                },
            }
        ],
    }


def unschedulable() -> dict[str, Any]:
    """A pod no node has room for."""
    return {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient memory.",
            }
        ],
    }


class Node:
    """The kubelet, played on this machine: each new pod's init script, then its engine, with the real code-server.

    The pod's own command lines are run (the engine's own command aside: this machine's engine runs,
    wrapped in the shell that runs a devcontainer.json's commands when the pod has one; an init
    container copying the engine into another image is not run), with its paths moved under `root` (its volume, one folder
    per claim, and its init Secret's files) and its listening address moved to its Service's
    cluster IP (a loopback address the Emulator gave it). Ready once /healthz answers, as the
    pod's readiness probe; an engine that exits is reported as a container that terminated; a
    deleted pod's engine is ended.
    """

    def __init__(self, api: KubeApi, engine: Engine, root: Path) -> None:
        self.api, self.engine, self.root = api, engine, root
        self.running: dict[str, subprocess.Popen[bytes]] = {}  # pod name → engine process
        self.built: list[dict[str, Any]] = []  # the build pods run, as created
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="node", daemon=True)
        self._workers: list[threading.Thread] = []

    def __enter__(self) -> Node:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(15)
        while self.running:
            _, proc = self.running.popitem()
            kill_tree(proc.pid)
            proc.wait()
        for worker in self._workers:
            worker.join(30)

    def log(self, pod: str) -> str:
        """What the pod's containers printed here."""
        path = self.root / f"{pod}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_answer(self, request: Any) -> Any:
        """The kubelet's answer to GET .../pods/<name>/log: the container's output; with follow, streamed as it grows.

        A build pod's steps each have a log of their own, and following one ends once that step has ended.
        """
        step = request.params.get("container")
        done: Path | None = None
        path = self.root / f"{request.name}.log"
        if step and request.name.endswith("-build"):
            path, done = self.root / f"{request.name}.{step}.log", self.root / f"{request.name}.{step}.done"
        if str(request.params.get("follow", "")).lower() != "true":
            return path.read_bytes() if path.exists() else b""

        async def grow() -> Any:
            yield b""  # the answer's head now, as the API server sends it
            pos = path.stat().st_size if request.params.get("tailLines") == "0" and path.exists() else 0
            while not self._stop.is_set():
                ended = done is not None and done.exists()
                size = path.stat().st_size if path.exists() else 0
                if size > pos:
                    with path.open("rb") as f:
                        f.seek(pos)
                        yield f.read(size - pos)
                    pos = size
                elif ended:
                    return
                await asyncio.sleep(0.1)

        return grow()

    def _loop(self) -> None:
        seen: set[str] = set()
        while not self._stop.is_set():
            try:
                pods = {p["metadata"]["name"]: p for p in self.api.list("pods")}
            except httpx.HTTPError:
                break
            for name, pod in pods.items():
                if name not in seen and not (pod.get("status") or {}).get("phase"):
                    seen.add(name)
                    building = "devyard.io/build" in pod["metadata"].get("labels", {})
                    run = self._build if building else self._run
                    worker = threading.Thread(target=run, args=(pod,), daemon=True)
                    self._workers.append(worker)
                    worker.start()
            for name in list(self.running):
                if name not in pods:  # deleted: the container gets its grace, then is killed
                    proc = self.running.pop(name)
                    kill_tree(proc.pid)
                    proc.wait()
            seen &= set(pods) | set(self.running)
            time.sleep(0.1)

    def _paths(self, text: str, volume: Path, init: Path) -> str:
        return (
            text.replace("/var/run/devyard/init", str(init))
            .replace("/var/run/devyard/ssh", str(init.with_name(init.name + "-ssh")))
            .replace("/opt/devyard-ssh", str(init.with_name(init.name + "-bundle")))
            .replace("/workspace", str(volume))
        )

    def _mounts(self, container: dict[str, Any], spec: dict[str, Any], init: Path, volume: Path) -> list[str]:
        """The container's volumes mounted over files of this machine (subPath: /etc/passwd), as a bwrap prefix; [] for none.

        The pod's SSH Secret is written out with its paths moved here, and, as this node runs every
        container as root, the pod's user made uid 0 (and sshd's privilege separation user added).
        """
        over = [m for m in container.get("volumeMounts", []) if m.get("subPath")]
        if not over:
            return []
        folder = init.with_name(init.name + "-ssh")
        folder.mkdir(exist_ok=True)
        source = next(v for v in spec["volumes"] if v["name"] == over[0]["name"])
        user, group = spec["securityContext"]["runAsUser"], spec["securityContext"]["fsGroup"]
        for key, value in self.api.secret_data(source["secret"]["secretName"]).items():
            text = self._paths(value, volume, init)
            if key == "passwd":
                text = "".join(line for line in text.splitlines(keepends=True) if not line.startswith("root:"))
                text = text.replace(f":{user}:{group}:", ":0:0:") + next(
                    line + "\n" for line in Path("/etc/passwd").read_text().splitlines() if line.startswith("sshd:")
                )
            (folder / key).write_text(text)
            (folder / key).chmod(0o600)
        argv = ["bwrap", "--bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/run/sshd"]
        for mount in over:
            argv += ["--ro-bind", str(folder / mount["subPath"]), mount["mountPath"]]
        return [*argv, "--"]

    def _build(self, pod: dict[str, Any]) -> None:
        """A build pod: each step's command run here for real (curl, buildah, skopeo), as root, in order.

        Its volumes are folders, its Secrets' keys files in them, and /dev/termination-log a file
        whose text becomes the step's termination message, as the kubelet reports it.
        """
        name, spec = pod["metadata"]["name"], pod["spec"]
        self.built.append(pod)
        self.runs += 1
        base = self.root / f"{name}-{self.runs}"
        folders: dict[str, Path] = {}
        for volume in spec["volumes"]:
            folder = folders[volume["name"]] = base / volume["name"]
            folder.mkdir(parents=True)
            if "secret" in volume:
                data = self.api.secret_data(volume["secret"]["secretName"])
                items = volume["secret"].get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    (folder / item["path"]).write_text(data[item["key"]])
        statuses: list[dict[str, Any]] = []
        for container in [*spec["initContainers"], *spec["containers"]]:
            step = container["name"]
            places = {m["mountPath"]: str(folders[m["name"]]) for m in container.get("volumeMounts", [])}
            places["/dev/termination-log"] = str(base / f"{step}.termination")
            paths = "|".join(re.escape(p) for p in sorted(places, key=len, reverse=True))
            pattern = re.compile(f"({paths})(?=[/\\s\"']|$)")  # a mount path, not a prefix of a longer name

            def moved(text: str, pattern: re.Pattern[str] = pattern, places: dict[str, str] = places) -> str:
                return pattern.sub(lambda m: places[m.group(0)], text)

            env = {"PATH": os.environ["PATH"], **{e["name"]: moved(e["value"]) for e in container.get("env", [])}}
            log, done = self.root / f"{name}.{step}.log", self.root / f"{name}.{step}.done"
            with log.open("ab") as out:
                code = subprocess.run(
                    [moved(a) for a in container["command"]], env=env, stdout=out, stderr=subprocess.STDOUT, timeout=600
                ).returncode
            done.touch()
            message = base / f"{step}.termination"
            ended = {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}
            if message.exists():
                ended["message"] = message.read_text()
            statuses.append(
                {
                    "name": step,
                    "ready": False,
                    "restartCount": 0,
                    "image": "",
                    "imageID": "",
                    "state": {"terminated": ended},
                }
            )
            inits = len(spec["initContainers"])
            report = {"initContainerStatuses": statuses[:inits], "containerStatuses": statuses[inits:]}
            if code != 0:
                self._report(name, {"phase": "Failed", **report})
                return
        self._report(name, {"phase": "Succeeded", **report})

    def _report(self, name: str, status: dict[str, Any]) -> None:
        """Report a build pod's status, unless the manager deleted it meanwhile (a refused build)."""
        if name in self.api.names("pods"):
            with contextlib.suppress(AssertionError):  # deleted between the look and the report
                self.api.set_status(name, status)

    def _run(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        self.runs += 1
        spec = pod["spec"]
        claim = next(v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v)
        volume = self.root / "volumes" / claim
        volume.mkdir(parents=True, exist_ok=True)
        init = self.root / f"{name}-{self.runs}-init"
        init.mkdir(parents=True)
        secret = next(v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v)
        for key, value in self.api.secret_data(secret).items():
            (init / key).write_text(value)
        service = next(
            s for s in self.api.list("services") if s["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        )
        ip = service["spec"]["clusterIP"]
        path = f"{self.engine.bin_dir}{os.pathsep}{os.environ['PATH']}"
        with (self.root / f"{name}.log").open("ab") as out:
            prepare = spec["initContainers"][0]
            env = {"PATH": path, **{e["name"]: e["value"] for e in prepare.get("env", [])}}
            argv = [self._paths(a, volume, init) for a in prepare["command"]]
            done = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=120)
            if done.returncode != 0:
                self.api.set_status(
                    name,
                    {
                        "phase": "Failed",
                        "initContainerStatuses": [
                            {
                                "name": "prepare",
                                "ready": False,
                                "restartCount": 0,
                                "image": "",
                                "imageID": "",
                                "state": {"terminated": {"exitCode": done.returncode, "reason": "Error"}},
                            }
                        ],
                    },
                )
                return
            bundle = next((c for c in spec["initContainers"] if c["name"] == "ssh-bundle"), None)
            if bundle is not None:  # copies this machine's sshd, as it would the ssh_image's
                argv = [self._paths(a, volume, init) for a in bundle["command"]]
                subprocess.run(argv, env={"PATH": path}, stdout=out, stderr=subprocess.STDOUT, timeout=120, check=True)
            main = spec["containers"][0]
            env = {
                "PATH": path,
                **{
                    e["name"]: self._paths(e["value"], volume, init).replace("0.0.0.0:", f"{ip}:")
                    for e in main.get("env", [])
                },
            }
            for source in main.get("envFrom", []):
                env.update(self.api.secret_data(source["secretRef"]["name"]))
            args = [self._paths(a, volume, init).replace("0.0.0.0:", f"{ip}:") for a in main["args"]]
            # A devcontainer.json's commands and sshd wrap the engine (`sh -c HOOKS devyard-engine ENGINE...`): run those shells too.
            command = main.get("command", [])
            marks = [i for i, a in enumerate(command) if a in ("devyard-engine", "devyard-ssh")]
            hooks = command[1 : marks[-1] + 1] if marks else []
            proc = subprocess.Popen(
                [
                    *self._mounts(main, spec, init, volume),
                    *(self._paths(a, volume, init) for a in hooks),
                    str(self.engine.node),
                    str(self.engine.entry),
                    *args,
                ],
                env=env,
                cwd=self._paths(main["workingDir"], volume, init),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.running[name] = proc
        port = main["ports"][0]["containerPort"]
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline and name in self.running:
            try:
                if httpx.get(f"http://{ip}:{port}/healthz", timeout=2).status_code == 200:
                    self.api.set_status(name, ready(ip))
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        code = proc.wait()
        if self.running.get(name) is proc:  # it ended by itself, not because its pod was deleted
            self.running.pop(name, None)
            self.api.set_status(name, ended(code if code >= 0 else 128 - code, "Error"))
