"""The kubernetes backend: each workspace a Pod, a PersistentVolumeClaim, a ClusterIP Service and a NetworkPolicy.

Start makes what is missing (the volume on the first start, sized by the workspace's size preset)
and a new Pod, then waits, on the pod watch (watcher.py), until the engine is ready or the pod
fails; a failed start deletes the pod and says why in Kubernetes' words (pods.py). Stop deletes
the Pod and keeps everything else; remove deletes everything, the volume only without keep_files.
Status is read from the watch's memory, never by asking the API server. After a manager restart
the running pods are adopted by their labels.

The manager keeps, per workspace, only a folder of its own notes (provisioning's progress, crash
notes) and, until the first start, what provisioning made (seed.py). The engine's own output is
the pod's log.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

from kubernetes_asyncio import client

from devyard.backends.base import Channel, Endpoint, RuntimeStatus, Stats, WorkspaceSpec, os_errors_translated
from devyard.backends.kubernetes import build, build_pod, manifests, podlogs, pods, seed
from devyard.backends.kubernetes import ssh as kube_ssh
from devyard.backends.kubernetes.client import Source, open_client, source, status_of, translate
from devyard.backends.kubernetes.watcher import PodWatcher
from devyard.config import Settings
from devyard.engine.command import policy_flags
from devyard.errors import BackendError, NotOnThisBackend
from devyard.origins import engine_proxy_uri
from devyard.paths import remove_workspace
from devyard.provision.devcontainer import Build
from devyard.ssh.keys import Authority, Lazy

log = logging.getLogger("devyard.kubernetes")
SYNC_TIMEOUT_S = 15.0
STOP_SLACK_S = 30.0  # beyond the grace period, for the kubelet to report the pod gone


@os_errors_translated
class KubernetesBackend:
    """Engines as pods in one namespace (devyard.kubernetes)."""

    local_files = False  # a workspace's files live in its volume, not under its folder on this machine

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.k8s = settings.kubernetes
        self.where: Source = source(self.k8s)  # no cluster configured: said now, before serving
        self.seeds = seed.Seeds()
        self.build_contexts = seed.Seeds()  # build.py: a build pod's fetch of its context, for that build only
        self.policies = policy_flags(
            disable_file_downloads=settings.disable_file_downloads,
            disable_file_uploads=settings.disable_file_uploads,
            reconnection_grace_s=settings.reconnection_grace_s,
        )
        self._api: client.ApiClient | None = None
        self._watcher: PodWatcher | None = None
        self._opening = asyncio.Lock()
        self._addresses: dict[str, str] = {}  # uid → its Service's cluster IP
        self.keys = Lazy(settings.secrets_dir)

    @property
    def authority(self) -> Authority | None:
        """Signs each pod's SSH host key (loaded at the first start that needs it); None where pods take no SSH."""
        return self.keys.get() if kube_ssh.enabled(self.k8s) else None

    @property
    def missing_isolation(self) -> str | None:
        """None: every engine runs in a pod of its own, behind its network policies."""
        return None

    # -- plumbing ------------------------------------------------------------------------------
    async def _ready(self) -> PodWatcher:
        """The API client and the pod watch, opened on first use; BackendError when the API does not answer."""
        if self._watcher is None:
            async with self._opening:
                if self._watcher is None:
                    self._api = await open_client(self.where)
                    watcher = PodWatcher(self._api, self.k8s.namespace)
                    watcher.start()
                    self._watcher = watcher
        try:
            await asyncio.wait_for(self._watcher.synced.wait(), SYNC_TIMEOUT_S)
        except TimeoutError as exc:
            raise BackendError(
                f"the Kubernetes API ({self.where.describe()}) did not list the pods of namespace {self.k8s.namespace} "
                f"within {SYNC_TIMEOUT_S:.0f} s; see the manager's log",
                code="kubernetes_unreachable",
            ) from exc
        return self._watcher

    @property
    def core(self) -> client.CoreV1Api:
        """The core API (pods, volumes, services, secrets, logs)."""
        assert self._api is not None
        return client.CoreV1Api(self._api)

    @property
    def networking(self) -> client.NetworkingV1Api:
        """The networking API (NetworkPolicies)."""
        return client.NetworkingV1Api(self._api)

    async def call(self, doing: str, call: Callable[[], Awaitable[Any]], ok: tuple[int, ...] = ()) -> Any:
        """Run one API call; an error with a status in `ok` returns None, any other becomes a BackendError."""
        try:
            return await call()
        except Exception as exc:
            if status_of(exc) in ok:
                return None
            raise translate(exc, doing) from exc

    async def _ensure(self, manifest: manifests.Manifest, create: Callable[..., Awaitable[Any]]) -> Any:
        """Create an object unless it exists (a volume or service kept from an earlier start)."""
        what = f"creating {manifest['kind']} {manifest['metadata']['name']}"
        return await self.call(what, lambda: create(self.k8s.namespace, manifest), ok=(409,))

    async def put_secret(self, manifest: manifests.Manifest) -> None:
        """Make a Secret hold exactly `manifest`'s keys (a key removed is gone, which a merge would not do)."""
        name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
        await self.call(
            f"replacing Secret {name}", lambda: self.core.delete_namespaced_secret(name, namespace), ok=(404,)
        )
        await self.call(
            f"creating Secret {name}", lambda: self.core.create_namespaced_secret(namespace, cast(Any, manifest))
        )

    def _endpoint(self, uid: str) -> Endpoint:
        """The engine's address: its Service's cluster IP (no DNS lookup per connection), else the Service's DNS name."""
        host = self._addresses.get(uid) or f"{manifests.name_of(uid)}.{self.k8s.namespace}.svc"
        return Endpoint(host=host, port=self.k8s.engine_port)

    def _remember_address(self, svc: Any) -> None:
        spec = getattr(svc, "spec", None)
        meta = getattr(svc, "metadata", None)
        uid = (meta.labels or {}).get(manifests.UID) if meta is not None else None
        ip = getattr(spec, "cluster_ip", None)
        if uid and ip and ip != "None":
            self._addresses[uid] = ip

    # -- Backend protocol ----------------------------------------------------------------------
    async def start(self, ws: WorkspaceSpec) -> Endpoint:
        """Make the workspace's objects and a new pod; return when its engine is ready (BackendError saying why it is not)."""
        watcher = await self._ready()
        found = watcher.pods.get(ws.uid)
        if found is not None:
            if pods.read(found).phase in (
                "ready",
                "pending",
            ):  # started before (an earlier manager, another replica): wait for it
                await self._learn_address(ws.uid)
                await self._until_ready(ws)
                return self._endpoint(ws.uid)
            await self._delete_pod(ws.uid, grace_s=0)
            await self._until_gone(ws.uid, STOP_SLACK_S)
        namespace = self.k8s.namespace
        net = self.networking
        await self._ensure(manifests.volume_claim(ws, self.k8s), self.core.create_namespaced_persistent_volume_claim)
        policy, service = manifests.network_policy(ws, self.k8s), manifests.service(ws, self.k8s)
        authority = self.authority
        ssh_files = authority and kube_ssh.wire(
            ws, self.k8s, authority, self.settings.ssh_agent_forwarding, policy, service
        )
        if ssh_files:
            await self.put_secret(ssh_files)
        await self._ensure(policy, net.create_namespaced_network_policy)
        self._remember_address(await self._ensure(service, self.core.create_namespaced_service))
        await self._learn_address(ws.uid)
        seeding = await asyncio.to_thread(seed.pending, ws)
        token = self.seeds.issue(ws.uid, ws.root, self.k8s.start_timeout_s) if seeding else None
        try:
            await self.put_secret(manifests.env_secret(ws, self.k8s))
            await self.put_secret(manifests.init_secret(ws, self.k8s, token, []))
            body = manifests.pod(
                ws,
                self.k8s,
                self.policies,
                seed.url(seed.base_url(self.settings), ws.uid) if token else None,
                engine_proxy_uri(self.settings),
            )
            if ssh_files:
                kube_ssh.add_to_pod(body, ws, self.k8s, manifests.name_of(ws.uid) + "-ssh")
            await self.call(
                "creating the workspace's pod", lambda: self.core.create_namespaced_pod(namespace, cast(Any, body))
            )
            log.info("workspace %s/%s: pod %s created", ws.owner, ws.name, manifests.name_of(ws.uid))
            await self._until_ready(ws)
        finally:
            self.seeds.revoke(ws.uid)
        if token:
            await asyncio.to_thread(seed.clear, ws)
        return self._endpoint(ws.uid)

    async def _learn_address(self, uid: str) -> None:
        """Read the Service's cluster IP once (the API server gives it when the Service is made)."""
        if uid not in self._addresses:
            self._remember_address(
                await self.call(
                    "reading the workspace's Service",
                    lambda: self.core.read_namespaced_service(manifests.name_of(uid), self.k8s.namespace),
                    ok=(404,),
                )
            )

    async def _until_ready(self, ws: WorkspaceSpec) -> None:
        """Wait on the watch until the pod is ready; delete it and raise when it fails, vanishes or takes too long."""
        watcher = await self._ready()
        deadline = time.monotonic() + self.k8s.start_timeout_s
        seen = False
        while True:
            found = watcher.pods.get(ws.uid)
            if found is None and seen:
                raise BackendError("the workspace's pod was deleted while it started", code="engine_start_failed")
            if found is not None:
                seen = True
                state = pods.read(found)
                if state.phase == "ready":
                    return
                if state.phase == "failed":
                    await self._delete_pod(ws.uid, grace_s=0)
                    hint = "; choose a larger size" if state.reason == "out_of_memory" else ""
                    raise BackendError(f"{state.detail}{hint}", code=state.reason or "engine_start_failed")
            left = deadline - time.monotonic()
            if left <= 0:
                await self._delete_pod(ws.uid, grace_s=0)
                raise BackendError(
                    f"the workspace's pod was not ready within {self.k8s.start_timeout_s:.0f} s"
                    f"{': ' + pods.progress(found) if found else ''}",
                    code="engine_start_timeout",
                )
            await watcher.changed(min(left, 5.0))

    async def _delete_pod(self, uid: str, grace_s: int) -> None:
        name = manifests.name_of(uid)
        await self.call(
            f"deleting pod {name}",
            lambda: self.core.delete_namespaced_pod(name, self.k8s.namespace, grace_period_seconds=grace_s),
            ok=(404,),
        )

    async def _until_gone(self, uid: str, timeout_s: float) -> bool:
        watcher = await self._ready()
        deadline = time.monotonic() + timeout_s
        while uid in watcher.pods:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await watcher.changed(min(left, 5.0))
        return True

    async def stop(self, ws: WorkspaceSpec, timeout: float) -> None:
        """Delete the pod (the engine gets `timeout` seconds to end), keep the volume; wait until it is gone."""
        watcher = await self._ready()
        if ws.uid not in watcher.pods:
            return
        await self._delete_pod(ws.uid, grace_s=max(1, math.ceil(timeout)))
        if await self._until_gone(ws.uid, timeout + STOP_SLACK_S):
            return
        log.warning(
            "pod %s is still there %.0f s after its deletion: deleting it without grace",
            manifests.name_of(ws.uid),
            timeout + STOP_SLACK_S,
        )
        await self._delete_pod(ws.uid, grace_s=0)
        if not await self._until_gone(ws.uid, STOP_SLACK_S):
            raise BackendError(
                f"pod {manifests.name_of(ws.uid)} did not end; its node may be unreachable", code="engine_stop_timeout"
            )

    async def status(self, ws: WorkspaceSpec) -> RuntimeStatus:
        """From the watch: running (pod ready or coming up), stopped (no pod, or ending), failed (with Kubernetes' reason)."""
        watcher = await self._ready()
        return self._status(ws.uid, watcher.pods.get(ws.uid))

    def _status(self, uid: str, pod: dict[str, Any] | None) -> RuntimeStatus:
        return pods.runtime(uid, pod, self._endpoint(uid))

    async def run_once(self, ws: WorkspaceSpec, command: str, timeout_s: float) -> int:
        """Not here: a workspace's commands run in its pod, with its image's tools (manifests.pod: post_create)."""
        raise NotOnThisBackend(
            "commands run in the workspace's pod on the kubernetes backend", code="not_on_this_backend"
        )

    async def build_image(self, ws: WorkspaceSpec, spec: Build, say: Callable[[str], None]) -> str:
        """Build a devcontainer.json's `build` in a pod of the cluster; `<repository>@<digest>` (build.py)."""
        if not self.k8s.devcontainer_build.enabled:
            raise NotOnThisBackend(
                "image builds are off (kubernetes.devcontainer_build.enabled)", code="build_disabled"
            )
        await self._ready()
        base = seed.base_url(self.settings)
        return await build.run(self, self.k8s, ws, spec, base, self.build_contexts, say)

    def ssh_login(self, ws: WorkspaceSpec) -> str:
        """The pod's user, when pods take SSH sessions (kubernetes.ssh_image)."""
        if not kube_ssh.enabled(self.k8s):
            raise BackendError(
                "SSH into workspaces on Kubernetes needs kubernetes.ssh_image (an image with sshd)",
                code="ssh_unavailable",
            )
        if self.keys.off:
            raise BackendError(self.keys.off, code="ssh_unavailable")
        return kube_ssh.LOGIN

    async def ssh(self, ws: WorkspaceSpec) -> Channel:
        """A connection to the sshd in the workspace's pod, through its Service."""
        self.ssh_login(ws)
        await self._ready()
        await self._learn_address(ws.uid)
        endpoint = self._endpoint(ws.uid)
        return await kube_ssh.connect(endpoint.host or "", self.k8s.ssh_port, ws)

    async def listening_ports(self, ws: WorkspaceSpec) -> list[int] | None:
        """Not seen from here: a pod's sockets are the node's to read, and its engine is not to be believed."""
        return None

    async def stats(self, ws: WorkspaceSpec) -> Stats:
        """CPU and memory from the cluster's metrics API (zeros where it has none), uptime from the pod; disk is the volume's, not measured."""
        watcher = await self._ready()
        pod = watcher.pods.get(ws.uid)
        if pod is None:
            return Stats(cpu_percent=0.0, memory_bytes=0, uptime_s=0.0, disk_bytes=0)
        started = pods.read(pod).started_at
        cpu, memory = await pods.usage(
            client.CustomObjectsApi(self._api), self.k8s.namespace, manifests.name_of(ws.uid)
        )
        return Stats(
            cpu_percent=round(cpu, 1),
            memory_bytes=memory,
            uptime_s=round(time.time() - started, 1) if started else 0.0,
            disk_bytes=0,
        )

    async def adopt(self) -> list[RuntimeStatus]:
        """The pods still there after a manager restart, found by their labels; ready or coming up counts as running."""
        watcher = await self._ready()
        services = await self.call(
            "listing the workspaces' Services",
            lambda: self.core.list_namespaced_service(self.k8s.namespace, label_selector=manifests.SELECTOR),
        )
        for svc in services.items or []:
            self._remember_address(svc)
        found = [self._status(uid, pod) for uid, pod in watcher.pods.items()]
        return [s for s in found if s.state == "running"]

    async def close(self) -> None:
        """End the watch and the API client (the pods keep running)."""
        if self._watcher is not None:
            await self._watcher.close()
            self._watcher = None
        if self._api is not None:
            await self._api.close()
            self._api = None

    async def write_files(self, ws: WorkspaceSpec, remove: list[str]) -> None:
        """Put the secret files (and the paths to remove) in the init Secret: the workspace's home gets them at its next start."""
        await self._ready()
        await self.put_secret(manifests.init_secret(ws, self.k8s, self.seeds.token(ws.uid), remove))

    async def remove(self, ws: WorkspaceSpec, keep_files: bool) -> None:
        """Delete the workspace's pod, Service, NetworkPolicy and Secrets, and its volume unless `keep_files`; then its folder here."""
        await self._ready()
        name, namespace = manifests.name_of(ws.uid), self.k8s.namespace
        net = self.networking
        await self._delete_pod(ws.uid, grace_s=0)
        deletions: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("Service", lambda: self.core.delete_namespaced_service(name, namespace)),
            ("NetworkPolicy", lambda: net.delete_namespaced_network_policy(name, namespace)),
            ("Secret", lambda: self.core.delete_namespaced_secret(name + "-env", namespace)),
            ("Secret", lambda: self.core.delete_namespaced_secret(name + "-init", namespace)),
            ("Secret", lambda: self.core.delete_namespaced_secret(name + "-ssh", namespace)),
        ]
        if not keep_files:
            deletions.append(
                ("PersistentVolumeClaim", lambda: self.core.delete_namespaced_persistent_volume_claim(name, namespace))
            )
        for kind, call in deletions:
            await self.call(f"deleting {kind} of {ws.owner}/{ws.name}", call, ok=(404,))
        await build.clean(self, build_pod.namespace_of(self.k8s), build_pod.pod_name(ws.uid))  # one a crash left behind
        self._addresses.pop(ws.uid, None)
        await asyncio.to_thread(remove_workspace, ws.root, False)

    async def logs(self, ws: WorkspaceSpec, lines: int) -> list[str]:
        """devyard's notes on the workspace (provisioning, crashes), then the last `lines` of the engine pod's log."""
        watcher = await self._ready()
        return await podlogs.tail_of(self.core, self.k8s.namespace, watcher, ws, lines)

    async def follow(self, ws: WorkspaceSpec) -> AsyncIterator[str]:
        """The engine container's log as it grows (the API server's follow), from now on; a restarted engine's from its start."""
        watcher = await self._ready()
        async for line in podlogs.follow(self.core, self.k8s.namespace, watcher, ws):
            yield line
