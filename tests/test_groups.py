"""Groups: local ones for password users (CLI, API), and the identity provider's from a real oidc-provider's claim.

What a group means comes from devyard.yaml: teachers are admins; students get one workspace, the
small size, the python extension group and one template. A membership taken away (by an admin, or
by the identity provider at the next sign-in) ends what it granted at the next request, audited.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from devyard.engine.install import Engine
from tests.browser import chromium
from tests.support import Manager, free_port, peer, start_manager
from tests.test_oidc import SCRIPT, sign_in, sso_env

CONFIG = {
    "extension_groups": {
        "python": {"name": "Python", "extensions": []},
        "rust": {"name": "Rust", "extensions": []},
    },
    "packaged_assets": {"tabs": [{"name": "Starters", "items": [{"name": "Flask app"}, {"name": "Rust app"}]}]},
    "devyard": {
        "sizes": {"small": {"memory_mb": 1024}, "large": {"memory_mb": 4096}},
        "default_size": "large",
        "groups": {
            "teachers": {"admin": True},
            "students": {
                "max_workspaces": 1,
                "sizes": ["small"],
                "extension_groups": ["python"],
                "templates": ["Flask app"],
            },
        },
    },
}


@pytest.fixture
def m(engine: Engine, tmp_path: Path) -> Iterator[Manager]:
    config = tmp_path / "devyard.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    with start_manager(tmp_path / "data", args=("--config", str(config))) as manager:
        for name in ("sam", "tina"):
            manager.add_user(name)
        yield manager


def session(m: Manager, user: str) -> httpx.Client:
    """A logged-in browser-like session of `user` (a session carries admin rights; a write token would not)."""
    client = httpx.Client(base_url=m.url + "/api/v1", timeout=30)
    logged_in = client.post("/auth/login", json={"username": user, "password": f"{user}-password"})
    assert logged_in.status_code == 200, logged_in.text
    return client


def test_local_groups_grant_and_restrict_and_a_removal_ends_at_the_next_request(m: Manager) -> None:
    for args in (
        ("add", "students"),
        ("add-member", "students", "sam"),
        ("add", "teachers"),
        ("add-member", "teachers", "tina"),
    ):
        out = m.cli("group", *args)
        assert out.returncode == 0, out.stderr
    listed = m.cli("group", "ls").stdout
    assert "students" in listed and "sam" in listed and "max_workspaces: 1" in listed
    again = m.cli("group", "add-member", "students", "sam")
    assert again.returncode != 0 and "already" in again.stderr

    # A student is offered only what students are, and gets one workspace.
    with m.api("sam") as sam:
        assert [s["name"] for s in sam.get("/sizes").json()] == ["small"]
        assert [g["id"] for g in sam.get("/extension-groups").json()] == ["python"]
        assert [t["name"] for t in sam.get("/templates").json()] == ["Flask app"]
        assert sam.get("/me").json()["groups"] == ["students"]
        refused = sam.post("/workspaces", json={"name": "big", "size": "large", "start": False})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "not_offered"
        assert "offered: small" in refused.json()["error"]["message"]
        default = sam.post("/workspaces", json={"name": "plain", "start": False})  # the default (large) is not offered
        assert default.status_code == 403
        rust = sam.post(
            "/workspaces", json={"name": "r", "size": "small", "extension_groups": ["rust"], "start": False}
        )
        assert rust.status_code == 403 and "extension group 'rust'" in rust.json()["error"]["message"]
        assert sam.post("/workspaces", json={"name": "one", "size": "small", "start": False}).status_code == 201
        second = sam.post("/workspaces", json={"name": "two", "size": "small", "start": False})
        assert second.status_code == 403 and second.json()["error"]["code"] == "quota_exceeded"

    # A teacher is an admin through the group, until an admin takes them out of it.
    tina = session(m, "tina")
    try:
        assert tina.get("/users").status_code == 200
        assert sorted(s["name"] for s in tina.get("/sizes").json()) == ["large", "small"]
        out = m.cli("group", "rm-member", "teachers", "tina")
        assert out.returncode == 0, out.stderr
        assert tina.get("/users").status_code == 403  # the same session, its next request
    finally:
        tina.close()
    # A workspace shared with a group: its members may open it while they are members.
    with m.api("tina") as tina_api, m.api("sam") as sam:
        assert tina_api.post("/workspaces", json={"name": "lesson", "size": "small", "start": False}).status_code == 201
        assert sam.get("/workspaces/lesson", params={"owner": "tina"}).status_code == 404
        out = m.cli("ws", "share", "lesson", "students", "--group", token="tina")
        assert out.returncode == 0, out.stderr
        assert sam.get("/workspaces/lesson", params={"owner": "tina"}).status_code == 200
        assert [g["group"] for g in tina_api.get("/workspaces/lesson/group-shares").json()] == ["students"]
        nosuch = tina_api.post("/workspaces/lesson/group-shares", json={"group": "nosuch"})
        assert nosuch.status_code == 404 and nosuch.json()["error"]["code"] == "group_not_found"
        with httpx.Client(base_url=m.url, headers={"authorization": f"Bearer {m.token('sam')}"}) as gw:
            assert gw.get("/w/tina/lesson/", headers={"accept": "text/html"}).status_code == 503  # starting it
            assert m.cli("group", "rm-member", "students", "sam").returncode == 0
            assert gw.get("/w/tina/lesson/", headers={"accept": "text/html"}).status_code == 404
        assert sam.get("/workspaces/lesson", params={"owner": "tina"}).status_code == 404
    with m.api() as admin:
        audit = admin.get("/audit", params={"action": "group."}).json()
        left = [e for e in audit if e["action"] == "group.leave" and e["target"] == "teachers"]
        assert (
            left
            and left[0]["actor"] == "admin"
            and left[0]["detail"] == {"user": "tina"}
            and left[0]["target"] == "teachers"
        )
        assert admin.delete("/groups/nosuch").status_code == 404
        assert admin.put("/groups/students/members/nobody").status_code == 404


@pytest.fixture
def sso(engine: Engine, oidc_provider_dir: Path, tmp_path: Path) -> Iterator[tuple[Manager, Path]]:
    """A manager reading groups from the `roles` claim of a running oidc-provider; the file that says each account's groups."""
    port = free_port()
    groups_file = tmp_path / "groups.json"
    groups_file.write_text(json.dumps({"dana": ["teachers", "devs"]}))
    config = tmp_path / "devyard.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    env = {**sso_env(port), "DEVYARD_OIDC_GROUPS_CLAIM": "roles", "DEVYARD_OIDC_SCOPES": "openid email profile groups"}
    manager = start_manager(tmp_path / "data", extra_env=env, args=("--config", str(config)))
    try:
        with peer(
            [str(engine.node), str(SCRIPT), str(port), manager.url + "/auth/oidc/callback"],
            env={**os.environ, "OIDC_PROVIDER_DIR": str(oidc_provider_dir), "OIDC_GROUPS_FILE": str(groups_file)},
        ):
            yield manager, groups_file
    finally:
        manager.stop()


