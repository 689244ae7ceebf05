"""Workspace origins: each workspace and port on a host of its own under `*.localhost`, signed in by a one-time code.

One manager with `workspace_domain: localhost` (the default on a loopback bind; the rest of the
suite runs in path mode) and public ports allowed. alice owns `app` and shares it with bob; carol
is anyone else. alice's workbench stays open in headless Chromium for the whole module, and a
small web server she starts in its terminal (a real tenant process, inside the workspace) serves
an app with absolute asset paths, records the headers it receives, and answers WebSocket upgrades.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from devyard.engine import install
from tests.browser import WORKBENCH_TIMEOUT_MS, chromium, open_terminal, run_in_terminal, shot
from tests.support import Manager, start_manager, wait_for

PASSWORD = "correct horse battery"
APP_PORT = 8123
EDITOR_WS = "/stable-x?reconnectionToken=t&reconnection=false&skipWebSocketFrames=false"
SERVER = r"""
import base64, hashlib, http.server, json, socketserver, sys
LOG = sys.argv[2]

class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        with open(LOG, "a") as f:
            f.write(json.dumps({"path": self.path, "host": self.headers.get("host", ""), "cookie": self.headers.get("cookie", ""),
                                "authorization": self.headers.get("authorization", "")}) + "\n")
        if self.headers.get("upgrade", "").lower() == "websocket":
            key = self.headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", base64.b64encode(hashlib.sha1(key.encode()).digest()).decode())
            self.end_headers()
            self.wfile.write(b"\x81\x05hello")
            self.wfile.flush()
            try:
                while self.rfile.read(1):
                    pass
            except OSError:
                pass
            return
        if self.path == "/app.js":
            body, kind = b"document.title = 'spa-ok'; document.body.dataset.spa = location.host;", "text/javascript"
        else:
            body, kind = b"<!doctype html><html><head><title>spa</title></head><body><script src='/app.js'></script></body></html>", "text/html"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

print("serving on http://localhost:%s" % sys.argv[1], flush=True)
Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


@dataclass
class Site:
    """The manager, its users' tokens, and alice's open workbench."""

    m: Manager
    port: int
    tokens: dict[str, str]
    files: Path
    page: Page
    context: BrowserContext
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def dashboard(self) -> str:
        return f"http://localhost:{self.port}"

    def host(self, port: int | None = None) -> str:
        return (f"{port}--" if port else "") + f"app--alice.localhost:{self.port}"

    def get(self, path: str, host: str, **headers: str) -> httpx.Response:
        """A request sent to the manager's address with a workspace host's Host header (glibc does not resolve *.localhost)."""
        return httpx.get(self.m.url + path, headers={"host": host, **headers}, follow_redirects=False, timeout=30)

    def bearer(self, user: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.tokens[user]}"}

    def ws(self, host: str, path: str = "/", **headers: str) -> ClientConnection:
        """A WebSocket to `host` through the manager's address (the URI's host is what the Host header says)."""
        uri = f"ws://{host}{path}"
        sock = socket.create_connection(("127.0.0.1", self.port))
        conn = connect(uri, sock=sock, additional_headers=headers, open_timeout=30)
        return conn.__enter__()  # used in `with` blocks, or held across calls (both close it)

    def login(self, user: str, password: str = PASSWORD) -> httpx.Client:
        """A browser-like client logged in on the dashboard (its session cookie is host-only there)."""
        client = httpx.Client(
            base_url=self.m.url, headers={"host": f"localhost:{self.port}"}, follow_redirects=False, timeout=30
        )
        r = client.post("/api/v1/auth/login", json={"username": user, "password": password})
        assert r.status_code == 200, r.text
        return client

    def signed_in(self, client: httpx.Client, host: str) -> str:
        """Walk the sign-in to a workspace host as a browser would; returns that origin's own cookie."""
        r = client.get("/auth/workspace", params={"host": host, "next": "/"})
        assert r.status_code == 302, r.text
        to = urlsplit(r.headers["location"])
        assert to.netloc == host and to.path == "/_devyard/auth"
        r = self.get(f"{to.path}?{to.query}", host)
        assert r.status_code == 302 and r.headers["location"] == "/", r.text
        cookie = r.cookies.get("devyard_ws")
        assert cookie
        return cookie


