"""Accounts and hardening: route inventory, brute force, tokens, disabling, sessions, audit, policies."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.routing import Mount
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from devyard.app import create_app
from devyard.config import load_settings
from tests.support import ADMIN_PASSWORD, Manager, start_manager, wait_for

# Routes anyone may call: health, logging in and out, and the login page's assets.
ANONYMOUS_ALLOWED = {
    ("GET", "/healthz"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/logout"),
    ("GET", "/auth/oidc/login"),
    ("GET", "/auth/oidc/callback"),
}


def refused(r: httpx.Response) -> bool:
    return r.status_code in (401, 403) or (r.status_code in (302, 303) and r.headers["location"].startswith("/login"))


def all_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) of every route, through included routers (FastAPI may keep them nested)."""
    for route in routes:
        if hasattr(route, "original_router"):
            yield from all_routes(route.original_router.routes, prefix + route.include_context.prefix)
        elif isinstance(route, Mount):
            assert route.path == "/static", f"unexpected mount {route.path}"
        elif isinstance(route, APIWebSocketRoute):
            yield "WEBSOCKET", prefix + route.path
        else:
            assert isinstance(route, APIRoute), route
            for method in route.methods - {"HEAD"}:
                yield method, prefix + route.path


def test_every_route_refuses_anonymous_requests(manager: Manager, tmp_path: Path) -> None:
    app = create_app(load_settings(data_dir=tmp_path))
    checked = []
    with httpx.Client(base_url=manager.url) as anon:
        for method, route_path in all_routes(app.routes):
            if (method, route_path) in ANONYMOUS_ALLOWED:
                continue
            path = re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m: "1" if m.group(1).endswith("id") else "x", route_path)
            if method == "WEBSOCKET":  # the upgrade is refused before it happens
                with pytest.raises(InvalidStatus) as denied:
                    ws_connect(manager.url.replace("http", "ws", 1) + path, open_timeout=10).close()
                assert denied.value.response.status_code == 401, f"{route_path}: {denied.value.response.status_code}"
                checked.append((method, route_path))
                continue
            r = anon.request(method, path, json={})
            assert refused(r), f"{method} {route_path} answered {r.status_code} to an anonymous request"
            checked.append((method, route_path))
    assert len(checked) >= 25 and ("PATCH", "/api/v1/users/{name}") in checked and ("GET", "/") in checked
    assert ("WEBSOCKET", "/api/v1/workspaces/{name}/ssh") in checked
    with httpx.Client(base_url=manager.url) as anon:
        assert refused(anon.get("/w/admin/x/"))


