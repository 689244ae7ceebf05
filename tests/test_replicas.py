"""Two manager replicas on one PostgreSQL database (tests/pg.py): one leads the background work, either serves everything.

The coordination itself (store/coordination.py) against the real server: leadership by advisory
lock, handed over when the leader's connection goes; liveness of a replica; change notices. Then
two real managers on the kubernetes backend (kmock and the test node of tests/kube.py), as a
cluster deployment runs them: a workspace created through one is served by the other's gateway, a
stop through one reaches the other's route table, and when the leader is killed the other takes
over the background work (it fails the workspace whose pod was OOMKilled).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from devyard.config import load_settings
from devyard.engine.install import Engine
from devyard.store.coordination import RETRY_S, PostgresCoordinator
from devyard.store.db import migrate
from tests.kube import KubeApi, Node, ended
from tests.pg import Postgres
from tests.support import ADMIN_PASSWORD, Manager, free_port, start_manager, wait_for


def test_leadership_liveness_and_notices(pg: Postgres) -> None:
    url = load_settings(database_url=pg.create_database("coordination")).db_url
    migrate(url)

    async def scenario() -> None:
        first, second = PostgresCoordinator(url, "replica-a"), PostgresCoordinator(url, "replica-b")
        heard: list[str] = []
        changes: list[bool] = []

        async def leadership(leading: bool) -> None:
            changes.append(leading)

        await first.connect()
        await second.connect()
        assert (first.leader, second.leader) == (True, False)
        second.watch(leadership, heard.append)
        first.watch(leadership, lambda uid: None)
        assert await second.alive("replica-a") and await first.alive("replica-b") and await first.alive("replica-a")
        assert not await first.alive("replica-gone")

        from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

        engine = create_async_engine(url)
        async with AsyncSession(engine) as s:
            await first.notify(s, "uid-one")
            await s.rollback()  # never committed: never heard
        async with AsyncSession(engine) as s:
            await first.notify(s, "uid-two")
            await s.commit()
        await engine.dispose()
        for _ in range(50):
            if heard:
                break
            await asyncio.sleep(0.05)
        assert heard == ["uid-two"]

        began = time.monotonic()
        await first.close()  # the leader goes: the other takes over within a round
        while not second.leader and time.monotonic() - began < 4 * RETRY_S:
            await asyncio.sleep(0.1)
        assert second.leader and changes == [True]
        assert not await second.alive("replica-a")
        await second.close()

    asyncio.run(scenario())


@pytest.fixture
def cluster(engine: Engine, tmp_path: Path) -> Iterator[tuple[KubeApi, Node]]:
    with KubeApi(tmp_path) as api, Node(api, engine, tmp_path / "node") as node:
        yield api, node


def leads(m: Manager) -> bool:
    text = httpx.get(m.url + "/metrics", headers={"authorization": f"Bearer {m.token()}"}, timeout=10).text
    return "devyard_leader 1.0" in text


def test_two_replicas(pg: Postgres, cluster: tuple[KubeApi, Node], tmp_path: Path) -> None:
    api, node = cluster
    env = {
        "DEVYARD_DATABASE_URL": pg.create_database("replicas"),
        "DEVYARD_BACKEND": "kubernetes",
        "DEVYARD_KUBERNETES__KUBECONFIG": str(api.kubeconfig),
        "DEVYARD_KUBERNETES__ENGINE_PORT": str(free_port()),
        "DEVYARD_SUPERVISE_INTERVAL_S": "0.2",
    }
    a = start_manager(tmp_path / "a", env)
    # The replicas share their keys (a deployment mounts one Secret into each): sessions and secrets work on either.
    shutil.copytree(tmp_path / "a" / "secrets", tmp_path / "b" / "secrets")
    b = start_manager(tmp_path / "b", env)
    try:
        assert leads(a) and not leads(b)
        with a.api() as client:
            assert client.post("/workspaces", json={"name": "both"}).status_code == 201
        a.wait_status("both", "running", timeout=120)
        with httpx.Client(base_url=b.url, timeout=60) as browser:  # B never touched it: its route came through NOTIFY
            assert (
                browser.post("/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}).status_code
                == 200
            )
            wait_for(lambda: browser.get("/w/admin/both/").status_code == 302, 10, "B's gateway to reach the engine")

        # A token revoked through A closes what it opened through B at once (A's notice, over NOTIFY).
        with a.api() as client:
            made = client.post("/tokens", json={"name": "short"}).json()
        editor = (
            b.url.replace("http://", "ws://")
            + "/w/admin/both/stable-x?reconnectionToken=t&reconnection=false&skipWebSocketFrames=false"
        )
        with connect(editor, additional_headers={"authorization": f"Bearer {made['token']}"}, open_timeout=30) as conn:
            with pytest.raises(TimeoutError):
                conn.recv(timeout=0.3)  # open, and quiet
            with a.api() as client:
                assert client.delete(f"/tokens/{made['id']}").status_code == 204
            with pytest.raises(ConnectionClosed):
                conn.recv(timeout=1.0)

        with b.api() as client:  # a stop through B reaches A's route table
            assert client.post("/workspaces/both/stop").status_code == 202
        b.wait_status("both", "stopped")
        metrics = lambda: httpx.get(a.url + "/metrics", headers={"authorization": f"Bearer {a.token()}"}).text  # noqa: E731
        wait_for(lambda: 'devyard_workspaces{status="stopped"} 1.0' in metrics(), 10, "A's route table to say stopped")
        with b.api() as client:
            assert client.post("/workspaces/both/start").status_code == 202
        b.wait_status("both", "running", timeout=120)

        a.proc.kill()  # the leader dies without a word: B takes over the background work
        a.proc.wait()
        wait_for(lambda: leads(b), 15, "B to lead")
        pod = next(
            p["metadata"]["name"] for p in api.list("pods") if p["metadata"]["labels"]["devyard.io/workspace"] == "both"
        )
        api.set_status(pod, ended(137, "OOMKilled"))
        assert b.wait_status("both", "failed", timeout=30)["reason"] == "out_of_memory"  # B's supervisor saw it

        a = start_manager(tmp_path / "a", env)  # back, but B leads now
        assert not leads(a) and leads(b)
        with a.api() as client:
            assert client.get("/workspaces/both").json()["status"] == "failed"
            assert client.delete("/workspaces/both").status_code == 204
        wait_for(
            lambda: not any(p["metadata"]["labels"].get("devyard.io/workspace") == "both" for p in api.list("pods")),
            30,
            "the pod to go",
        )
    finally:
        a.stop()
        b.stop()