def _closes_within(conn: ClientConnection, seconds: float) -> bool:
    """Whether the connection is closed by the other end within `seconds` (messages it sends meanwhile are read)."""
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            conn.recv(timeout=left)
    except ConnectionClosed:
        return True
    except TimeoutError:
        return False
    return False


def _still_open(conn: ClientConnection) -> bool:
    return not _closes_within(conn, 0.3)


@pytest.fixture(scope="module")
def site(engine: install.Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    base = tmp_path_factory.mktemp("origins")
    m = start_manager(
        base / "data", extra_env={"DEVYARD_WORKSPACE_DOMAIN": "localhost", "DEVYARD_PUBLIC_PORTS": "true"}
    )
    try:
        port = int(m.url.rsplit(":", 1)[1])
        with m.api() as admin:
            for user in ("alice", "bob", "carol"):
                assert admin.post("/users", json={"name": user, "password": PASSWORD}).status_code == 201
        tokens = {user: m.token(user) for user in ("alice", "bob", "carol")}
        with m.api(tokens["alice"]) as alice:
            created = alice.post("/workspaces", json={"name": "app"})
            assert created.status_code == 201, created.text
            assert created.json()["url"] == f"http://app--alice.localhost:{port}/"  # absolute: its own origin
            assert alice.post("/workspaces/app/shares", json={"user": "bob"}).status_code == 201
        m.wait_status("app", "running", token=tokens["alice"])
        files = m.data_dir / "workspaces" / "alice" / "app" / "files"
        (files / "server.py").write_text(SERVER)
        with chromium(base / "profile") as context:
            page = context.new_page()
            # Signed in on the dashboard only: the workspace's origin gets its own cookie through the code.
            page.goto(f"http://localhost:{port}/login")
            page.fill("input[name=username]", "alice")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector("#workspaces", state="attached")
            open_terminal(page, f"http://app--alice.localhost:{port}/")
            run_in_terminal(page, f"python3 server.py {APP_PORT} requests.log")
            site = Site(m, port, tokens, files, page, context)
            wait_for(
                lambda: site.get("/", site.host(APP_PORT), **site.bearer("alice")).status_code == 200,
                60,
                "alice's app to answer",
            )
            yield site
    finally:
        m.stop()


def test_the_workbench_opens_on_its_own_origin_signed_in_from_the_dashboard(site: Site) -> None:
    page = site.page
    assert urlsplit(page.url).netloc == site.host()
    shot(page, "origins-workbench")
    cookies = {c["name"]: c for c in site.context.cookies()}
    assert cookies["devyard_session"]["domain"] == "localhost"  # host-only on the dashboard's host
    assert cookies["devyard_ws"]["domain"] == "app--alice.localhost" and cookies["devyard_ws"]["httpOnly"]
    assert cookies["devyard_ws"]["sameSite"] == "Lax"


def test_a_workspace_page_cannot_use_the_dashboard_api(site: Site) -> None:
    page = site.page
    with site.m.api(site.tokens["alice"]) as alice:
        before = len(alice.get("/tokens").json())
    outcome = page.evaluate(
        """async (api) => {
        const out = {};
        try { const r = await fetch(api + "/api/v1/me", {credentials: "include"}); out.read = r.status; }
        catch (e) { out.read = "refused"; }
        try {
            await fetch(api + "/api/v1/tokens", {method: "POST", mode: "no-cors", credentials: "include",
                headers: {"content-type": "text/plain"}, body: JSON.stringify({name: "stolen", scope: "admin"})});
            out.write = "sent";
        } catch (e) { out.write = "refused"; }
        return out;
    }""",
        site.dashboard,
    )
    assert outcome["read"] == "refused"  # no CORS: the answer never reaches the page
    with site.m.api(site.tokens["alice"]) as alice:
        assert len(alice.get("/tokens").json()) == before  # and nothing was created


def test_an_app_with_absolute_paths_works_at_its_port_origin_and_never_sees_devyard_cookies(site: Site) -> None:
    page = site.context.new_page()
    try:
        page.goto(f"http://{site.host(APP_PORT)}/")  # private: alice signs in to the port's origin the same way
        page.wait_for_function("document.title === 'spa-ok'", timeout=30_000)
        assert page.evaluate("document.body.dataset.spa") == site.host(APP_PORT)
        shot(page, "origins-port-app")
    finally:
        page.close()
    seen = [json.loads(line) for line in (site.files / "requests.log").read_text().splitlines()]
    assert any(r["path"] == "/app.js" for r in seen)
    assert not [
        r for r in seen if "devyard" in r["cookie"]
    ]  # neither the session nor the origin's own cookie reach the engine


def test_the_ports_view_shows_the_ports_own_origin(site: Site) -> None:
    page = site.page
    wanted = f"{APP_PORT}--app--alice.localhost"
    # The workbench forwards the port by itself once a process listens on it, and notifies with its address.
    _command(page, "Ports: Focus on Ports View")
    try:
        page.wait_for_selector(f"text={wanted}", timeout=WORKBENCH_TIMEOUT_MS)
    finally:
        shot(page, "origins-ports-view")
    with site.m.api(site.tokens["alice"]) as alice:
        listed = {p["port"]: p for p in alice.get("/workspaces/app/ports").json()}
    assert listed[APP_PORT]["listening"] and listed[APP_PORT]["url"] == f"http://{site.host(APP_PORT)}/"
    assert site.m.cli("ws", "ports", "app", token=site.tokens["alice"]).stdout.count(str(APP_PORT)) >= 1


def _command(page: Page, title: str) -> None:
    """Run a workbench command from the command palette."""
    page.keyboard.press("Control+Shift+P")
    page.wait_for_selector(".quick-input-widget input", state="visible")
    page.keyboard.type(title)
    page.wait_for_selector(f".quick-input-list .monaco-list-row[aria-label*='{title}']", timeout=30_000)
    page.keyboard.press("Enter")
    page.wait_for_selector(".quick-input-widget", state="hidden")


def test_the_workspace_page_lists_ports_and_lets_the_owner_choose(site: Site) -> None:
    page = site.context.new_page()
    try:
        page.goto(site.dashboard + "/workspaces/app")
        row = page.locator(f"#ports tr[data-port='{APP_PORT}']")
        row.wait_for()
        assert row.locator("a").get_attribute("href") == f"http://{site.host(APP_PORT)}/"
        assert page.locator("#path-mode-notice").count() == 0  # origins of their own: nothing to warn about
        row.locator("select").select_option("shared")
        page.wait_for_selector("#ports-message.ok")
        shot(page, "origins-workspace-ports")
    finally:
        page.close()
    with site.m.api(site.tokens["alice"]) as alice:
        listed = {p["port"]: p for p in alice.get("/workspaces/app/ports").json()}
    assert listed[APP_PORT]["visibility"] == "shared"


MATRIX = {  # visibility -> who gets in (the others: 404, or 401 for nobody)
    "private": {"alice"},
    "shared": {"alice", "bob"},
    "public": {"alice", "bob", "carol", None},
}


@pytest.mark.parametrize("visibility", list(MATRIX))
def test_the_visibility_matrix_over_http_and_websocket(site: Site, visibility: str) -> None:
    with site.m.api(site.tokens["alice"]) as alice:
        r = alice.put(f"/workspaces/app/ports/{APP_PORT}", json={"visibility": visibility})
        assert r.status_code == 200, r.text
    host = site.host(APP_PORT)
    for actor in ("alice", "bob", "carol", None):
        headers = site.bearer(actor) if actor else {}
        allowed = actor in MATRIX[visibility]
        expected = 200 if allowed else (404 if actor else 401)
        assert site.get("/", host, **headers).status_code == expected, (visibility, actor)
        if allowed:
            try:
                with site.ws(host, **headers):
                    pass
            except InvalidStatus as exc:
                raise AssertionError((visibility, actor, exc.response.body)) from exc
            with site.ws(host, **headers) as conn:
                assert conn.recv(timeout=10) == "hello"
        else:
            with pytest.raises(InvalidStatus) as refused:
                site.ws(host, **headers).close()
            assert refused.value.response.status_code == expected, (visibility, actor)
    # A browser signs in to a port's origin only where it may reach it.
    with closing(site.login("bob")) as bob:
        r = bob.get("/auth/workspace", params={"host": host, "next": "/"})
        assert r.status_code == (302 if "bob" in MATRIX[visibility] else 404)


def test_cookies_are_bound_to_one_origin_and_websockets_to_their_own(site: Site) -> None:
    with site.m.api(site.tokens["alice"]) as alice:
        assert alice.put(f"/workspaces/app/ports/{APP_PORT}", json={"visibility": "shared"}).status_code == 200
    with closing(site.login("bob")) as bob:
        cookie = site.signed_in(bob, site.host())
    # bob's cookie for the workspace is worth nothing at a port's origin (one he may open), or for another workspace.
    assert site.get("/healthz", site.host(), cookie=f"devyard_ws={cookie}").status_code == 200
    assert site.get("/healthz", site.host(APP_PORT), cookie=f"devyard_ws={cookie}").status_code == 401
    # Cookie-carried WebSockets must come from the workspace's own origin.
    with site.ws(site.host(), EDITOR_WS, cookie=f"devyard_ws={cookie}", origin=f"http://{site.host()}") as conn:
        assert _still_open(conn)
    with pytest.raises(InvalidStatus) as refused:
        site.ws(site.host(), EDITOR_WS, cookie=f"devyard_ws={cookie}", origin=f"http://{site.host(APP_PORT)}").close()
    assert refused.value.response.status_code == 403
    # A code is good once.
    with closing(site.login("bob")) as bob:
        r = bob.get("/auth/workspace", params={"host": site.host(), "next": "/"})
        to = urlsplit(r.headers["location"])
        assert site.get(f"{to.path}?{to.query}", site.host()).status_code == 302
        assert site.get(f"{to.path}?{to.query}", site.host()).status_code == 403


def test_without_a_cookie_a_browser_is_sent_to_the_dashboard_and_scripts_get_401(site: Site) -> None:
    r = site.get("/some/where?x=1", site.host(), accept="text/html")
    assert r.status_code == 303
    to = urlsplit(r.headers["location"])
    assert to.netloc == f"localhost:{site.port}" and to.path == "/auth/workspace"
    r = site.get("/healthz", site.host())
    assert r.status_code == 401 and r.json()["error"]["code"] == "not_authenticated"
    assert site.get("/healthz", site.host(), **site.bearer("bob")).status_code == 200  # tokens work for scripts
    # The dashboard's session cookie is no credential at a workspace's origin.
    with closing(site.login("alice")) as alice:
        session = alice.cookies.get("devyard_session")
    assert site.get("/healthz", site.host(), cookie=f"devyard_session={session}").status_code == 401


def _editor_socket(site: Site, **headers: str) -> ClientConnection:
    conn = site.ws(site.host(), EDITOR_WS, **headers)
    assert _still_open(conn)
    return conn


def _as_bob_in_a_browser(site: Site) -> tuple[httpx.Client, ClientConnection]:
    bob = site.login("bob")
    cookie = site.signed_in(bob, site.host())
    return bob, _editor_socket(site, cookie=f"devyard_ws={cookie}", origin=f"http://{site.host()}")


def _keep_alive(site: Site, cookie: str) -> socket.socket:
    """A raw keep-alive HTTP connection to the workspace's origin that has carried one request with `cookie`, idle now."""
    sock = socket.create_connection(("127.0.0.1", site.port))
    sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {site.host()}\r\nCookie: devyard_ws={cookie}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 200"), head
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    )
    body = head.split(b"\r\n\r\n", 1)[1]
    while len(body) < length:
        body += sock.recv(65536)
    return sock


