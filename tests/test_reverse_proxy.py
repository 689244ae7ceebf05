"""devyard behind Debian's real nginx, configured with docs/nginx.conf (TLS terminated by nginx)."""

from __future__ import annotations

import os
import socket
import ssl
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from devyard.tls import self_signed
from tests.browser import chromium
from tests.support import ADMIN_PASSWORD, Manager, free_port, kill_tree, start_manager, wait_for

NGINX = "/usr/sbin/nginx"
EXAMPLE = Path(__file__).parent.parent / "docs" / "nginx.conf"
ECHO = Path(__file__).parent / "peers" / "echo_server.py"


@pytest.fixture
def stack(engine: object, tmp_path: Path) -> Iterator[tuple[Manager, str, str]]:
    """(manager, nginx URL, CA file): the documented nginx config in front of a manager in path mode, over its unix socket, trusting no address."""
    yield from _stack(tmp_path, free_port(), {})


# The wildcard's stand-in: Chromium resolves every *.localhost name to this machine by itself.
DASHBOARD_HOST, WORKSPACE_DOMAIN = "localhost", "ws.localhost"


@pytest.fixture
def wildcard_stack(engine: object, tmp_path: Path) -> Iterator[tuple[Manager, str, str]]:
    """The same, with workspaces on origins of their own under the wildcard server name (URL: the dashboard's)."""
    port = free_port()
    public = f"https://{DASHBOARD_HOST}:{port}"
    yield from _stack(
        tmp_path, port, {"DEVYARD_WORKSPACE_DOMAIN": WORKSPACE_DOMAIN, "DEVYARD_PUBLIC_URL": public}, public
    )


