"""The kubernetes backend against kmock's API emulator over real HTTP, with the real kubernetes_asyncio client and its watch.

What only this backend does; the Backend contract itself is tests/test_backend_contract.py. The test plays the node: it reports pod statuses (ready, OOMKilled, an image pull error,
unschedulable) the way a kubelet and scheduler would, and checks what the backend made of them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kmock
import kubernetes_validate
import pytest

from devyard.backends.base import Limits, WorkspaceSpec
from devyard.backends.kubernetes import manifests
from devyard.backends.kubernetes.backend import KubernetesBackend
from devyard.config import KubernetesSettings, Settings, load_settings
from devyard.errors import BackendError, Invalid
from tests.kube import NAMESPACE, KubeApi, ended, image_pull_failing, ready, unschedulable
from tests.support import wait_for

UID = "abcdef012345"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[KubeApi]:
    with KubeApi(tmp_path) as found:
        yield found


def settings(api: KubeApi, tmp_path: Path, **k8s: Any) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data",
        backend="kubernetes",
        kubernetes=KubernetesSettings(**{"kubeconfig": api.kubeconfig, "start_timeout_s": 20, **k8s}),
    )


def spec(s: Settings, limits: Limits = Limits(), **extra: Any) -> WorkspaceSpec:
    return WorkspaceSpec(
        uid=UID, owner="ann", name="proj", root=s.workspaces_dir / "ann" / "proj", limits=limits, **extra
    )


def test_manifests_validate_against_the_kubernetes_schemas() -> None:
    variants = [
        (KubernetesSettings(), WorkspaceSpec(UID, "ann", "proj", Path("/x"))),
        (
            KubernetesSettings(
                storage_class="fast", image_pull_secrets=["regcred"], image="registry.example/engine:4.139.1"
            ),
            WorkspaceSpec(
                UID,
                "ann",
                "proj",
                Path("/x"),
                env={"OPENAI_API_KEY": "sk-1"},
                files={".databrickscfg": "[DEFAULT]\n"},
                limits=Limits(memory_bytes=2 << 30, cpus=1.5, disk_bytes=10 << 30),
            ),
        ),
        (  # a devcontainer.json's image, variables and commands
            KubernetesSettings(),
            WorkspaceSpec(
                UID,
                "ann",
                "proj",
                Path("/x"),
                container_env={"A": "${containerEnv:PATH}:/opt"},
                post_create="make setup",
                post_start="make serve &",
                image="ghcr.io/example/toolchain:1",
            ),
        ),
    ]
    for k8s, ws in variants:
        made = [
            manifests.pod(
                ws, k8s, ("--reconnection-grace-time", "300"), "http://10.0.0.5:8000/api/v1/internal/seed/" + UID
            ),
            manifests.pod(ws, k8s, (), None),
            manifests.volume_claim(ws, k8s),
            manifests.service(ws, k8s),
            manifests.network_policy(ws, k8s),
            manifests.env_secret(ws, k8s),
            manifests.init_secret(ws, k8s, "token", [".old"]),
        ]
        for manifest in made:
            kubernetes_validate.validate(manifest, kubernetes_validate.latest_version(), strict=True)
            assert manifest["metadata"]["namespace"] == k8s.namespace  # watches filter on the object's own namespace
            assert manifests.owned_by(manifest) == UID


def test_pod_is_locked_down() -> None:
    ws = WorkspaceSpec(UID, "ann", "proj", Path("/x"), limits=Limits(memory_bytes=1 << 30, cpus=2))
    pod = manifests.pod(ws, KubernetesSettings(), (), None)["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["fsGroup"] == 1000
    for container in [*pod["initContainers"], *pod["containers"]]:
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
        }
    engine = pod["containers"][0]
    assert engine["resources"] == {
        "requests": {"memory": "1024Mi", "cpu": "500m"},
        "limits": {"memory": "1024Mi", "cpu": "2000m"},
    }
    assert engine["args"][engine["args"].index("--abs-proxy-base-path") + 1] == "/w/ann/proj"
    policy = manifests.network_policy(ws, KubernetesSettings())["spec"]
    manager = {
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "devyard", "app.kubernetes.io/component": "manager"}}
    }
    assert policy["ingress"] == [{"from": [manager], "ports": [{"protocol": "TCP", "port": 8080}]}]
    # Egress: DNS, the manager's pods, and the internet without the private, link-local and loopback ranges.
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    dns, to_manager, internet = policy["egress"]
    assert dns["to"] == [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]
    assert {p["port"] for p in dns["ports"]} == {53} and to_manager == {"to": [manager]}
    v4 = internet["to"][0]["ipBlock"]
    assert v4["cidr"] == "0.0.0.0/0" and {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(
        v4["except"]
    )
    assert internet["to"][1]["ipBlock"] == {"cidr": "::/0", "except": ["fc00::/7", "fe80::/10", "::1/128"]}
    # Configurable: an allow-list of one network, with nothing of it denied.
    narrow = manifests.network_policy(ws, KubernetesSettings(egress_allow=["203.0.113.0/24"], egress_deny=[]))["spec"][
        "egress"
    ][2]
    assert narrow == {"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}]}
    # A pod whose size names no limits still has them.
    bare = manifests.pod(WorkspaceSpec(UID, "ann", "proj", Path("/x")), KubernetesSettings(), (), None)["spec"][
        "containers"
    ][0]
    assert bare["resources"]["limits"] == {"cpu": "1", "memory": "2Gi"}


def test_a_pod_on_its_own_origin_shows_ports_on_theirs() -> None:
    ws = WorkspaceSpec(UID, "ann", "proj", Path("/x"))
    engine = manifests.pod(ws, KubernetesSettings(), (), None, "//{{port}}--{{host}}/")["spec"]["containers"][0]
    assert {"name": "VSCODE_PROXY_URI", "value": "//{{port}}--{{host}}/"} in engine["env"]
    assert "--abs-proxy-base-path" not in engine["args"]  # served at / on its own origin


def test_no_cluster_configured_is_said_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(Invalid) as exc:
        KubernetesBackend(load_settings(data_dir=tmp_path / "d", backend="kubernetes"))
    assert exc.value.code == "kubernetes_not_configured" and "KUBECONFIG" in exc.value.message


def test_lifecycle(api: KubeApi, tmp_path: Path) -> None:
    s = settings(api, tmp_path)
    ws = spec(
        s, Limits(memory_bytes=2 << 30, cpus=1, disk_bytes=5 << 30), env={"TOKEN": "t1"}, files={".netrc": "machine x"}
    )
    pod = manifests.name_of(UID)
    # Not devyard's: a pod without its labels in the same namespace is never adopted or touched.
    api.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "someone-else", "namespace": NAMESPACE, "labels": {"app": "db"}},
            "spec": {"containers": [{"name": "db", "image": "postgres:16"}]},
        }
    )

    async def until(what: str, check: Any) -> Any:
        for _ in range(200):
            found = await check() if asyncio.iscoroutinefunction(check) else check()
            if found:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    async def started(backend: KubernetesBackend, status: dict[str, Any]) -> Any:
        task = asyncio.create_task(backend.start(ws))
        await until(
            "a new pod",
            lambda: (api.get("pods", pod) or {"status": {"phase": "old"}}).get("status", {}).get("phase") is None,
        )
        await asyncio.to_thread(api.set_status, pod, status)
        return await task

    async def scenario() -> None:
        backend = KubernetesBackend(s)
        endpoint = await started(backend, ready("10.1.2.3"))
        ip = api.get("services", pod)["spec"]["clusterIP"]  # type: ignore[index]
        assert endpoint.host == ip and endpoint.port == 8080  # the Service's cluster IP: no DNS per connection
        claim = api.get("persistentvolumeclaims", pod)
        assert claim and claim["spec"]["resources"]["requests"]["storage"] == "5120Mi"
        assert claim["metadata"]["labels"] == {
            "app.kubernetes.io/managed-by": "devyard",
            "devyard.io/owner": "ann",
            "devyard.io/workspace": "proj",
            "devyard.io/uid": UID,
        }
        assert pod in api.names("networkpolicies", "networking.k8s.io/v1")
        assert api.secret_data(pod + "-env") == {"TOKEN": "t1"}
        assert api.secret_data(pod + "-init") == {"f0": "machine x", "files.list": "f0 .netrc\n"}

        # The kernel kills the engine for its memory limit: failed, out_of_memory, seen through the watch.
        api.set_status(pod, ended(137, "OOMKilled"))
        failed = await until("out_of_memory", lambda: backend._status(UID, backend._watcher.pods.get(UID)).reason)  # type: ignore[union-attr]
        assert failed == "out_of_memory"
        st = await backend.status(ws)
        assert (
            st.state == "failed" and st.detail == "the engine ran out of memory and was killed" and st.exit_code == 137
        )

        # Started again: the failed pod is replaced, the volume kept.
        assert await started(backend, ready("10.1.2.4")) == endpoint
        await backend.stop(ws, timeout=1)
        assert pod not in api.names("pods") and pod in api.names("persistentvolumeclaims")

        with pytest.raises(BackendError) as exc:
            await started(backend, image_pull_failing("docker.io/codercom/code-server:4.139.1"))
        assert exc.value.code == "image_pull_failed" and "docker.io/codercom/code-server:4.139.1" in exc.value.message
        assert "not found" in exc.value.message and pod not in api.names("pods")

        with pytest.raises(BackendError) as exc:
            await started(backend, unschedulable())
        assert exc.value.code == "unschedulable" and "Insufficient memory" in exc.value.message

        with pytest.raises(BackendError) as exc:
            await started(backend, ended(137, "OOMKilled"))
        assert exc.value.code == "out_of_memory" and "choose a larger size" in exc.value.message

        # A restarted manager adopts the running pod by its labels, and only it.
        await started(backend, ready("10.1.2.5"))
        await backend.close()
        again = KubernetesBackend(s)
        adopted = await again.adopt()
        assert [(a.uid, a.state, a.endpoint) for a in adopted] == [(UID, "running", endpoint)]
        assert "someone-else" in api.names("pods")

        await again.write_files(dataclasses.replace(ws, files={".netrc": "machine y"}), [".old"])
        assert api.secret_data(pod + "-init") == {
            "f0": "machine y",
            "files.list": "f0 .netrc\n",
            "removed.list": ".old\n",
        }

        await again.stop(ws, timeout=1)
        await again.remove(ws, keep_files=True)
        assert pod in api.names("persistentvolumeclaims")
        assert not {pod, pod + "-env", pod + "-init"} & (
            api.names("pods") | api.names("services") | api.names("secrets")
        )
        assert pod not in api.names("networkpolicies", "networking.k8s.io/v1")
        await again.remove(ws, keep_files=False)
        assert pod not in api.names("persistentvolumeclaims")
        await again.close()

    asyncio.run(scenario())
    # Status came from one watch, not from polling the API server.
    pod_reads = [
        (r.action, r.name)
        for r in api.emulator
        if r.resource is not None
        and r.resource.plural == "pods"
        and r.method == kmock.method.GET
        and r.subresource is None
    ]
    assert (
        sum(1 for action, _ in pod_reads if action == kmock.action.WATCH) <= 3
    )  # one per backend instance, and a re-opened one at most
    assert not [name for action, name in pod_reads if action == kmock.action.FETCH]


def test_a_pod_that_never_gets_ready_times_out(api: KubeApi, tmp_path: Path) -> None:
    s = settings(api, tmp_path, start_timeout_s=1.5)
    ws = spec(s)

    async def scenario() -> None:
        backend = KubernetesBackend(s)
        try:
            with pytest.raises(BackendError) as exc:
                await backend.start(ws)
            assert exc.value.code == "engine_start_timeout" and "not ready within 2 s" in exc.value.message
            assert manifests.name_of(UID) not in api.names("pods")
        finally:
            await backend.close()

    asyncio.run(scenario())


def test_seed_folder_is_fetched_once(api: KubeApi, tmp_path: Path) -> None:
    """What provisioning made is handed to the first pod (a URL and a token), then removed here."""
    s = settings(api, tmp_path, seed_url="http://10.9.9.9:8000")
    ws = spec(s)
    (ws.files_dir).mkdir(parents=True)
    (ws.files_dir / "README.md").write_text("hello")
    pod = manifests.name_of(UID)

    async def scenario() -> None:
        backend = KubernetesBackend(s)
        task = asyncio.create_task(backend.start(ws))
        made = await asyncio.to_thread(wait_for, lambda: api.get("pods", pod), 10, "the pod")
        env = made["spec"]["initContainers"][0]["env"]
        assert env == [{"name": "DEVYARD_SEED_URL", "value": f"http://10.9.9.9:8000/api/v1/internal/seed/{UID}"}]
        token = api.secret_data(pod + "-init")["seed-token"]
        assert backend.seeds.root_for(UID, token) == ws.root and backend.seeds.root_for(UID, token + "x") is None
        api.set_status(pod, ready("10.0.0.1"))
        await task
        assert backend.seeds.root_for(UID, token) is None  # the start is over: the token no longer works
        assert not ws.files_dir.exists()  # the volume holds the files now
        await backend.stop(ws, timeout=1)
        task = asyncio.create_task(backend.start(ws))
        made = await asyncio.to_thread(wait_for, lambda: api.get("pods", pod), 10, "the pod")
        assert made["spec"]["initContainers"][0]["env"] == []  # nothing left to fetch
        assert "seed-token" not in api.secret_data(pod + "-init")
        api.set_status(pod, ready("10.0.0.1"))
        await task
        await backend.close()

    asyncio.run(scenario())
