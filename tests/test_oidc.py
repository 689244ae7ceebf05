"""Single sign-on against a real OpenID provider (npm oidc-provider), in headless Chromium."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devyard.auth.oidc import check_settings, is_allowed, user_name_for
from devyard.config import load_settings
from devyard.engine.install import Engine
from devyard.errors import Invalid
from tests.browser import chromium
from tests.support import Manager, free_port, peer, start_manager

SCRIPT = Path(__file__).parent / "peers" / "oidc_provider.mjs"


def sso_env(port: int) -> dict[str, str]:
    """A manager's settings for SSO through the oidc-provider on `port`, allowing @example.org."""
    return {
        "DEVYARD_OIDC_ISSUER": f"http://127.0.0.1:{port}",
        "DEVYARD_OIDC_CLIENT_ID": "devyard",
        "DEVYARD_OIDC_CLIENT_SECRET": "devyard-test-secret",
        "DEVYARD_OIDC_ALLOWED_DOMAINS": '["example.org"]',
    }


@pytest.fixture
def sso(engine: Engine, oidc_provider_dir: Path, tmp_path: Path) -> Iterator[Manager]:
    """A manager whose SSO issuer is a running oidc-provider allowing @example.org."""
    port = free_port()
    manager = start_manager(tmp_path / "data", extra_env=sso_env(port))
    try:
        with peer(
            [str(engine.node), str(SCRIPT), str(port), manager.url + "/auth/oidc/callback"],
            env={**os.environ, "OIDC_PROVIDER_DIR": str(oidc_provider_dir)},
        ):
            yield manager
    finally:
        manager.stop()


def sign_in(browser: object, manager: Manager, login: str) -> object:
    """Click "Sign in with SSO" and go through whatever the provider shows (login form, consent)."""
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(manager.url + "/login?next=/")
    with page.expect_navigation():
        page.click("a.sso")
    while "/interaction/" in page.url:
        with page.expect_navigation():
            if page.locator("input[name=login]").count():
                page.fill("input[name=login]", login)
                page.fill("input[name=password]", "anything")
            page.click("button[type=submit]")  # sign in, or consent
    assert page.url.startswith(manager.url), page.url
    page.wait_for_load_state()
    return page


def test_sso_sign_in(sso: Manager, tmp_path: Path) -> None:
    # A local account named like the SSO user must not be taken over.
    out = sso.cli(
        "user",
        "add",
        "olivia",
        "--password-stdin",
        "--data-dir",
        str(sso.data_dir),
        token=None,
        input="local-olivia-pw\n",
    )
    assert out.returncode == 0
    with chromium(tmp_path / "profile") as browser:
        page = sign_in(browser, sso, "olivia")
        page.wait_for_selector("#workspaces", state="attached", timeout=30_000)  # the dashboard: signed in
        me = page.evaluate("fetch('/api/v1/me').then(r => r.json())")
        assert me["name"] == "olivia-2" and me["is_admin"] is False
        page.close()
        # Signing in again finds the same account (linked by subject, not name).
        page = sign_in(browser, sso, "olivia")
        page.wait_for_selector("#workspaces", state="attached", timeout=30_000)
        assert page.evaluate("fetch('/api/v1/me').then(r => r.json())")["name"] == "olivia-2"
        page.close()
    with chromium(tmp_path / "profile2") as browser:
        page = sign_in(browser, sso, "eve@evil.example")
        assert "not allowed" in page.content()
        assert page.evaluate("fetch('/api/v1/me').then(r => r.status)") == 401
    with sso.api() as api:
        users = [u["name"] for u in api.get("/users").json()]
        assert "olivia-2" in users and not any(u.startswith("eve") for u in users)
        logins = api.get("/audit", params={"action": "login"}).json()
        assert any(e["actor"] == "olivia-2" and e["success"] and e["detail"] == {"via": "oidc"} for e in logins)
        assert any(not e["success"] and (e["detail"] or {}).get("reason") == "oidc_not_allowed" for e in logins)


def test_user_names_from_claims() -> None:
    assert user_name_for({"preferred_username": "Olivia.Smith"}) == "olivia.smith"
    assert user_name_for({"email": "J Doe+x@example.org"}) == "j-doe-x"
    assert user_name_for({"preferred_username": "___"}) == "user"
    assert user_name_for({"preferred_username": "-x"}) == "x"
    assert len(user_name_for({"preferred_username": "a" * 80})) == 39


def test_allow_lists() -> None:
    ok = {"email": "a@Example.org", "email_verified": True, "groups": ["devs"]}
    assert is_allowed(ok, ["example.org"], [])
    assert not is_allowed({**ok, "email_verified": False}, ["example.org"], [])
    assert not is_allowed(ok, ["other.org"], [])
    assert is_allowed({**ok, "email_verified": False}, [], ["devs"])
    assert not is_allowed(ok, [], ["admins"])
    assert not is_allowed(ok, [], [])


def test_half_configured_sso_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Invalid) as exc:
        check_settings(load_settings(data_dir=tmp_path, oidc_issuer="http://x", oidc_client_id="c"))
    assert exc.value.code == "oidc_incomplete"
    s = load_settings(data_dir=tmp_path, oidc_issuer="http://x", oidc_client_id="c")
    with pytest.raises(Invalid) as exc:
        check_settings(s.model_copy(update={"oidc_client_secret": "s"}))
    assert exc.value.code == "oidc_unrestricted"