def _stack(
    tmp_path: Path, port: int, env: dict[str, str], url: str | None = None
) -> Iterator[tuple[Manager, str, str]]:
    sock = tmp_path / "run" / "devyard.sock"
    manager = start_manager(tmp_path / "data", extra_env=env, args=("--uds", str(sock)))
    assert stat.S_IMODE(sock.stat().st_mode) == 0o660 and stat.S_ISSOCK(sock.stat().st_mode)
    cert, key = self_signed(tmp_path / "tls", "127.0.0.1", WORKSPACE_DOMAIN)
    upstream = f"unix:{sock}"
    site = (
        EXAMPLE.read_text()
        .replace("server unix:/run/devyard/devyard.sock;", f"server {upstream};")
        .replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
        .replace(
            "server_name devyard.example.org *.ws.example.org;",
            f"server_name {DASHBOARD_HOST} 127.0.0.1 *.{WORKSPACE_DOMAIN};",
        )
        .replace("/etc/ssl/devyard/fullchain.pem", str(cert))
        .replace("/etc/ssl/devyard/privkey.pem", str(key))
    )
    assert site.count(str(cert)) == 1 and f"server {upstream};" in site and f"*.{WORKSPACE_DOMAIN}" in site, (
        "docs/nginx.conf changed shape: update this test"
    )
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    (prefix / "devyard.conf").write_text(site)
    temps = "\n".join(
        f"    {kind}_temp_path {prefix / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # Workers as root: the test's socket lies below pytest's private folders (the docs give www-data its own).
    (prefix / "nginx.conf").write_text(
        f"daemon off;\nuser root;\npid {prefix / 'nginx.pid'};\nerror_log {prefix / 'error.log'} warn;\nevents {{}}\n"
        f"http {{\n    access_log {prefix / 'access.log'};\n{temps}\n    include {prefix / 'devyard.conf'};\n}}\n"
    )
    proc = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = url or f"https://127.0.0.1:{port}"
    try:

        def up() -> bool:
            assert proc.poll() is None, (prefix / "error.log").read_text()
            try:
                return (
                    httpx.get(
                        f"https://127.0.0.1:{port}/healthz", verify=ssl.create_default_context(cafile=str(cert))
                    ).status_code
                    == 200
                )
            except httpx.TransportError:
                return False

        wait_for(up, 30, "nginx to proxy /healthz")
        yield manager, url, str(cert)
    finally:
        kill_tree(proc.pid)
        proc.wait()
        manager.stop()


def test_workspace_and_websockets_through_nginx(stack: tuple[Manager, str, str]) -> None:
    manager, url, ca = stack
    ctx = ssl.create_default_context(cafile=ca)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        echo_port = s.getsockname()[1]
    echo = subprocess.Popen([sys.executable, str(ECHO), str(echo_port)], stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert echo.stdout is not None and echo.stdout.readline().strip() == b"ready"
        # The browser's side: it reaches nginx from 127.0.0.3.
        with httpx.Client(
            base_url=url, verify=ctx, transport=httpx.HTTPTransport(verify=ctx, local_address="127.0.0.3")
        ) as c:
            r = c.post("/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
            assert r.status_code == 200
            assert "secure" in r.headers["set-cookie"].lower()  # devyard knows the browser used https
            assert c.post("/api/v1/workspaces", json={"name": "proxied"}, headers={"origin": url}).status_code == 201
            manager.wait_status("proxied", "running")
            assert c.get("/w/admin/proxied/").status_code == 302
            cookie = f"devyard_session={c.cookies['devyard_session']}"
        wss = url.replace("https://", "wss://")
        engine_ws = wss + "/w/admin/proxied/stable-x?reconnectionToken=t&reconnection=false&skipWebSocketFrames=false"
        with connect(engine_ws, ssl=ctx, origin=url, additional_headers={"cookie": cookie}) as conn:  # type: ignore[arg-type]
            assert conn.protocol.state.name == "OPEN"
        with connect(
            wss + f"/w/admin/proxied/proxy/{echo_port}/ws",
            ssl=ctx,
            origin=url,
            additional_headers={"cookie": cookie},
            max_size=None,
        ) as conn:  # type: ignore[arg-type]
            big = os.urandom(8 * 1024 * 1024)
            conn.send(big)
            assert conn.recv(timeout=30) == big
    finally:
        kill_tree(echo.pid)
        echo.wait()
        if echo.stdout:
            echo.stdout.close()
    with manager.api() as api:
        logins = api.get("/audit", params={"action": "login"}).json()
        assert logins[0]["address"] == "127.0.0.3"  # X-Forwarded-For believed: it came from the trusted nginx


def test_forwarded_headers_from_others_are_ignored(stack: tuple[Manager, str, str], tmp_path: Path) -> None:
    manager, _, _ = stack
    # Loopback is trusted by nobody now: a process on this host (a terminal) cannot claim another address.
    for local in ("127.0.0.1", "127.0.0.2"):
        with httpx.Client(base_url=manager.url, transport=httpx.HTTPTransport(local_address=local)) as direct:
            r = direct.post(
                "/api/v1/auth/login",
                json={"username": "admin", "password": ADMIN_PASSWORD},
                headers={"x-forwarded-for": "6.6.6.6", "x-forwarded-proto": "https"},
            )
            assert r.status_code == 200 and "secure" not in r.headers["set-cookie"].lower()
        with manager.api() as api:
            assert api.get("/audit", params={"action": "login"}).json()[0]["address"] == local
    # Over the unix socket, the proxy's own addition (the last address) is the client, whatever came before it.
    with httpx.Client(
        base_url="http://devyard", transport=httpx.HTTPTransport(uds=str(tmp_path / "run" / "devyard.sock"))
    ) as proxied:
        r = proxied.post(
            "/api/v1/auth/login",
            json={"username": "admin", "password": ADMIN_PASSWORD},
            headers={"x-forwarded-for": "6.6.6.6, 10.1.2.3", "x-forwarded-proto": "https"},
        )
        assert r.status_code == 200 and "secure" in r.headers["set-cookie"].lower()
    with manager.api() as api:
        assert api.get("/audit", params={"action": "login"}).json()[0]["address"] == "10.1.2.3"


def test_browser_workbench_through_nginx(stack: tuple[Manager, str, str], tmp_path: Path) -> None:
    manager, url, _ = stack
    with manager.api() as api:
        api.post("/workspaces", json={"name": "viaproxy"})
    manager.wait_status("viaproxy", "running")
    closed: list[str] = []
    with chromium(tmp_path / "profile", ignore_https_errors=True) as browser:
        page = browser.new_page()
        page.on("websocket", lambda ws: ws.on("close", lambda w: closed.append(w.url)))
        page.goto(url + "/w/admin/viaproxy/")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", ADMIN_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_selector(".monaco-workbench", timeout=90_000)
        page.locator(".explorer-folders-view").wait_for(timeout=90_000)
        page.wait_for_timeout(3000)  # long enough for a refused WebSocket to show as a close
        assert not closed, f"WebSockets closed through nginx: {closed}"
        assert not page.locator("text=reconnect").count()


def test_workspace_origins_through_nginx_with_a_wildcard_server_name(
    wildcard_stack: tuple[Manager, str, str], tmp_path: Path
) -> None:
    manager, url, _ = wildcard_stack
    port = url.rsplit(":", 1)[1]
    with manager.api() as api:
        made = api.post("/workspaces", json={"name": "wild"}).json()
    assert (
        made["url"] == f"https://wild--admin.{WORKSPACE_DOMAIN}:{port}/"
    )  # from public_url, whatever Host the API saw
    manager.wait_status("wild", "running")
    closed: list[str] = []
    with chromium(tmp_path / "profile", ignore_https_errors=True) as browser:
        page = browser.new_page()
        page.on("websocket", lambda ws: ws.on("close", lambda w: closed.append(w.url)))
        page.goto(made["url"])  # not signed in: to the dashboard's login, then back with a one-time code
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", ADMIN_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_selector(".monaco-workbench", timeout=90_000)
        page.locator(".explorer-folders-view").wait_for(timeout=90_000)
        assert page.url.startswith(made["url"])
        cookies = {c["name"]: c for c in browser.cookies()}
        assert cookies["devyard_ws"]["secure"] and cookies["devyard_ws"]["domain"] == f"wild--admin.{WORKSPACE_DOMAIN}"
        page.wait_for_timeout(3000)  # long enough for a refused WebSocket to show as a close
        assert not closed, f"WebSockets closed through nginx: {closed}"
    # A name nginx serves but that is no host of this manager's is refused by devyard itself.
    with httpx.Client(verify=False) as c:
        r = c.get(f"https://127.0.0.1:{port}/healthz", headers={"host": f"elsewhere.{DASHBOARD_HOST}"})
        assert r.status_code == 421
