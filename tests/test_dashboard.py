"""The dashboard in real headless Chromium against a real manager and real engines.

The whole flow (log in → create from a template with two extension groups → progress → editor →
stop → start from the "starting" page → delete), an archive upload, the workspace page, the
account page, the admin pages, a phone-width run, dark mode and accessibility checks. Every page
is saved as a screenshot under the artifacts directory (tests/browser.py: ARTIFACTS).
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, Route, expect

from devyard.engine import install
from tests.browser import WORKBENCH_TIMEOUT_MS, chromium, login, shot
from tests.support import ADMIN_PASSWORD, Manager, start_manager, wait_for
from tests.vsix import make_vsix

ALICE_PASSWORD = "alice-password-1"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dash-vsix")
    make_vsix(folder, "devyardtest", "hello", "0.0.1")
    make_vsix(folder, "devyardtest", "second", "1.0.0")
    path = folder / "devyard.yaml"
    # Written as Databricks DevBox writes its devbox.yaml: groups keyed by id, its server and ui keys.
    path.write_text(
        f"""# DevBox configuration, with devyard's own block
extension_groups:
  basics:
    name: "Editor basics"
    description: "Editor basics"
    extensions: ["devyardtest.hello"]
    user_settings:
      "editor.tabSize": 2
  extras:
    name: "More tools"
    description: "More tools"
    extensions: ["devyardtest.second"]
server:
  default_port: 8000
  code_server_port_range: {{start: 8010, end: 8100}}
ui:
  default_extension_groups: ["basics"]
  settings:
    auto_refresh_interval: 5000  # milliseconds
    enable_dark_mode: true
  workspace:
    default_type: "upload"  # empty, upload, github
    max_upload_size_mb: 1
    supported_archive_types: [".zip", ".tar.gz"]
packaged_assets:
  tabs:
  - name: "Starters"
    items:
    - name: "python-starter"
      description: "A Python project"
      extensions_groups: ["extras"]
      thumbnail_url: "http://127.0.0.1:9/unreachable.png"
devyard:
  extensions: {{gallery: "", vsix_dir: "{folder}"}}
