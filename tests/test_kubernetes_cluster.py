"""The kubernetes backend against a real cluster: runs when KUBECONFIG names one, skipped (saying so) otherwise.

The same flow as test_kubernetes_backend.py, with a real scheduler, kubelet and volume: create with
a volume, ready, stop keeping the volume, start again, adoption by a new backend, remove. The
namespace is DEVYARD_TEST_NAMESPACE (default `devyard-test`) and must exist; the engine image must
be pullable there.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

import pytest

from devyard.backends.base import WorkspaceSpec
from devyard.backends.kubernetes import manifests
from devyard.backends.kubernetes.backend import KubernetesBackend
from devyard.config import KubernetesSettings, load_settings

pytestmark = pytest.mark.skipif(
    not os.environ.get("KUBECONFIG"), reason="KUBECONFIG is not set: no real cluster to run against"
)


def test_lifecycle_on_a_real_cluster(tmp_path: Path) -> None:
    namespace = os.environ.get("DEVYARD_TEST_NAMESPACE", "devyard-test")
    s = load_settings(
        data_dir=tmp_path / "data",
        backend="kubernetes",
        kubernetes=KubernetesSettings(namespace=namespace, start_timeout_s=600),
    )
    ws = WorkspaceSpec(uid=secrets.token_hex(6), owner="ci", name="cluster-test", root=tmp_path / "ws")

    async def scenario() -> None:
        backend = KubernetesBackend(s)
        try:
            endpoint = await backend.start(ws)
            assert endpoint.host and endpoint.port == s.kubernetes.engine_port
            assert (await backend.status(ws)).state == "running"
            await backend.stop(ws, timeout=10)
            assert (await backend.status(ws)).state == "stopped"
            await backend.start(ws)
            again = KubernetesBackend(s)
            assert ws.uid in {a.uid for a in await again.adopt()}
            await again.close()
            assert any("HTTP server listening" in line for line in await backend.logs(ws, 100))
        finally:
            await backend.stop(ws, timeout=10)
            await backend.remove(ws, keep_files=False)
            await backend.close()

    asyncio.run(scenario())
    print(
        f"ran against the cluster of {os.environ['KUBECONFIG']}, namespace {namespace}, pod {manifests.name_of(ws.uid)}"
    )