def _hung_up_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False


def test_logging_out_closes_live_connections(site: Site) -> None:
    bob = site.login("bob")
    cookie = site.signed_in(bob, site.host())
    conn = _editor_socket(site, cookie=f"devyard_ws={cookie}", origin=f"http://{site.host()}")
    idle = _keep_alive(site, cookie)
    with closing(bob), conn, closing(idle), bob.stream("GET", "/api/v1/events") as events:
        lines = events.iter_lines()
        assert next(lines).startswith("event: snapshot")
        assert not _hung_up_within(idle, 0.3)  # kept alive until then
        assert bob.post("/api/v1/auth/logout").status_code == 204
        assert _closes_within(conn, 1.0)
        assert _hung_up_within(idle, 1.0)
        ended = time.monotonic()
        for _ in lines:  # the event stream ends too (a keep-alive would take 15 s)
            pass
        assert time.monotonic() - ended < 1.0


def test_a_password_change_closes_live_connections(site: Site) -> None:
    bob, conn = _as_bob_in_a_browser(site)
    with closing(bob), conn:
        r = bob.post(
            "/api/v1/me/password",
            json={"current_password": PASSWORD, "new_password": PASSWORD + "!"},
            headers={"origin": site.dashboard},
        )
        assert r.status_code == 204, r.text
        assert _closes_within(conn, 1.0)
    with site.m.api() as admin:
        assert admin.patch("/users/bob", json={"password": PASSWORD}).status_code == 200