"""
    )
    return path


@pytest.fixture(scope="module")
def m(engine: install.Engine, config: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    manager = start_manager(tmp_path_factory.mktemp("dash") / "data", args=("--config", str(config)))
    try:
        with manager.api() as api:
            assert api.post("/users", json={"name": "alice", "password": ALICE_PASSWORD}).status_code == 201
            assert api.post("/users", json={"name": "bob", "password": "bob-password-1"}).status_code == 201
        yield manager
    finally:
        manager.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    with chromium(tmp_path / "profile") as context:
        yield context


def test_devbox_keys_without_use_are_named_once(m: Manager) -> None:
    said = [line for line in m.log.splitlines() if "ignored, devyard has no use for" in line]
    assert len(said) == 1, m.log
    assert said[0].endswith("ignored, devyard has no use for: server.code_server_port_range, ui.settings"), said


def card(page: Page, name: str, owner: str = "alice") -> str:
    return f'article.ws[data-owner="{owner}"][data-name="{name}"]'


def test_full_flow_from_a_template(m: Manager, browser: BrowserContext) -> None:
    page = browser.new_page()
    page.goto(m.url + "/")
    assert "/login" in page.url
    shot(page, "login")
    login(page, m.url, "alice", ALICE_PASSWORD)
    shot(page, "workspaces-empty")
    expect(page.locator("#none")).to_be_visible()

    page.click("header nav >> text=New workspace")
    page.wait_for_selector("form#create")
    # The name is checked as it is typed.
    page.fill("#name", "Flow")
    expect(page.locator("#name-error")).to_contain_text("lower-case")
    page.fill("#name", "flow")
    expect(page.locator("#name-error")).to_have_text("")
    page.check("input[name=source][value=template]")
    # The catalog card's thumbnail cannot load: a placeholder (its initial) takes its place.
    thumb = page.locator(".template .thumb").first
    expect(thumb).to_have_text("P")
    # basics is pre-selected by ui.default_extension_groups; choosing the template adds its group, extras.
    expect(page.locator("input[name=extension_groups][value=basics]")).to_be_checked()
    # A group is chosen by its DevBox key and shown by its name.
    expect(page.locator("label:has(input[name=extension_groups][value=basics])")).to_contain_text("Editor basics")
    expect(page.locator("input[name=extension_groups][value=extras]")).to_be_checked()
    shot(page, "create-template")
    page.click("#submit")
    page.wait_for_selector("#after:not([hidden])")
    expect(page.locator("#setup-state")).to_contain_text("ready", timeout=WORKBENCH_TIMEOUT_MS)
    shot(page, "create-done")
    ws = m.wait_status("flow", "running", token="alice")
    assert ws["template"] == "python-starter" and ws["extension_groups"] == ["extras", "basics"]

    # Open: a new tab with the editor, through the gateway.
    with browser.expect_page() as opened:
        page.click("#open")
    editor = opened.value
    editor.wait_for_selector(".monaco-workbench", timeout=WORKBENCH_TIMEOUT_MS)
    shot(editor, "workbench")
    editor.close()

    # The list shows it running, with live stats pushed by the server.
    page.goto(m.url + "/")
    flow = page.locator(card(page, "flow"))
    expect(flow.locator("[data-field=status]")).to_have_text("running")
    expect(flow.locator("[data-field=template]")).to_have_text("python-starter")
    expect(flow.locator("[data-field=memory]")).not_to_have_text("—", timeout=20_000)
    expect(flow.locator("[data-field=cpu]")).to_contain_text("%")
    shot(page, "workspaces-running")

    # Stop: the badge changes at once, before the API has answered (held back here), then settles.
    held: list[Route] = []
    page.route("**/api/v1/workspaces/flow/stop*", lambda route: held.append(route))
    flow.locator("button[data-action=stop]").click()
    expect(flow.locator("[data-field=status]")).to_have_text("stopping")
    expect(flow.locator("button[data-action=stop]")).to_have_attribute("aria-busy", "true")
    wait_for(lambda: held, 10, "the stop request")
    held[0].continue_()
    page.unroute("**/api/v1/workspaces/flow/stop*")
    expect(flow.locator("[data-field=status]")).to_have_text("stopped", timeout=60_000)

    # Opening a stopped workspace shows the starting page, which moves on to the editor by itself.
    page.goto(m.url + "/w/alice/flow/")
    page.wait_for_selector("#starting")
    shot(page, "starting")
    page.wait_for_selector(".monaco-workbench", timeout=WORKBENCH_TIMEOUT_MS)

    # Delete, after a confirmation that names the workspace.
    page.goto(m.url + "/")
    flow.locator("button[data-action=delete]").click()
    dialog = page.locator("dialog[open]")
    expect(dialog).to_contain_text("Delete workspace flow?")
    shot(page, "delete-confirm")
    dialog.locator("button.danger").click()
    expect(page.locator(card(page, "flow"))).to_have_count(0, timeout=60_000)
    with m.api("alice") as api:
        assert api.get("/workspaces/flow").status_code == 404


def test_updates_are_pushed_not_polled(m: Manager, browser: BrowserContext) -> None:
    page = browser.new_page()
    login(page, m.url, "alice", ALICE_PASSWORD)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/api/" in r.url else None)
    # A workspace created elsewhere (the CLI, the API) appears and follows its status without a reload.
    with m.api("alice") as api:
        assert api.post("/workspaces", json={"name": "pushed"}).status_code == 201
    expect(page.locator(card(page, "pushed")).locator("[data-field=status]")).to_have_text(
        "running", timeout=WORKBENCH_TIMEOUT_MS
    )
    with m.api("alice") as api:
        assert api.delete("/workspaces/pushed").status_code == 204
    expect(page.locator(card(page, "pushed"))).to_have_count(0, timeout=30_000)
    assert requests == [], f"the page polled: {requests}"  # the event stream was opened before we listened


def test_archive_upload_with_progress(m: Manager, browser: BrowserContext, tmp_path: Path) -> None:
    archive = tmp_path / "project.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("project/README.md", "uploaded through the dashboard\n")
    too_big = tmp_path / "big.zip"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("noise.bin", bytes(range(256)) * 8192)  # 2 MB: over this manager's 1 MB limit
    too_big.write_bytes(buf.getvalue())

    tarball = tmp_path / "project.tar"
    with tarfile.open(tarball, "w") as t:
        t.add(archive, arcname="project.zip")

    page = browser.new_page()
    login(page, m.url, "alice", ALICE_PASSWORD)
    page.goto(m.url + "/new")
    page.fill("#name", "uploaded")
    # ui.workspace.default_type: upload pre-selects the archive; supported_archive_types says which.
    expect(page.locator("input[name=source][value=archive]")).to_be_checked()
    expect(page.locator("#archive")).to_be_visible()
    assert page.locator("#archive").get_attribute("accept") == ".zip,.tar.gz"
    page.set_input_files("#archive", str(tarball))
    page.click("#submit")
    expect(page.locator("#message")).to_contain_text("This server takes .zip, .tar.gz archives.")
    # The server refuses it too, by its content, for a client that skips the page's check.
    page.evaluate("""document.getElementById('create').dataset.archiveTypes = '[".tar"]'""")
    page.click("#submit")
    expect(page.locator("#message")).to_contain_text("the upload is a .tar archive; this server takes .tar.gz, .zip")
    page.goto(m.url + "/new")
    page.fill("#name", "uploaded")
    page.set_input_files("#archive", str(too_big))
    page.click("#submit")
    expect(page.locator("#message")).to_contain_text("the limit is 1 MB")

    page.set_input_files("#archive", str(archive))
    page.click("#submit")
    expect(page.locator("#upload-bar")).to_be_visible()
    expect(page.locator("#setup-state")).to_contain_text("ready", timeout=WORKBENCH_TIMEOUT_MS)
    assert page.locator("#upload-bar").evaluate("b => b.value === b.max && b.max > 0")
    shot(page, "upload-done")
    files = m.data_dir / "workspaces" / "alice" / "uploaded" / "files"
    assert (files / "project" / "README.md").read_text() == "uploaded through the dashboard\n"

    # The server's limit holds too, with a readable message, for a client that skips the page's check.
    page.goto(m.url + "/new")
    page.evaluate("document.getElementById('create').dataset.maxUploadMb = '100'")
    page.fill("#name", "too-big")
    page.check("input[name=source][value=archive]")
    page.set_input_files("#archive", str(too_big))
    page.click("#submit")
    expect(page.locator("#message")).to_contain_text("limit", timeout=30_000)


def test_workspace_page(m: Manager, browser: BrowserContext) -> None:
    with m.api("alice") as api:
        if api.get("/workspaces/detail").status_code == 404:
            assert api.post("/workspaces", json={"name": "detail", "extension_groups": ["basics"]}).status_code == 201
    m.wait_status("detail", "running", token="alice", timeout=180)
    browser.grant_permissions(["clipboard-read", "clipboard-write"])
    page = browser.new_page()
    login(page, m.url, "alice", ALICE_PASSWORD)
    page.goto(m.url + "/workspaces/detail")
    log = page.locator("#log")
    expect(log).to_contain_text("provisioning done", timeout=30_000)
    expect(page.locator("#detail [data-field=memory]")).not_to_have_text("—", timeout=20_000)

    # Pause holds new lines back; resume shows them.
    page.click("#log-pause")
    expect(page.locator("#log-pause")).to_have_attribute("aria-pressed", "true")
    before = log.inner_text()
    with m.api("alice") as api:
        assert api.post("/workspaces/detail/restart").status_code == 202
    expect(page.locator("#log-state")).to_contain_text("waiting", timeout=60_000)
    assert log.inner_text() == before
    page.click("#log-pause")
    expect(log).not_to_have_text(before)
    page.click("#log-copy")
    expect(page.locator("#log-state")).to_contain_text("copied")
    assert "provisioning done" in page.evaluate("navigator.clipboard.readText()")

    # Shares: add bob, who can then read it; remove him again.
    page.fill("#share input[name=user]", "nobody-here")
    page.click("#share button")
    expect(page.locator("#share-message")).to_contain_text("nobody-here")
    page.fill("#share input[name=user]", "bob")
    page.click("#share button")
    expect(page.locator("#shares li[data-user=bob]")).to_be_visible()
    with m.api("bob") as api:
        assert api.get("/workspaces/detail", params={"owner": "alice"}).status_code == 200

    # Add the other extension group: its extension installs and the page says so.
    page.check("#add-groups input[value=extras]")
    page.click("#add-groups button")
    expect(page.locator("#outcomes")).to_contain_text("devyardtest.second", timeout=120_000)
    expect(page.locator("#groups-now")).to_contain_text("extras")
    shot(page, "workspace-detail")

    page.click("#shares li[data-user=bob] button")
    expect(page.locator("#shares li[data-user=bob]")).to_have_count(0)
    with m.api("bob") as api:
        assert api.get("/workspaces/detail", params={"owner": "alice"}).status_code == 404

    # Danger zone: delete, keeping the files.
    files = m.data_dir / "workspaces" / "alice" / "detail" / "files"
    (files / "keep.txt").write_text("kept")
    page.check("#keep-files")
    page.click("#delete")
    expect(page.locator("dialog[open]")).to_contain_text("Delete workspace detail?")
    expect(page.locator("dialog[open]")).to_contain_text("files stay")
    page.locator("dialog[open] button.danger").click()
    page.wait_for_url(m.url + "/")
    assert (files / "keep.txt").read_text() == "kept"

    # A workspace that does not exist is a readable page, not JSON.
    response = page.goto(m.url + "/workspaces/no-such-thing")
    assert response is not None and response.status == 404
    expect(page.locator("#error-title")).to_be_visible()
    assert "{" not in page.locator("main").inner_text()


def test_account_page(m: Manager, browser: BrowserContext) -> None:
    with m.api() as api:
        assert api.post("/users", json={"name": "dora", "password": "dora-password-1"}).status_code == 201
    page = browser.new_page()
    login(page, m.url, "dora", "dora-password-1")
    page.goto(m.url + "/account")

    # Password: a wrong current password and a mismatch are explained; then it works.
    def change(current: str, new: str, confirm: str) -> None:
        for field, value in (("current_password", current), ("new_password", new), ("confirm", confirm)):
            page.fill(f"#password [name={field}]", value)
        page.click("#password button")

    change("wrong-password", "dora-password-2", "dora-password-2")
    expect(page.locator("#password-message")).to_contain_text("current password is wrong")
    change("dora-password-1", "dora-password-2", "something-else")
    expect(page.locator("#password-message")).to_contain_text("differ")
    change("dora-password-1", "dora-password-2", "dora-password-2")
    expect(page.locator("#password-message")).to_contain_text("Password changed")

    # Tokens: shown once, listed, revoked.
    page.fill("#token [name=name]", "laptop")
    page.select_option("#token [name=scope]", "read")
    page.click("#token button[type=submit]")
    expect(page.locator("#token-value")).to_contain_text("dy_")
    token = page.locator("#token-value").inner_text()
    assert token.startswith("dy_")
    with m.api(token) as api:
        assert api.get("/me").json()["name"] == "dora"
    shot(page, "account")
    page.reload()
    assert token not in page.content()
    expect(page.locator("#tokens tr", has_text="laptop")).to_contain_text("read")
    page.locator("#tokens tr", has_text="laptop").locator("button").click()
    expect(page.locator("#token-message")).to_contain_text("revoked")
    with m.api(token) as api:
        assert api.get("/me").status_code == 401

    # Secrets: names only, never values.
    page.fill("#secret [name=name]", "API_KEY")
    page.fill("#secret [name=value]", "very-secret-value")
    page.click("#secret button[type=submit]")
    expect(page.locator("#secrets tr[data-name=API_KEY]")).to_contain_text("variable")
    page.reload()
    assert "very-secret-value" not in page.content()
    page.locator("#secrets tr[data-name=API_KEY] button").click()
    page.locator("dialog[open] button.danger").click()
    expect(page.locator("#secrets tr[data-name=API_KEY]")).to_have_count(0)
    expect(page.locator("#no-secrets")).to_be_visible()


def test_login_messages(engine: install.Engine, tmp_path: Path, browser: BrowserContext) -> None:
    # A manager of its own: throttling blocks the whole address for a while.
    own = start_manager(
        tmp_path / "data", extra_env={"DEVYARD_LOGIN_ADDRESS_PER_MINUTE": "3", "DEVYARD_LOGIN_ADDRESS_PER_HOUR": "0"}
    )
    try:
        page = browser.new_page()
        page.goto(own.url + "/login")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", "not-the-password")
        page.click("button[type=submit]")
        expect(page.locator("#login-error")).to_contain_text("wrong user name or password")
        # The page keeps the user name, and the form stays usable.
        expect(page.locator("input[name=username]")).to_have_value("admin")
        for _ in range(3):
            page.fill("input[name=password]", "not-the-password")
            page.click("button[type=submit]")
        expect(page.locator("#login-error")).to_contain_text("too many failed logins; try again in")
        shot(page, "login-throttled")
    finally:
        own.stop()


def test_admin_pages(m: Manager, browser: BrowserContext) -> None:
    page = browser.new_page()
    login(page, m.url, "alice", ALICE_PASSWORD)
    response = page.goto(m.url + "/admin/users")
    assert response is not None and response.status == 403
    expect(page.locator("#error-title")).to_be_visible()
    expect(page.locator("header nav")).not_to_contain_text("Admin")

    admin = browser.new_page()
    login(admin, m.url, "admin", ADMIN_PASSWORD)
    admin.click("header nav >> text=Admin")
    admin.wait_for_url("**/admin/users")
    # Add a user; make them admin and back; disable and enable; reset their password.
    admin.fill("#add-user [name=name]", "carol")
    admin.fill("#add-user [name=password]", "carol-password-1")
    admin.click("#add-user button")
    row = admin.locator("#users tr[data-user=carol]")
    expect(row).to_be_visible(timeout=10_000)
    row.locator("button[data-do=role]").click()
    expect(row.locator("[data-field=role]")).to_have_text("admin")
    row.locator("button[data-do=role]").click()
    expect(row.locator("[data-field=role]")).to_have_text("user")
    row.locator("button[data-do=disable]").click()
    admin.locator("dialog[open] button.danger").click()
    expect(row.locator("[data-field=state]")).to_have_text("disabled")
    with m.api(None) as anon:
        assert anon.post("/auth/login", json={"username": "carol", "password": "carol-password-1"}).status_code == 403
    row.locator("button[data-do=disable]").click()
    expect(row.locator("[data-field=state]")).to_have_text("active")
    row.locator("button[data-do=password]").click()
    admin.fill("dialog[open] input[type=password]", "carol-password-2")
    admin.locator("dialog[open] button.danger").click()
    expect(admin.locator("#message")).to_contain_text("password was reset")
    with m.api(None) as anon:
        assert anon.post("/auth/login", json={"username": "carol", "password": "carol-password-2"}).status_code == 200
    # Quota: her own limit on running workspaces; the others keep the default.
    row.locator("button[data-do=quota]").click()
    admin.fill("dialog[open] input[name=max_running]", "1")
    admin.locator("dialog[open] button.danger").click()
    expect(row.locator("[data-field=quota]")).to_contain_text("1 running")
    with m.api() as api:
        assert api.get("/users/carol/quota").json()["own"] == {
            "max_workspaces": None,
            "max_running": 1,
            "max_disk_mb": None,
        }
    shot(admin, "admin-users")

    # Every workspace, with its owner.
    with m.api("bob") as api:
        assert api.post("/workspaces", json={"name": "bobs", "start": False}).status_code == 201
    admin.click(".tabs >> text=All workspaces")
    bobs = admin.locator(card(admin, "bobs", owner="bob"))
    expect(bobs.locator("[data-field=owner]")).to_have_text("bob")
    expect(bobs.locator("[data-field=status]")).to_have_text("stopped", timeout=60_000)
    shot(admin, "admin-workspaces")

    # The audit log, filtered: carol's failed login is there; with outcome=ok it is not.
    admin.click(".tabs >> text=Audit log")
    admin.select_option("select[name=actor]", "")
    admin.fill("input[name=action]", "login")
    admin.select_option("select[name=outcome]", "failed")
    admin.click("form[aria-label='Filter the audit log'] button")
    expect(admin.locator("#audit tbody")).to_contain_text("login")
    assert all("failed" in t for t in admin.locator("#audit tbody tr td:nth-child(5)").all_inner_texts())
    admin.select_option("select[name=actor]", "carol")
    admin.select_option("select[name=outcome]", "ok")
    admin.click("form[aria-label='Filter the audit log'] button")
    rows = admin.locator("#audit tbody tr").all_inner_texts()
    assert rows and all("carol" in r and "failed" not in r for r in rows)
    shot(admin, "admin-audit")


PAGES = ["/", "/new", "/account", "/admin/users", "/admin/workspaces", "/admin/audit"]
UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button, a[href]')]
  .filter(el => el.offsetParent !== null || el.closest('.template'))
  .filter(el => !((el.labels && el.labels.length) || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')
                 || el.textContent.trim() || el.title))
  .map(el => el.outerHTML.slice(0, 120))"""


