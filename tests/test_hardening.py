"""Hardening of the manager's own surface: login CSRF, token lifetimes, security headers and CSP, the SSO redirect_uri."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Page, expect

from devyard.engine.install import Engine
from tests.browser import chromium
from tests.support import ADMIN_PASSWORD, Manager, free_port, peer, start_manager
from tests.test_oidc import SCRIPT, sso_env

EVIL = "https://evil.example"


# -- login CSRF ---------------------------------------------------------------------------


def test_api_login_refuses_another_sites_origin(manager: Manager) -> None:
    body = {"username": "admin", "password": ADMIN_PASSWORD}
    with httpx.Client(base_url=manager.url) as c:
        for origin in (EVIL, "null"):  # "null": a sandboxed frame or a data: page
            r = c.post("/api/v1/auth/login", json=body, headers={"origin": origin})
            assert r.status_code == 403, origin
            assert r.json()["error"]["code"] == "csrf_refused"
            assert "set-cookie" not in r.headers and not c.cookies
        # The dashboard's own origin, and no Origin at all (curl, the CLI), log in.
        assert c.post("/api/v1/auth/login", json=body, headers={"origin": manager.url}).status_code == 200
    with httpx.Client(base_url=manager.url) as c:
        r = c.post("/api/v1/auth/login", json=body)
        assert r.status_code == 200 and "devyard_session" in c.cookies


def test_login_form_refuses_another_sites_origin(manager: Manager) -> None:
    form = {"username": "admin", "password": ADMIN_PASSWORD, "next": "/account"}
    with httpx.Client(base_url=manager.url) as c:
        r = c.post("/login", data=form, headers={"origin": EVIL})
        assert r.status_code == 403
        assert 'id="login-error"' in r.text and "cross-site login refused" in r.text
        assert "set-cookie" not in r.headers and not c.cookies
        r = c.post("/login", data=form, headers={"origin": manager.url})
        assert r.status_code == 303 and r.headers["location"] == "/account" and "devyard_session" in c.cookies
    with httpx.Client(base_url=manager.url) as c:
        r = c.post("/login", data=form)
        assert r.status_code == 303 and "devyard_session" in c.cookies


# -- token lifetimes ----------------------------------------------------------------------


def test_a_token_cannot_create_one_that_outlives_it(manager: Manager) -> None:
    with manager.api() as api:  # the admin's token, made with the CLI: no expiry
        r = api.post("/tokens", json={"name": "hour", "expires_in": "1h"})
        assert r.status_code == 201
        hour = r.json()["token"]
    with manager.api(hour) as api:
        for body in ({"name": "forever"}, {"name": "two-hours", "expires_in": "2h"}):
            r = api.post("/tokens", json=body)
            assert r.status_code == 403, body
            error = r.json()["error"]
            assert error["code"] == "token_lifetime" and "cannot create a token that outlives it" in error["message"]
        r = api.post("/tokens", json={"name": "half-hour", "expires_in": "30m"})
        assert r.status_code == 201
        half_hour = r.json()
        assert api.get("/me").status_code == 200
    with manager.api() as api:
        names = {t["name"] for t in api.get("/tokens").json()}
    assert "half-hour" in names and not names & {"forever", "two-hours"}
    with manager.api(half_hour["token"]) as api:  # the child is bound the same way
        assert api.post("/tokens", json={"name": "longer", "expires_in": "1h"}).status_code == 403
    # A token without expiry, and a logged-in session, may still make tokens that never expire.
    with manager.api() as api:
        assert api.post("/tokens", json={"name": "forever-from-token"}).status_code == 201
    with httpx.Client(base_url=manager.url + "/api/v1") as c:
        assert c.post("/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}).status_code == 200
        assert c.post("/tokens", json={"name": "forever-from-session"}).status_code == 201


# -- security headers -----------------------------------------------------------------------


def directives(policy: str) -> dict[str, list[str]]:
    """A Content-Security-Policy as {directive: [sources]}."""
    found = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            found[words[0]] = words[1:]
    return found


def assert_hardened(r: httpx.Response) -> dict[str, list[str]]:
    assert r.headers.get("x-frame-options") == "DENY", r.url
    assert r.headers.get("referrer-policy") == "same-origin", r.url
    assert r.headers.get("x-content-type-options") == "nosniff", r.url
    assert "content-security-policy" in r.headers, r.url
    return directives(r.headers["content-security-policy"])


def test_security_headers_on_the_managers_own_pages(manager: Manager) -> None:
    with httpx.Client(base_url=manager.url) as anon:
        responses = [
            anon.get("/login"),
            anon.get("/", headers={"accept": "text/html"}),
            anon.get("/api/v1/me"),
            anon.get("/static/devyard.css"),
        ]
    assert [r.status_code for r in responses] == [200, 303, 401, 200]
    with httpx.Client(base_url=manager.url) as c:
        assert c.post("/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}).status_code == 200
        responses += [c.get("/"), c.get("/api/v1/me")]
    assert [r.status_code for r in responses[-2:]] == [200, 200]
    for r in responses:
        csp = assert_hardened(r)
        assert csp["default-src"] == csp["script-src"] == csp["style-src"] == csp["connect-src"] == ["'self'"], r.url
        assert csp["frame-ancestors"] == csp["base-uri"] == ["'none'"], r.url
        assert csp["img-src"][:2] == ["'self'", "data:"] and csp["form-action"][0] == "'self'", r.url
        assert not any("unsafe" in source for sources in csp.values() for source in sources), r.url


def test_the_api_docs_page_gets_a_policy_that_fits_it(manager: Manager) -> None:
    with manager.api() as api:
        r = api.get("/docs")
    assert r.status_code == 200
    csp = assert_hardened(r)
    # Swagger UI's one inline script is allowed by its hash alone, and nothing is allowed inline.
    inline = re.findall(r"<script>(.*?)</script>", r.text, re.S)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp["script-src"]
    assert not any("unsafe" in source for sources in csp.values() for source in sources)
    for url in re.findall(r'(?:src|href)="(https://[^"]+)"', r.text):
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        assert origin in csp["script-src"] + csp["style-src"] + csp["img-src"], url


# -- the dashboard under its policy, in Chromium ------------------------------------------------

# Collects what the policy refused: init scripts run outside the page's policy, before its own.
WATCH_CSP = """window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));"""
THUMBNAIL = "http://127.0.0.1:9/thumb.png"  # an admin's remote thumbnail (nothing listens there)


@pytest.fixture
def catalog_manager(engine: Engine, tmp_path: Path) -> Iterator[Manager]:
    config = tmp_path / "devyard.yaml"
    config.write_text(
        json.dumps(
            {
                "extension_groups": [{"name": "basics", "description": "Editor basics", "extensions": []}],
                "packaged_assets": {
                    "tabs": [
                        {
                            "name": "Starters",
                            "items": [{"name": "starter", "description": "A start", "thumbnail_url": THUMBNAIL}],
                        }
                    ]
                },
            }
        )
    )
    m = start_manager(tmp_path / "data", args=("--config", str(config)))
    try:
        yield m
    finally:
        m.stop()


def test_dashboard_pages_break_no_rule_of_the_policy(catalog_manager: Manager, tmp_path: Path) -> None:
    m = catalog_manager
    with m.api() as api:
        assert api.post("/workspaces", json={"name": "csp", "start": False}).status_code == 201
    m.wait_status("csp", "stopped")
    console: list[str] = []
    with chromium(tmp_path / "profile") as browser:
        browser.add_init_script(WATCH_CSP)
        page = browser.new_page()
        page.on("console", lambda msg: console.append(msg.text) if "Content Security Policy" in msg.text else None)
        response = page.goto(m.url + "/login")
        assert (
            response is not None
            and "img-src 'self' data: http://127.0.0.1:9;" in response.headers["content-security-policy"]
        )
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", ADMIN_PASSWORD)
        page.click("button[type=submit]")  # the form carries the dashboard's own Origin: let through
        page.wait_for_selector("#workspaces", state="attached")
        refused = []
        for path in (
            "/",
            "/new",
            "/account",
            "/workspaces/csp",
            "/admin/users",
            "/admin/workspaces",
            "/admin/audit",
            "/workspaces/nope",
        ):
            page.goto(m.url + path)
            page.wait_for_load_state("load")
            if path == "/new":  # the template cards, with the catalog's remote thumbnail
                page.check("input[name=source][value=template]")
                expect(page.locator(".template .thumb").first).to_be_visible()
                page.wait_for_function(
                    "[...document.querySelectorAll('.template .thumb img')].every(img => img.complete)"
                )
            if path == "/admin/users":  # a dialog built by script
                page.locator("#users tr[data-user=admin] button[data-do=quota]").click()
                expect(page.locator("dialog[open] input[name=max_running]")).to_be_visible()
            refused += [f"{path}: {v}" for v in page.evaluate("window.__csp")]
        assert refused == [] and console == []
        # The watch sees what the policy refuses: an inline style is (the policy is really in force).
        watched(page)


def watched(page: Page) -> None:
    page.evaluate("document.body.insertAdjacentHTML('beforeend', '<p style=\"color: red\">inline</p>')")
    page.wait_for_function("window.__csp.length > 0")
    assert any(v.startswith("style-src") for v in page.evaluate("window.__csp"))


def test_logging_in_on_the_way_to_a_workspace_origin_gets_there(engine: Engine, tmp_path: Path) -> None:
    # With workspaces on origins of their own, the login form's redirects end on the workspace's
    # origin (the dashboard hands it a code): form-action must let them, as browsers check it there too.
    m = start_manager(tmp_path / "data", extra_env={"DEVYARD_WORKSPACE_DOMAIN": "localhost"})
    try:
        port = int(m.url.rsplit(":", 1)[1])
        with m.api() as api:
            assert api.post("/workspaces", json={"name": "app"}).status_code == 201
        m.wait_status("app", "running")
        workspace = f"http://app--admin.localhost:{port}"
        console: list[str] = []
        with chromium(tmp_path / "profile") as browser:
            page = browser.new_page()
            page.on("console", lambda msg: console.append(msg.text) if "Content Security Policy" in msg.text else None)
            page.goto(workspace + "/")  # no cookie for that origin, no session: to the dashboard's login page
            page.wait_for_url(f"http://localhost:{port}/login?**")
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", ADMIN_PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(workspace + "/**", wait_until="commit")
        assert console == []
    finally:
        m.stop()


# -- SSO --------------------------------------------------------------------------------------


def test_sso_redirect_uri_comes_from_public_url(engine: Engine, oidc_provider_dir: Path, tmp_path: Path) -> None:
    # The dashboard as users reach it (say a proxy on 8443) and the port the manager listens on differ:
    # only public_url may name where the issuer sends the browser back.
    public = "http://127.0.0.1:8443"
    callback = public + "/auth/oidc/callback"
    port = free_port()
    m = start_manager(tmp_path / "data", extra_env={**sso_env(port), "DEVYARD_PUBLIC_URL": public})
    try:
        with peer(
            [str(engine.node), str(SCRIPT), str(port), callback],
            env={**os.environ, "OIDC_PROVIDER_DIR": str(oidc_provider_dir)},
        ):
            with httpx.Client(base_url=m.url) as c:
                r = c.get("/auth/oidc/login", params={"next": "/"})
                assert r.status_code == 302 and r.headers["location"].startswith(f"http://127.0.0.1:{port}/")
                assert parse_qs(urlsplit(r.headers["location"]).query)["redirect_uri"] == [callback]
                # A forged Host is refused, or at least never becomes the redirect_uri.
                r = c.get("/auth/oidc/login", params={"next": "/"}, headers={"host": "evil.example"})
                assert r.status_code >= 400 or parse_qs(urlsplit(r.headers["location"]).query)["redirect_uri"] == [
                    callback
                ]
    finally:
        m.stop()
