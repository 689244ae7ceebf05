"""Who may do what to a workspace: owner, shared user, other user, admin, and token scopes,
over the API and the gateway (HTTP and WebSocket), against a real manager and engines."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.support import Manager

# actor -> (user, token scope)
ACTORS = {
    "owner": ("olga", "write"),
    "owner-read-token": ("olga", "read"),
    "shared": ("sam", "write"),
    "other": ("oscar", "write"),
    "admin": ("admin", "admin"),
    "admin-write-token": ("admin", "write"),
}


@pytest.fixture(scope="module")
def world(manager: Manager) -> dict[str, Any]:
    """olga owns `proj` (running) and `idle` (stopped), shares `proj` with sam; tokens for every actor."""
    for user in ("olga", "sam", "oscar"):
        manager.add_user(user)
    tokens = {}
    for actor, (user, scope) in ACTORS.items():
        out = manager.cli(
            "token", "create", "--user", user, "--scope", scope, "--data-dir", str(manager.data_dir), token=None
        )
        assert out.returncode == 0, out.stderr
        tokens[actor] = out.stdout.strip()
    with manager.api(tokens["owner"]) as olga:
        assert olga.post("/workspaces", json={"name": "proj"}).status_code == 201
        assert olga.post("/workspaces", json={"name": "idle", "start": False}).status_code == 201
        assert olga.post("/workspaces/proj/shares", json={"user": "sam"}).status_code == 201
    manager.wait_status("proj", "running", token=tokens["owner"])
    return {"tokens": tokens}


def call(manager: Manager, token: str, method: str, path: str, **kw: Any) -> int:
    with manager.api(token) as api:
        return api.request(method, path, **kw).status_code


OK, HIDDEN, SCOPE = 200, 404, 403
MATRIX = [
    # (action, method, path, params, expected per actor)
    (
        "read",
        "GET",
        "/workspaces/proj",
        {"owner": "olga"},
        {"owner": OK, "owner-read-token": OK, "shared": OK, "other": HIDDEN, "admin": OK, "admin-write-token": HIDDEN},
    ),
    (
        "logs",
        "GET",
        "/workspaces/proj/logs",
        {"owner": "olga"},
        {"owner": OK, "owner-read-token": OK, "shared": OK, "other": HIDDEN, "admin": OK, "admin-write-token": HIDDEN},
    ),
    (
        "stats",
        "GET",
        "/workspaces/proj/stats",
        {"owner": "olga"},
        {"owner": OK, "owner-read-token": OK, "shared": OK, "other": HIDDEN, "admin": OK, "admin-write-token": HIDDEN},
    ),
    (
        "stop (stopped)",
        "POST",
        "/workspaces/idle/stop",
        {"owner": "olga"},
        {
            "owner": 202,
            "owner-read-token": SCOPE,
            "shared": HIDDEN,
            "other": HIDDEN,
            "admin": 202,
            "admin-write-token": HIDDEN,
        },
    ),
    (
        "list shares",
        "GET",
        "/workspaces/proj/shares",
        {},
        {
            "owner": OK,
            "owner-read-token": OK,
            "shared": HIDDEN,
            "other": HIDDEN,
            "admin": HIDDEN,
            "admin-write-token": HIDDEN,
        },
    ),
    (
        "share",
        "POST",
        "/workspaces/proj/shares",
        {},
        {
            "owner": 409,
            "owner-read-token": SCOPE,
            "shared": HIDDEN,
            "other": HIDDEN,
            "admin": HIDDEN,
            "admin-write-token": HIDDEN,
        },
    ),
    (
        "delete",
        "DELETE",
        "/workspaces/nonexistent",
        {"owner": "olga"},
        {
            "owner": HIDDEN,
            "owner-read-token": SCOPE,
            "shared": HIDDEN,
            "other": HIDDEN,
            "admin": HIDDEN,
            "admin-write-token": HIDDEN,
        },
    ),
    (
        "list all",
        "GET",
        "/workspaces",
        {"all": "1"},
        {"owner": 403, "owner-read-token": 403, "shared": 403, "other": 403, "admin": OK, "admin-write-token": 403},
    ),
    (
        "users",
        "GET",
        "/users",
        {},
        {"owner": 403, "owner-read-token": 403, "shared": 403, "other": 403, "admin": OK, "admin-write-token": 403},
    ),
    (
        "audit",
        "GET",
        "/audit",
        {},
        {"owner": 403, "owner-read-token": 403, "shared": 403, "other": 403, "admin": OK, "admin-write-token": 403},
    ),
]


@pytest.mark.parametrize("actor", list(ACTORS))
@pytest.mark.parametrize("action, method, path, params, expected", MATRIX, ids=[m[0] for m in MATRIX])
def test_api_matrix(
    manager: Manager,
    world: dict[str, Any],
    actor: str,
    action: str,
    method: str,
    path: str,
    params: dict[str, str],
    expected: dict[str, int],
) -> None:
    body = {"user": "sam"} if action == "share" else None
    assert call(manager, world["tokens"][actor], method, path, params=params, json=body) == expected[actor]


GATEWAY = {"owner": 302, "owner-read-token": 404, "shared": 302, "other": 404, "admin": 404, "admin-write-token": 404}


@pytest.mark.parametrize("actor", list(ACTORS))
def test_gateway_http_matrix(manager: Manager, world: dict[str, Any], actor: str) -> None:
    r = httpx.get(manager.url + "/w/olga/proj/", headers={"authorization": f"Bearer {world['tokens'][actor]}"})
    assert r.status_code == GATEWAY[actor]


@pytest.mark.parametrize("actor", list(ACTORS))
def test_gateway_websocket_matrix(manager: Manager, world: dict[str, Any], actor: str) -> None:
    url = (
        manager.url.replace("http://", "ws://")
        + "/w/olga/proj/stable-x?reconnectionToken=t&reconnection=false&skipWebSocketFrames=false"
    )
    headers = {"authorization": f"Bearer {world['tokens'][actor]}"}
    if GATEWAY[actor] == 302:
        with connect(url, additional_headers=headers, origin=manager.url) as conn:  # type: ignore[arg-type]
            assert conn.protocol.state.name == "OPEN"
    else:
        with pytest.raises(InvalidStatus) as exc:
            connect(url, additional_headers=headers, origin=manager.url).close()  # type: ignore[arg-type]
        # The same answer as the HTTP request gets: nobody learns whether the workspace exists.
        assert exc.value.response.status_code == GATEWAY[actor]


def test_admin_controls_but_cannot_open(manager: Manager, world: dict[str, Any]) -> None:
    tokens = world["tokens"]
    with manager.api(tokens["owner"]) as olga:
        assert olga.post("/workspaces", json={"name": "doomed", "start": False}).status_code == 201
    with manager.api(tokens["admin"]) as admin:
        assert admin.get("/workspaces", params={"all": "1"}).status_code == 200
        assert admin.delete("/workspaces/doomed", params={"owner": "olga"}).status_code == 204
    with manager.api(tokens["owner"]) as olga:
        assert olga.get("/workspaces/doomed").status_code == 404


def test_unsharing_takes_effect_at_once(manager: Manager, world: dict[str, Any]) -> None:
    tokens = world["tokens"]
    sam = {"authorization": f"Bearer {tokens['shared']}"}
    assert httpx.get(manager.url + "/w/olga/proj/", headers=sam).status_code == 302
    with manager.api(tokens["owner"]) as olga:
        assert olga.delete("/workspaces/proj/shares/sam").status_code == 204
        assert httpx.get(manager.url + "/w/olga/proj/", headers=sam).status_code == 404
        assert olga.delete("/workspaces/proj/shares/sam").status_code == 404
        assert olga.post("/workspaces/proj/shares", json={"user": "olga"}).status_code == 422
        assert olga.post("/workspaces/proj/shares", json={"user": "nobody"}).status_code == 404
        assert olga.post("/workspaces/proj/shares", json={"user": "sam"}).status_code == 201
        assert [s["user"] for s in olga.get("/workspaces/proj/shares").json()] == ["sam"]
    with manager.api(tokens["shared"]) as sam_api:
        listed = sam_api.get("/workspaces", params={"shared": "1"}).json()
        assert [(w["owner"], w["name"]) for w in listed] == [("olga", "proj")]
        assert sam_api.get("/workspaces").json() == []