def test_phone_width_dark_mode_and_labels(m: Manager, tmp_path: Path) -> None:
    with m.api() as api:
        if api.get("/workspaces/phone").status_code == 404:
            assert api.post("/workspaces", json={"name": "phone", "start": False}).status_code == 201
    m.wait_status("phone", "stopped")
    with chromium(tmp_path / "phone", viewport={"width": 390, "height": 844}, color_scheme="dark") as phone:
        page = phone.new_page()
        login(page, m.url, "admin", ADMIN_PASSWORD)
        for path in [*PAGES, "/workspaces/phone"]:
            page.goto(m.url + path)
            page.wait_for_load_state("networkidle") if path != "/" else page.wait_for_selector("article.ws")
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{path} is {width} px wide on a 390 px phone"
            assert page.evaluate(UNLABELLED) == [], f"unlabelled controls on {path}"
            shot(page, "phone" + (path.replace("/", "-").rstrip("-") or "-home"))
        # Dark: the system's preference is followed.
        luminance = page.evaluate("""() => { const [r, g, b] = getComputedStyle(document.body).backgroundColor.match(/\\d+/g).map(Number);
                                          return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255; }""")
        assert luminance < 0.2
        # Keyboard: the first Tab reaches the skip link, and focus is visible.
        page.goto(m.url + "/")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.className") == "skip"
        assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    with chromium(tmp_path / "desk", viewport={"width": 1440, "height": 900}, color_scheme="light") as desk:
        page = desk.new_page()
        login(page, m.url, "admin", ADMIN_PASSWORD)
        page.goto(m.url + "/new")
        # Keyboard only: type a name, choose an empty folder (this manager starts from an upload), press create.
        page.focus("#name")
        page.keyboard.type("keyboard-made")
        page.focus("input[name=source][value=empty]")
        page.keyboard.press("Space")
        expect(page.locator("input[name=source][value=empty]")).to_be_checked()
        page.focus("#submit")
        page.keyboard.press("Enter")
        expect(page.locator("#setup-state")).to_contain_text("ready", timeout=WORKBENCH_TIMEOUT_MS)
        luminance = page.evaluate("""() => { const [r, g, b] = getComputedStyle(document.body).backgroundColor.match(/\\d+/g).map(Number);
                                          return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255; }""")
        assert luminance > 0.8
        page.goto(m.url + "/")
        page.wait_for_selector("article.ws")
        assert page.evaluate(UNLABELLED) == []
        shot(page, "desktop-workspaces")
