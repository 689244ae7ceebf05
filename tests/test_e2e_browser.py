"""A user's whole first session, in real headless Chromium against the real manager and engine."""

from __future__ import annotations

import os
import shutil

import psutil

from tests.browser import chromium
from tests.support import ADMIN_PASSWORD, Manager, wait_for

WORKBENCH_TIMEOUT_MS = 90_000


def test_login_create_edit_terminal_stop_start_delete(fresh_manager: Manager, tmp_path) -> None:  # type: ignore[no-untyped-def]
    m = fresh_manager
    files = m.data_dir / "workspaces" / "admin" / "demo" / "files"
    with chromium(tmp_path / "profile") as browser:
        page = browser.new_page()
        # Log in with the password form, coming from the dashboard.
        page.goto(m.url + "/")
        assert "/login" in page.url
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", ADMIN_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_selector("#workspaces", state="attached")

        # Create a workspace from the dashboard.
        page.goto(m.url + "/new")
        page.fill("form#create input[name=name]", "demo")
        page.click("form#create button[type=submit]")
        # The page follows the workspace until it runs.
        page.wait_for_selector("#open:not([hidden])", timeout=WORKBENCH_TIMEOUT_MS)
        (files / "notes.txt").write_text("first line\n")

        # Open it through the gateway: the workbench loads and the explorer shows the folder.
        page.goto(m.url + "/w/admin/demo/")
        page.wait_for_selector(".monaco-workbench", timeout=WORKBENCH_TIMEOUT_MS)
        explorer_item = page.locator(".explorer-folders-view .monaco-list-row", has_text="notes.txt")
        explorer_item.wait_for(timeout=WORKBENCH_TIMEOUT_MS)

        # Edit a file in the editor and save it.
        explorer_item.click()
        editor = page.locator(".editor-instance .monaco-editor .view-lines")
        editor.wait_for(timeout=WORKBENCH_TIMEOUT_MS)
        editor.click()
        page.keyboard.press("Control+End")
        page.keyboard.type("typed-in-the-browser")
        page.keyboard.press("Control+s")
        wait_for(lambda: "typed-in-the-browser" in (files / "notes.txt").read_text(), 30, "the editor's save on disk")

        # Run a command in the integrated terminal: it runs in the workspace folder.
        page.keyboard.press("Control+Backquote")
        page.wait_for_selector(".terminal-wrapper .xterm", timeout=WORKBENCH_TIMEOUT_MS)
        page.locator(".terminal-wrapper .xterm").click()
        # xterm draws on a canvas here; its input is a textarea that has focus once the terminal is up.
        page.wait_for_function(
            "document.activeElement && document.activeElement.classList.contains('xterm-helper-textarea')",
            timeout=WORKBENCH_TIMEOUT_MS,
        )
        page.keyboard.type("echo made-in-terminal > t.txt")
        page.keyboard.press("Enter")
        wait_for(
            lambda: (files / "t.txt").exists() and (files / "t.txt").read_text() == "made-in-terminal\n",
            30,
            "t.txt from the terminal",
        )
        page.screenshot(path=str(tmp_path / "workbench.png"))
        shutil.copy(tmp_path / "workbench.png", "/tmp/devyard-e2e-workbench.png") if os.environ.get(
            "DEVYARD_KEEP_SCREENSHOT"
        ) else None
        page.close()

    # Stop and start: files survive.
    with m.api() as api:
        assert api.post("/workspaces/demo/stop").status_code == 202
        m.wait_status("demo", "stopped")
        assert not m.engine_pids()
        assert api.post("/workspaces/demo/start").status_code == 202
        m.wait_status("demo", "running")
        assert (files / "t.txt").read_text() == "made-in-terminal\n"
        assert "typed-in-the-browser" in (files / "notes.txt").read_text()

        # Delete: the engine and the folder are gone.
        pids = m.engine_pids()
        assert len(pids) == 1
        engine = psutil.Process(pids[0])
        assert api.delete("/workspaces/demo").status_code == 204
        assert not engine.is_running() or engine.status() == psutil.STATUS_ZOMBIE
        assert not files.exists()