def test_identity_provider_groups_are_read_at_every_sign_in(sso: tuple[Manager, Path], tmp_path: Path) -> None:
    m, groups_file = sso
    with chromium(tmp_path / "profile") as browser:
        page = sign_in(browser, m, "dana")
        page.wait_for_selector("#workspaces", state="attached", timeout=30_000)
        me = page.evaluate("fetch('/api/v1/me').then(r => r.json())")
        assert me["groups"] == ["devs", "teachers"]
        assert page.evaluate("fetch('/api/v1/users').then(r => r.status)") == 200  # an admin through `teachers`
        assert page.locator("nav a[href='/admin']").count() == 1
        page.close()

        # The identity provider takes dana out of teachers: the next sign-in says so, and it is audited.
        groups_file.write_text(json.dumps({"dana": ["devs"]}))
        page = sign_in(browser, m, "dana")
        page.wait_for_selector("#workspaces", state="attached", timeout=30_000)
        assert page.evaluate("fetch('/api/v1/me').then(r => r.json())")["groups"] == ["devs"]
        assert page.evaluate("fetch('/api/v1/users').then(r => r.status)") == 403
        page.close()
    with m.api() as admin:
        audit = admin.get("/audit", params={"action": "group."}).json()
        assert any(e["action"] == "group.join" and e["actor"] == "sso" and e["target"] == "teachers" for e in audit)
        left = [e for e in audit if e["action"] == "group.leave"]
        assert left[0]["actor"] == "sso" and left[0]["target"] == "teachers" and left[0]["detail"]["user"] == "dana"
        groups = {g["name"]: g for g in admin.get("/groups").json()}
        assert groups["devs"]["members"] == [{"user": "dana", "source": "oidc"}] and groups["devs"]["policy"] is None
        assert groups["teachers"]["members"] == [] and groups["teachers"]["policy"]["admin"] is True
