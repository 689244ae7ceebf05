"""Login, sessions, tokens, users and the meta routes."""

from __future__ import annotations

import httpx

from tests.support import ADMIN_PASSWORD, Manager


def test_healthz_and_openapi(manager: Manager) -> None:
    assert httpx.get(manager.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(manager.url + "/api/v1/openapi.json").status_code == 401
    with manager.api() as api:
        spec = api.get("/openapi.json").json()
        assert "swagger" in api.get("/docs").text.lower()
    for path in [
        "/api/v1/auth/login",
        "/api/v1/workspaces",
        "/api/v1/workspaces/{name}/start",
        "/api/v1/tokens",
        "/api/v1/users",
    ]:
        assert path in spec["paths"], path


def test_unauthenticated_is_401(manager: Manager) -> None:
    with manager.api(token=None) as api:
        for method, path in [("GET", "/me"), ("GET", "/workspaces"), ("POST", "/workspaces"), ("POST", "/tokens")]:
            r = api.request(method, path, json={})
            assert r.status_code == 401, path
            assert r.json()["error"]["code"] == "not_authenticated"
        r = api.get("/me", headers={"authorization": "Bearer dy_forged"})
        assert r.status_code == 401


def test_password_login_session_and_logout(manager: Manager) -> None:
    with httpx.Client(base_url=manager.url) as c:
        r = c.post("/api/v1/auth/login", json={"username": "admin", "password": "wrong"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_credentials"
        r = c.post("/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert r.status_code == 200 and r.json()["name"] == "admin"
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        assert c.get("/api/v1/me").json()["is_admin"] is True
        # Cookie-authenticated changes from another origin are refused (CSRF).
        r = c.post("/api/v1/workspaces", json={"name": "csrf"}, headers={"origin": "http://evil.example"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_refused"
        assert c.post("/api/v1/auth/logout").status_code == 204
        assert c.get("/api/v1/me").status_code == 401


def test_login_is_throttled(fresh_manager: Manager) -> None:
    with httpx.Client(base_url=fresh_manager.url) as c:
        # code-server's budget per address: 2 a minute plus 12 an hour.
        codes = [
            c.post("/api/v1/auth/login", json={"username": "admin", "password": f"bad{i}"}).status_code
            for i in range(16)
        ]
        assert codes[:14] == [401] * 14 and codes[14:] == [429, 429]
        r = c.post("/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert r.json()["error"]["code"] == "too_many_attempts"


def test_tokens(manager: Manager) -> None:
    with manager.api() as api:
        r = api.post("/tokens", json={"name": "short", "expires_in": "1h"})
        assert r.status_code == 201 and r.json()["token"].startswith("dy_") and r.json()["expires_at"]
        with manager.api(r.json()["token"]) as other:
            assert other.get("/me").json()["name"] == "admin"
        r = api.post("/tokens", json={"expires_in": "soon"})
        assert r.status_code == 422 and r.json()["error"]["message"].startswith("expires_in: a duration is")


def test_users_admin_only(manager: Manager) -> None:
    with manager.api() as api:
        r = api.post("/users", json={"name": "dave", "password": "dave-password"})
        assert r.status_code == 201 and r.json() == {**r.json(), "name": "dave", "is_admin": False}
        assert api.post("/users", json={"name": "dave", "password": "dave-password"}).status_code == 409
        assert api.post("/users", json={"name": "Bad Name", "password": "long-enough"}).status_code == 422
        assert api.post("/users", json={"name": "eve", "password": "short"}).status_code == 422
        assert "dave" in [u["name"] for u in api.get("/users").json()]
    with manager.api("dave") as dave:
        assert dave.get("/users").status_code == 403
        assert dave.post("/users", json={"name": "mallory", "password": "long-enough"}).status_code == 403
        assert dave.get("/me").json()["name"] == "dave"