def test_disabling_a_user_closes_what_their_tokens_opened(site: Site) -> None:
    conn = _editor_socket(site, **site.bearer("bob"))
    with conn, site.m.api() as admin:
        assert admin.patch("/users/bob", json={"disabled": True}).status_code == 200
        try:
            assert _closes_within(conn, 1.0)
        finally:
            assert admin.patch("/users/bob", json={"disabled": False}).status_code == 200


def test_revoking_a_token_closes_its_connections(site: Site) -> None:
    with site.m.api(site.tokens["bob"]) as bob:
        made = bob.post("/tokens", json={"name": "short"}).json()
    conn = _editor_socket(site, authorization=f"Bearer {made['token']}")
    with conn, site.m.api(site.tokens["bob"]) as bob:
        assert bob.delete(f"/tokens/{made['id']}").status_code == 204
        assert _closes_within(conn, 1.0)


def test_taking_back_a_share_closes_its_connections(site: Site) -> None:
    conn = _editor_socket(site, **site.bearer("bob"))
    owner_conn = _editor_socket(site, **site.bearer("alice"))
    with conn, owner_conn, site.m.api(site.tokens["alice"]) as alice:
        assert alice.delete("/workspaces/app/shares/bob").status_code == 204
        try:
            assert _closes_within(conn, 1.0)
            assert _still_open(owner_conn)  # the owner's own stay
        finally:
            assert alice.post("/workspaces/app/shares", json={"user": "bob"}).status_code == 201


