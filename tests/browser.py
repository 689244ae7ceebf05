"""Headless Debian Chromium driven by Playwright, stopped by pid when the test is done."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
from playwright.sync_api import BrowserContext, Page, ViewportSize, sync_playwright

from devyard.provision.activation import BROWSER_FLAGS
from tests.support import kill_tree

CHROMIUM = "/usr/bin/chromium"
FLAGS = BROWSER_FLAGS  # the flags `devyard extensions check` runs Debian's Chromium with


def _pids_using(profile: Path) -> list[int]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(str(profile) in part for part in proc.info["cmdline"] or []):
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


# Screenshots of every dashboard page land here (the CI run's artifacts directory when it names one).
ARTIFACTS = (
    Path(os.environ.get("DEVYARD_ARTIFACTS", Path(__file__).resolve().parent.parent / "artifacts")) / "screenshots"
)


def shot(page: Page, name: str) -> Path:
    """Save a full-page screenshot of `page` as ARTIFACTS/<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@contextmanager
def chromium(
    profile: Path, ignore_https_errors: bool = False, viewport: ViewportSize | None = None, **options: Any
) -> Iterator[BrowserContext]:
    """A browser context on a fresh profile in `profile`; every Chromium process is gone afterwards."""
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport=viewport or {"width": 1400, "height": 900},
            ignore_https_errors=ignore_https_errors,
            **options,
        )
        try:
            yield context
        finally:
            context.close()
            for pid in _pids_using(profile):
                kill_tree(pid)


WORKBENCH_TIMEOUT_MS = 90_000


def login(page: Page, base_url: str, user: str, password: str) -> None:
    """Log in with the password form and wait for the dashboard."""
    page.goto(base_url + "/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_selector("#workspaces", state="attached")


def open_terminal(page: Page, workspace_url: str) -> None:
    """Open the workbench at `workspace_url` and its integrated terminal, focused for typing."""
    page.goto(workspace_url)
    page.wait_for_selector(".monaco-workbench", timeout=WORKBENCH_TIMEOUT_MS)
    page.keyboard.press("Control+Backquote")
    page.wait_for_selector(".terminal-wrapper .xterm", timeout=WORKBENCH_TIMEOUT_MS)
    page.locator(".terminal-wrapper .xterm").click()
    # xterm draws on a canvas; its input is a textarea that has focus once the terminal is up.
    page.wait_for_function(
        "document.activeElement && document.activeElement.classList.contains('xterm-helper-textarea')",
        timeout=WORKBENCH_TIMEOUT_MS,
    )


def run_in_terminal(page: Page, command: str) -> None:
    """Type `command` into the focused terminal and press Enter."""
    page.keyboard.type(command)
    page.keyboard.press("Enter")
