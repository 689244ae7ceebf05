"""Headless Debian Chromium driven by Playwright, stopped by pid when the test is done."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
from playwright.sync_api import BrowserContext, sync_playwright

from tests.support import kill_tree

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


def _pids_using(profile: Path) -> list[int]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(str(profile) in part for part in proc.info["cmdline"] or []):
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


@contextmanager
def chromium(profile: Path, ignore_https_errors: bool = False) -> Iterator[BrowserContext]:
    """A browser context on a fresh profile in `profile`; every Chromium process is gone afterwards."""
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=FLAGS, viewport={"width": 1400, "height": 900},
            ignore_https_errors=ignore_https_errors,
        )
        try:
            yield context
        finally:
            context.close()
            for pid in _pids_using(profile):
                kill_tree(pid)
