"""The Backend contract (backends/base.py), run against every backend through its entry point.

local: the real engine as a detached process. kubernetes: kmock's API emulator, with a node
(tests/kube.py) running each pod's real engine on this machine. The same tests, the same
promises: start answers, status follows, a new backend instance adopts what runs, stop ends it,
remove deletes it, and no OSError leaves a backend.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devyard.backends import load_backend
from devyard.backends.base import Backend, Endpoint, Stats, WorkspaceSpec
from devyard.config import KubernetesSettings, Settings, load_settings
from devyard.engine.install import Engine
from devyard.errors import BackendError
from tests.kube import KubeApi, Node
from tests.support import free_port

BACKENDS = ["local", "kubernetes"]
GONE_DEADLINE_S = 30.0


class World:
    """One backend's settings, its workspaces, and a sweep that stops every engine a test started."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started: list[WorkspaceSpec] = []

    def backend(self) -> Backend:
        """A new backend instance, as a (re)started manager makes it."""
        return load_backend(self.settings)

    def spec(self, uid: str = "aaaa11112222", name: str = "proj") -> WorkspaceSpec:
        ws = WorkspaceSpec(uid=uid, owner="ann", name=name, root=self.settings.workspaces_dir / "ann" / name)
        self.started.append(ws)
        return ws

    def sweep(self) -> None:
        """Stop what a failed test may have left running."""

        async def stop_all() -> None:
            backend = self.backend()
            try:
                for ws in self.started:
                    await backend.stop(ws, timeout=5)
            finally:
                await backend.close()

        asyncio.run(stop_all())


@pytest.fixture(params=BACKENDS)
def world(request: pytest.FixtureRequest, engine: Engine, tmp_path: Path) -> Iterator[World]:
    if request.param == "local":
        found = World(load_settings(data_dir=tmp_path / "data", engine_start_timeout_s=60))
        try:
            yield found
        finally:
            found.sweep()
        return
    with KubeApi(tmp_path) as api, Node(api, engine, tmp_path / "node") as node:
        api.emulator["get", re.compile(r"/api/v1/namespaces/devyard/pods/[^/]+/log")] << node.log_answer
        k8s = KubernetesSettings(kubeconfig=api.kubeconfig, start_timeout_s=120, engine_port=free_port())
        found = World(load_settings(data_dir=tmp_path / "data", backend="kubernetes", kubernetes=k8s))
        try:
            yield found
        finally:
            found.sweep()  # the node ends the engines of deleted pods, and every engine when it stops


async def answers(endpoint: Endpoint) -> bool:
    """Whether an engine answers /healthz at `endpoint` (a unix socket or host:port)."""
    transport = httpx.AsyncHTTPTransport(uds=endpoint.unix_socket) if endpoint.unix_socket else None
    base = "http://engine" if endpoint.unix_socket else f"http://{endpoint.address}"
    try:
        async with httpx.AsyncClient(transport=transport, timeout=5) as client:
            return (await client.get(base + "/healthz")).status_code == 200
    except httpx.TransportError:
        return False


async def until_silent(endpoint: Endpoint) -> None:
    """Wait until nothing answers at `endpoint` any more (a node ends a deleted pod's engine a moment later)."""
    deadline = time.monotonic() + GONE_DEADLINE_S
    while await answers(endpoint):
        assert time.monotonic() < deadline, f"the engine at {endpoint.address} still answers after its stop"
        await asyncio.sleep(0.1)


def test_an_unknown_workspace_is_stopped(world: World) -> None:
    ws = world.spec("bbbb11112222", "never")

    async def scenario() -> None:
        backend = world.backend()
        try:
            status = await backend.status(ws)
            assert (status.uid, status.state, status.endpoint) == (ws.uid, "stopped", None)
            assert await backend.stats(ws) == Stats(cpu_percent=0.0, memory_bytes=0, uptime_s=0.0, disk_bytes=0)
            ports = await backend.listening_ports(ws)
            assert ports is None or ports == []
            assert await backend.logs(ws, 10) == []
            assert await backend.adopt() == []
            await backend.stop(ws, timeout=1)  # stopping what does not run is a no-op
            await backend.remove(ws, keep_files=False)  # so is removing what was never made
            assert (await backend.status(ws)).state == "stopped"
        finally:
            await backend.close()

    asyncio.run(scenario())


def test_lifecycle(world: World) -> None:
    ws = world.spec()

    async def scenario() -> None:
        backend = world.backend()
        try:
            endpoint = await backend.start(ws)
            assert endpoint.unix_socket or (endpoint.host and endpoint.port)
            assert await answers(endpoint)  # start returns once the engine answers
            running = await backend.status(ws)
            assert running.state == "running" and running.endpoint == endpoint and running.started_at
            assert await backend.start(ws) == endpoint  # already running: the same engine, no second one

            stats = await backend.stats(ws)
            assert isinstance(stats, Stats)
            assert stats.cpu_percent >= 0 and stats.memory_bytes >= 0 and stats.uptime_s >= 0 and stats.disk_bytes >= 0
            ports = await backend.listening_ports(ws)
            assert ports is None or (isinstance(ports, list) and all(isinstance(p, int) for p in ports))
            lines = await backend.logs(ws, 200)
            assert all(isinstance(line, str) for line in lines) and len(lines) <= 200
            assert any("HTTP server listening" in line for line in lines), lines
            await backend.write_files(
                dataclasses.replace(ws, files={".netrc": "machine example.com"}), []
            )  # while it runs

            # A new instance (a restarted manager) finds the running engine without any manager state.
            again = world.backend()
            try:
                adopted = await again.adopt()
                assert [(a.uid, a.state, a.endpoint) for a in adopted] == [(ws.uid, "running", endpoint)]
            finally:
                await again.close()

            await backend.stop(ws, timeout=5)
            assert (await backend.status(ws)).state == "stopped"
            await until_silent(endpoint)
            await backend.stop(ws, timeout=5)  # stopping a stopped engine is a no-op
            assert await backend.adopt() == []

            await backend.remove(ws, keep_files=False)
            assert (await backend.status(ws)).state == "stopped" and not ws.root.exists()
        finally:
            await backend.close()

    asyncio.run(scenario())


def test_no_os_error_leaves_a_backend(world: World) -> None:
    """A real OSError (a file where the log folder belongs) reaches the caller as the promised BackendError."""
    ws = world.spec("cccc11112222", "broken")
    ws.root.mkdir(parents=True)
    (ws.root / "logs").write_text("a file where a folder belongs")

    async def scenario() -> None:
        backend = world.backend()
        try:
            with pytest.raises(BackendError) as exc:
                await backend.logs(ws, 10)
        finally:
            await backend.close()
        assert exc.value.code == "backend_error" and isinstance(exc.value.__cause__, NotADirectoryError)
        assert (
            exc.value.message.startswith("could not read the log of workspace ann/broken: ")
            and str(ws.log_file) in exc.value.message
        )

    asyncio.run(scenario())