def test_brute_force_is_throttled_but_the_real_user_gets_in(fresh_manager: Manager) -> None:
    m = fresh_manager
    attacker = httpx.Client(base_url=m.url, transport=httpx.HTTPTransport(local_address="127.0.0.1"))
    codes = [
        attacker.post("/api/v1/auth/login", json={"username": "admin", "password": f"guess{i}"}).status_code
        for i in range(100)
    ]
    attacker.close()
    assert codes.count(401) <= 14 and codes[-1] == 429 and set(codes) == {401, 429}
    # The real admin, from their own address, is not locked out by the attack.
    with httpx.Client(base_url=m.url, transport=httpx.HTTPTransport(local_address="127.0.0.2")) as real:
        r = real.post("/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert r.status_code == 200, r.text
    with m.api() as api:
        failures = api.get("/audit", params={"action": "login", "limit": 500}).json()
        assert sum(1 for e in failures if not e["success"]) >= 100
        assert any(e["success"] and e["address"] == "127.0.0.2" for e in failures)


def test_token_scopes_revocation_and_expiry(manager: Manager) -> None:
    with manager.api() as admin:
        read = admin.post("/tokens", json={"name": "ro", "scope": "read"}).json()
        assert read["scope"] == "read" and "token" in read
    with manager.api(read["token"]) as ro:
        assert ro.get("/workspaces").status_code == 200
        r = ro.post("/workspaces", json={"name": "nope"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "token_scope"
        assert ro.post("/tokens", json={"scope": "write"}).status_code == 403
    with manager.api() as admin:
        listed = admin.get("/tokens").json()
        assert any(t["id"] == read["id"] and t["last_used_at"] for t in listed)
        assert all("token" not in t and "token_hash" not in t for t in listed)
        assert admin.delete(f"/tokens/{read['id']}").status_code == 204
        assert admin.delete("/tokens/999999").status_code == 404
    with manager.api(read["token"]) as ro:
        assert ro.get("/me").status_code == 401  # revoked: at once, despite the cache
    with manager.api() as admin:
        short = admin.post("/tokens", json={"name": "brief", "expires_in": "1s"}).json()
    time.sleep(1.5)
    with manager.api(short["token"]) as gone:
        assert gone.get("/me").status_code == 401


def test_non_admin_cannot_mint_admin_tokens(manager: Manager) -> None:
    out = manager.cli(
        "user",
        "add",
        "uma",
        "--password-stdin",
        "--data-dir",
        str(manager.data_dir),
        token=None,
        input="uma-password\n",
    )
    assert out.returncode == 0
    with manager.api("uma") as uma:
        r = uma.post("/tokens", json={"scope": "admin"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "admin_required"
        assert uma.post("/tokens", json={"scope": "root"}).status_code == 422
    cli = manager.cli(
        "token", "create", "--user", "uma", "--scope", "admin", "--data-dir", str(manager.data_dir), token=None
    )
    assert cli.returncode == 1 and "admin" in cli.stderr


def test_disabling_a_user_ends_everything(manager: Manager) -> None:
    out = manager.cli(
        "user",
        "add",
        "dora",
        "--password-stdin",
        "--data-dir",
        str(manager.data_dir),
        token=None,
        input="dora-password\n",
    )
    assert out.returncode == 0
    token = manager.token("dora")
    with httpx.Client(base_url=manager.url) as browser:
        assert (
            browser.post("/api/v1/auth/login", json={"username": "dora", "password": "dora-password"}).status_code
            == 200
        )
        with manager.api(token) as dora:
            dora.post("/workspaces", json={"name": "work"})
            manager.wait_status("work", "running", token=token)
        engines = set(manager.engine_pids())
        assert manager.cli("user", "disable", "dora").returncode == 0
        assert browser.get("/api/v1/me").status_code == 401
        with manager.api(token) as dora:
            assert dora.get("/me").status_code == 401
        r = browser.post("/api/v1/auth/login", json={"username": "dora", "password": "dora-password"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "account_disabled"
    with manager.api() as admin:
        wait_for(
            lambda: admin.get("/workspaces/work", params={"owner": "dora"}).json()["status"] == "stopped",
            30,
            "dora's workspace to stop",
        )
        assert not [p for p in engines - set(manager.engine_pids()) if psutil.pid_exists(p)]
        assert admin.patch("/users/dora", json={"disabled": False}).json()["disabled"] is False
        users = {u["name"]: u for u in admin.get("/users").json()}
        assert users["dora"]["disabled"] is False
        r = admin.patch("/users/admin", json={"disabled": True})
        assert r.status_code == 409 and r.json()["error"]["code"] == "last_admin"
        assert admin.patch("/users/nobody", json={"disabled": True}).status_code == 404


def test_password_change_ends_sessions(manager: Manager) -> None:
    out = manager.cli(
        "user",
        "add",
        "pete",
        "--password-stdin",
        "--data-dir",
        str(manager.data_dir),
        token=None,
        input="pete-password\n",
    )
    assert out.returncode == 0
    login = {"username": "pete", "password": "pete-password"}
    with httpx.Client(base_url=manager.url) as laptop, httpx.Client(base_url=manager.url) as phone:
        assert laptop.post("/api/v1/auth/login", json=login).status_code == 200
        assert phone.post("/api/v1/auth/login", json=login).status_code == 200
        r = laptop.post("/api/v1/me/password", json={"current_password": "wrong", "new_password": "pete-new-password"})
        assert r.status_code == 401
        r = laptop.post(
            "/api/v1/me/password", json={"current_password": "pete-password", "new_password": "pete-new-password"}
        )
        assert r.status_code == 204
        assert laptop.get("/api/v1/me").status_code == 200  # this session got a new cookie
        assert phone.get("/api/v1/me").status_code == 401  # every other session ended
    assert manager.cli("user", "passwd", "pete", "--password-stdin", input="reset-by-admin\n").returncode == 0
    with httpx.Client(base_url=manager.url) as c:
        assert c.post("/api/v1/auth/login", json={"username": "pete", "password": "reset-by-admin"}).status_code == 200


def test_cookies_are_signed_and_flagged(manager: Manager) -> None:
    with httpx.Client(base_url=manager.url) as c:
        r = c.post("/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        cookie = c.cookies["devyard_session"]
        flags = r.headers["set-cookie"].lower()
        assert "httponly" in flags and "samesite=lax" in flags and "path=/" in flags and "secure" not in flags
    session_id, _, sig = cookie.partition(".")
    for forged in (session_id, f"{session_id}.{'A' * len(sig)}", f"x{session_id}.{sig}"):
        assert httpx.get(manager.url + "/api/v1/me", cookies={"devyard_session": forged}).status_code == 401
    assert httpx.get(manager.url + "/api/v1/me", cookies={"devyard_session": cookie}).status_code == 200


def test_idle_sessions_end(engine: object, tmp_path: Path) -> None:
    m = start_manager(tmp_path / "data", extra_env={"DEVYARD_SESSION_IDLE_S": "2", "DEVYARD_IDENTITY_CACHE_S": "0.2"})
    try:
        with httpx.Client(base_url=m.url) as c:
            assert (
                c.post("/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}).status_code == 200
            )
            assert c.get("/api/v1/me").status_code == 200
            time.sleep(2.5)  # the idle time plus the identity cache's 0.2 s
            assert c.get("/api/v1/me").status_code == 401
    finally:
        m.stop()


def test_audit_log(manager: Manager) -> None:
    with manager.api() as admin:
        admin.post("/workspaces", json={"name": "audited", "start": False})
        admin.delete("/workspaces/audited")
        entries = admin.get("/audit", params={"action": "workspace.", "limit": 50}).json()
        actions = [(e["action"], e["target"]) for e in entries]
        assert ("workspace.create", "admin/audited") in actions and ("workspace.delete", "admin/audited") in actions
        assert all(
            e["actor"] == "admin" and e["address"] == "127.0.0.1" for e in entries if e["target"] == "admin/audited"
        )
        text = str(admin.get("/audit", params={"limit": 1000}).json())
        assert ADMIN_PASSWORD not in text and "dy_" not in text  # no secrets in the log
    out = manager.cli("audit", "-n", "20")
    assert out.returncode == 0 and "workspace.delete" in out.stdout
    assert (
        manager.cli("user", "add", "audra", "--data-dir", str(manager.data_dir), token=None, input="").returncode == 0
    )
    local = manager.cli("audit", "--action", "user.", "--data-dir", str(manager.data_dir), token=None)
    assert local.returncode == 0 and "user.create" in local.stdout


def test_policies_reach_every_engine(engine: object, tmp_path: Path) -> None:
    m = start_manager(
        tmp_path / "data", extra_env={"DEVYARD_DISABLE_FILE_DOWNLOADS": "1", "DEVYARD_DISABLE_FILE_UPLOADS": "true"}
    )
    try:
        with m.api() as api:
            api.post("/workspaces", json={"name": "locked"})
        m.wait_status("locked", "running")
        cmdline = psutil.Process(m.engine_pids()[0]).cmdline()
        assert "--disable-file-downloads" in cmdline and "--disable-file-uploads" in cmdline
    finally:
        m.stop()


@pytest.mark.parametrize(
    "path", ["/w/../etc/passwd", "/w/admin/..%2f..%2fetc/", "/api/v1/workspaces/..%2f..", "/w/admin/x%00/"]
)
def test_hostile_paths(manager: Manager, path: str) -> None:
    with manager.api() as api:
        r = httpx.get(manager.url + path, headers=api.headers)
    assert r.status_code in (400, 404, 422)