def test_narrowing_a_ports_visibility_closes_its_connections(site: Site) -> None:
    with site.m.api(site.tokens["alice"]) as alice:
        assert alice.put(f"/workspaces/app/ports/{APP_PORT}", json={"visibility": "shared"}).status_code == 200
        conn = site.ws(site.host(APP_PORT), **site.bearer("bob"))
        with conn:
            assert conn.recv(timeout=10) == "hello"
            assert alice.put(f"/workspaces/app/ports/{APP_PORT}", json={"visibility": "private"}).status_code == 200
            assert _closes_within(conn, 1.0)


def test_path_links_lead_to_the_workspaces_own_origin(site: Site) -> None:
    r = httpx.get(
        site.m.url + "/w/alice/app/some/file?x=1", headers={"host": site.dashboard[7:]}, follow_redirects=False
    )
    assert r.status_code == 302 and r.headers["location"] == f"http://{site.host()}/some/file?x=1"
    # A loopback address is sent to localhost, where the workspaces' sign-in can see the login.
    r = httpx.get(site.m.url + "/", headers={"accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"] == site.dashboard + "/"


def test_public_ports_need_an_admins_permission(engine: install.Engine, tmp_path: Path) -> None:
    m = start_manager(tmp_path / "data", extra_env={"DEVYARD_WORKSPACE_DOMAIN": "localhost"})
    try:
        with m.api() as api:
            assert api.post("/workspaces", json={"name": "quiet", "start": False}).status_code == 201
            r = api.put("/workspaces/quiet/ports/3000", json={"visibility": "public"})
            assert r.status_code == 403 and r.json()["error"]["code"] == "public_ports_disabled"
            assert api.put("/workspaces/quiet/ports/3000", json={"visibility": "shared"}).status_code == 200
            assert api.put("/workspaces/quiet/ports/70000", json={"visibility": "shared"}).status_code == 422
            r = api.put("/workspaces/quiet/ports/3000", json={"visibility": "everyone"})
            assert r.status_code == 422
        out = m.cli("ws", "port", "quiet", "3000", "--visibility", "everyone")
        assert out.returncode != 0 and "private, shared or public" in out.stderr
    finally:
        m.stop()


def test_public_url_refuses_other_hosts(engine: install.Engine, tmp_path: Path) -> None:
    m = start_manager(
        tmp_path / "data",
        extra_env={
            "DEVYARD_WORKSPACE_DOMAIN": "ws.example.test",
            "DEVYARD_PUBLIC_URL": "https://devyard.example.test",
            "DEVYARD_PUBLIC_PORTS": "true",
        },
    )
    try:

        def status(host: str) -> int:
            return httpx.get(m.url + "/healthz", headers={"host": host}).status_code

        assert status("devyard.example.test") == 200
        assert status("evil.example.test") == 421
        assert status("app--admin.ws.example.test") in (401, 404)  # a workspace host: the gateway's
        with m.api() as api:
            made = api.post("/workspaces", json={"name": "away", "start": False}).json()
        assert made["url"] == "https://away--admin.ws.example.test/"
        host = "away--admin.ws.example.test"
        with m.api() as api:
            assert api.put("/workspaces/away/ports/3000", json={"visibility": "public"}).status_code == 200
        # Anyone may open a public port, but only those who may open the workspace start it.
        r = httpx.get(m.url + "/", headers={"host": "3000--" + host, "accept": "text/html"})
        assert r.status_code == 503 and "not running" in r.text
        # Signed in is not enough: a user the workspace is not shared with does not wake it either.
        with m.api() as api:
            assert api.post("/users", json={"name": "stranger", "password": "a long password 1"}).status_code == 201
        stranger = {"host": "3000--" + host, "accept": "text/html", "authorization": f"Bearer {m.token('stranger')}"}
        r = httpx.get(m.url + "/", headers=stranger)
        assert r.status_code == 503 and "not running" in r.text
        with m.api() as api:
            assert api.get("/workspaces/away").json()["status"] == "stopped"
        # The gateway's own pages on a workspace's origin take styles and links from the dashboard, whose API is out of their reach.
        r = httpx.get(
            m.url + "/", headers={"host": host, "accept": "text/html", "authorization": f"Bearer {m.token()}"}
        )
        assert r.status_code == 503 and 'href="https://devyard.example.test/static/devyard.css"' in r.text
        assert 'http-equiv="refresh"' in r.text and "starting.js" not in r.text
        assert httpx.get(m.url + "/_devyard/anything", headers={"host": host}).status_code == 404
        m.wait_status("away", "running")
        assert status(m.url.split("//")[1]) == 200  # the CLI and probes on the host reach it by its address
    finally:
        m.stop()
