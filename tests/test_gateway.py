"""The gateway in front of real engines: authentication, authorization, streaming, WebSocket relay."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.support import ADMIN_PASSWORD, Manager, peer, start_manager, wait_for

ECHO = Path(__file__).parent / "peers" / "echo_server.py"


@pytest.fixture(scope="module")
def ws(manager: Manager) -> str:
    """A running workspace `gw` of admin's, shared by this module."""
    with manager.api() as api:
        assert api.post("/workspaces", json={"name": "gw"}).status_code == 201
    manager.wait_status("gw", "running")
    return "gw"


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    """An HTTP+WebSocket echo server on loopback, reached through the workspace's port forwarding."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with peer([sys.executable, str(ECHO), str(port)]):
        yield port


@contextmanager
def session(manager: Manager, user: str = "admin", password: str = ADMIN_PASSWORD) -> Iterator[httpx.Client]:
    """A client logged in with a password (a browser-like cookie session)."""
    with httpx.Client(base_url=manager.url, timeout=60) as c:
        assert c.post("/api/v1/auth/login", json={"username": user, "password": password}).status_code == 200
        yield c


def ws_url(manager: Manager, path: str) -> str:
    return manager.url.replace("http://", "ws://") + path


def test_unauthenticated_requests_never_reach_the_engine(manager: Manager, ws: str) -> None:
    r = httpx.get(manager.url + "/w/admin/gw/some/path?x=1", headers={"accept": "text/html"})
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/w/admin/gw/some/path%3Fx%3D1"
    r = httpx.get(manager.url + "/w/admin/gw/")
    assert r.status_code == 401 and r.json()["error"]["code"] == "not_authenticated"
    r = httpx.get(manager.url + "/w/admin/gw/", headers={"authorization": "Bearer dy_forged"})
    assert r.status_code == 401
    with pytest.raises(InvalidStatus) as exc:
        connect(ws_url(manager, "/w/admin/gw/"), origin=manager.url).close()  # type: ignore[arg-type]
    assert (
        exc.value.response.status_code == 401
        and exc.value.response.body
        and b"not_authenticated" in exc.value.response.body
    )


def test_login_page_then_back(manager: Manager, ws: str) -> None:
    with httpx.Client(base_url=manager.url) as c:
        page = c.get("/login", params={"next": "/w/admin/gw/"})
        assert page.status_code == 200 and 'name="password"' in page.text
        r = c.post("/login", data={"username": "admin", "password": "nope", "next": "/w/admin/gw/"})
        assert r.status_code == 401 and "wrong user name or password" in r.text
        r = c.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD, "next": "/w/admin/gw/"})
        assert r.status_code == 303 and r.headers["location"] == "/w/admin/gw/"
        assert c.get("/w/admin/gw/").status_code == 302  # the engine's own redirect to ./?folder=
        r = c.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD, "next": "//evil.example/"})
        assert r.headers["location"] == "/"


def test_trailing_slash_redirect(manager: Manager, ws: str) -> None:
    with manager.api() as api:
        r = httpx.get(manager.url + "/w/admin/gw?folder=x", headers=api.headers)
        assert r.status_code == 302 and r.headers["location"] == "/w/admin/gw/?folder=x"
        # An upgrade cannot follow a redirect: a WebSocket there is told plainly that nothing is there.
        with pytest.raises(InvalidStatus) as exc:
            connect(
                ws_url(manager, "/w/admin/gw"), additional_headers={"authorization": api.headers["authorization"]}
            ).close()
    assert exc.value.response.status_code == 404 and "location" not in exc.value.response.headers
    assert json.loads(exc.value.response.body or b"{}")["error"]["code"] == "not_found"


def test_nobody_but_the_owner_gets_in(manager: Manager, ws: str) -> None:
    out = manager.cli(
        "user",
        "add",
        "frank",
        "--password-stdin",
        "--data-dir",
        str(manager.data_dir),
        token=None,
        input="frank-password\n",
    )
    assert out.returncode == 0, out.stderr
    with manager.api("frank") as frank:
        r = httpx.get(manager.url + "/w/admin/gw/", headers=frank.headers)
        assert r.status_code == 404 and r.json()["error"]["code"] == "workspace_not_found"
        assert frank.post("/workspaces", json={"name": "franks", "start": False}).status_code == 201
    with manager.api() as admin:  # admins do not get into other users' workspaces either
        r = httpx.get(manager.url + "/w/frank/franks/", headers=admin.headers)
        assert r.status_code == 404
    assert httpx.get(manager.url + "/w/admin/nosuch/", headers=admin.headers).status_code == 404


def test_workbench_page_and_compressed_assets_stream_through(manager: Manager, ws: str) -> None:
    with session(manager) as c:
        r = c.get("/w/admin/gw/")
        assert r.status_code == 302 and r.headers["location"].startswith("./?folder=")
        folder = str(manager.data_dir / "workspaces" / "admin" / "gw" / "files")
        assert folder in httpx.URL("http://x/" + r.headers["location"][2:]).params["folder"]
        page = c.get("/w/admin/gw/", params={"folder": folder})
        assert page.status_code == 200 and "workbench" in page.text
        asset = next(part.split('"')[0] for part in page.text.split('src="')[1:] if "workbench" in part.split('"')[0])
        url = "/w/admin/gw/" + asset.removeprefix("./")
        with c.stream("GET", url, headers={"accept-encoding": "gzip"}) as resp:
            assert resp.status_code == 200
            raw = b"".join(resp.iter_raw())
        if resp.headers.get("content-encoding") == "gzip":
            raw = gzip.decompress(raw)
        assert len(raw) > 1_000_000  # the workbench bundle, passed through whole


def test_port_forwarding_hides_devyard_credentials(manager: Manager, ws: str, echo_port: int) -> None:
    with session(manager) as c:
        c.cookies.set("mine", "kept")
        r = c.get(f"/w/admin/gw/proxy/{echo_port}/hello?q=1", headers={"x-custom": "yes"})
        assert r.status_code == 200, r.text
        seen = r.json()
        assert seen["path"] == "/hello?q=1"
        assert seen["headers"]["x-custom"] == "yes"
        # Encoded paths reach the engine as sent: a space, a non-ASCII name, an encoded slash.
        odd = c.get(f"/w/admin/gw/proxy/{echo_port}/my%20file/%C3%A9t%C3%A9%2Fx.txt?q=%2F")
        assert odd.status_code == 200 and odd.json()["path"] == "/my%20file/%C3%A9t%C3%A9%2Fx.txt?q=%2F", odd.text
        assert "mine=kept" in seen["headers"]["cookie"] and "devyard_session" not in seen["headers"]["cookie"]
    with manager.api() as api:
        r = httpx.get(manager.url + f"/w/admin/gw/proxy/{echo_port}/", headers=api.headers)
        assert r.status_code == 200 and "authorization" not in r.json()["headers"]


def test_websocket_relay_both_ways(manager: Manager, ws: str, echo_port: int) -> None:
    with session(manager) as c:
        cookie = f"devyard_session={c.cookies['devyard_session']}"
    url = ws_url(manager, f"/w/admin/gw/proxy/{echo_port}/ws")
    with connect(url, origin=manager.url, additional_headers={"cookie": cookie}, max_size=None) as conn:  # type: ignore[arg-type]
        conn.send("hello")
        assert conn.recv(timeout=10) == "hello"
        big = os.urandom(8 * 1024 * 1024)
        conn.send(big)
        assert conn.recv(timeout=30) == big
        for i in range(200):
            conn.send(f"m{i}")
        assert [conn.recv(timeout=10) for _ in range(200)] == [f"m{i}" for i in range(200)]
    # A page from another site may not open a WebSocket with the user's cookie.
    with pytest.raises(InvalidStatus) as exc:
        connect(url, origin="http://evil.example", additional_headers={"cookie": cookie}).close()  # type: ignore[arg-type]
    assert exc.value.response.status_code == 403


def test_visiting_a_stopped_workspace_starts_it(manager: Manager) -> None:
    with manager.api() as api:
        api.post("/workspaces", json={"name": "sleepy", "start": False})
        manager.wait_status("sleepy", "stopped")
    with session(manager) as c:
        r = c.get("/w/admin/sleepy/", headers={"accept": "text/html"})
        assert r.status_code == 503 and "Starting" in r.text
        r = c.get("/w/admin/sleepy/")
        assert r.status_code in (503, 302)
    manager.wait_status("sleepy", "running")
    with session(manager) as c:
        assert c.get("/w/admin/sleepy/").status_code == 302


def test_engine_killed_under_the_gateway(manager: Manager) -> None:
    with manager.api() as api:
        api.post("/workspaces", json={"name": "victim"})
        manager.wait_status("victim", "running")
        before = set(manager.engine_pids())
        with session(manager) as c:
            assert c.get("/w/admin/victim/").status_code == 302
            record = next(
                p
                for p in (manager.data_dir / "run" / "engines").glob("*.json")
                if json.loads(p.read_text()).get("name") == "victim"
            )
            os.killpg(json.loads(record.read_text())["pid"], signal.SIGKILL)
            r = wait_for(
                lambda: (resp := c.get("/w/admin/victim/")).status_code != 302 and resp, 10, "the gateway to notice"
            )
            assert r.status_code in (502, 503)
        # A crash, not a stop: the engine is restarted (a new process) and the log says why.
        wait_for(
            lambda: set(manager.engine_pids()) - before and api.get("/workspaces/victim").json()["status"] == "running",
            60,
            "the restart",
        )
        assert "exited" in "\n".join(api.get("/workspaces/victim/logs").json()["lines"])


def test_gateway_traffic_is_recorded_as_activity(engine: object, tmp_path: Path, echo_port: int) -> None:
    m = start_manager(tmp_path / "data", extra_env={"DEVYARD_ACTIVITY_FLUSH_S": "0.2"})
    try:
        with m.api() as api:
            api.post("/workspaces", json={"name": "busy"})
            m.wait_status("busy", "running")
            assert api.get("/workspaces/busy").json()["last_activity_at"] is None
            assert httpx.get(m.url + "/w/admin/busy/", headers=api.headers).status_code == 302
            first = wait_for(
                lambda: api.get("/workspaces/busy").json()["last_activity_at"], 10, "activity from an HTTP request"
            )
            url = ws_url(m, f"/w/admin/busy/proxy/{echo_port}/ws")
            with connect(url, additional_headers={"authorization": api.headers["authorization"]}) as conn:
                conn.send("ping")
                assert conn.recv(timeout=10) == "ping"
            wait_for(
                lambda: api.get("/workspaces/busy").json()["last_activity_at"] > first,
                10,
                "activity from WebSocket messages",
            )
    finally:
        m.stop()
