"""Accessibility as a check: axe-core (the npm package, the standard engine) over every dashboard page in Chromium.

Each page is loaded as a user would see it (a real manager, a workspace, audit entries, a dormant
workspace and a running one's schedule), at desktop and phone width, and any serious or critical
violation fails the test with the rule, the help text and the elements it names.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devyard.engine import install
from tests.browser import chromium, login
from tests.support import ADMIN_PASSWORD, Manager, start_manager

AXE = "axe-core@4.14.1"
WIDTHS = {"desktop": {"width": 1400, "height": 900}, "phone": {"width": 390, "height": 844}}
PAGES = (
    "/",
    "/new",
    "/workspaces/docs",
    "/account",
    "/admin/users",
    "/admin/groups",
    "/admin/workspaces",
    "/admin/usage",
    "/admin/dormancy",
    "/admin/audit",
    "/workspaces/nosuch",  # the error page
)


@pytest.fixture(scope="session")
def axe_script() -> Path:
    """axe.min.js from the npm registry, installed once into the test tools cache."""
    root = Path.home() / ".cache" / "devyard" / "test-tools" / AXE.replace("@", "-")
    script = root / "node_modules" / "axe-core" / "axe.min.js"
    if not script.exists():
        root.mkdir(parents=True, exist_ok=True)
        npm = ["npm", "install", "--no-audit", "--no-fund", "--no-save", "--prefix", str(root), AXE]
        subprocess.run(npm, check=True, timeout=300, capture_output=True)
    return script


@pytest.fixture(scope="module")
def manager(engine: install.Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    """A manager with a second user, a stopped workspace with a schedule, and audit entries."""
    tmp = tmp_path_factory.mktemp("a11y")
    with start_manager(
        tmp / "data", {"DEVYARD_DORMANT_AFTER_DAYS": "30", "DEVYARD_DELETE_DORMANT_AFTER_DAYS": "7"}
    ) as m:
        m.add_user("bob")
        with m.api() as api:
            assert api.post("/workspaces", json={"name": "docs", "start": False}).status_code == 201
            m.wait_status("docs", "stopped")
            api.patch(
                "/workspaces/docs", json={"schedule": {"days": ["mon", "tue"], "start": "09:00", "stop": "18:00"}}
            )
        yield m


def serious(page: Any, script: Path) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now, one line each."""
    page.add_script_tag(path=str(script))
    found = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:4]}"
        for v in found
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("width", list(WIDTHS))
def test_no_dashboard_page_has_a_serious_accessibility_violation(
    manager: Manager, axe_script: Path, tmp_path: Path, width: str
) -> None:
    problems: dict[str, list[str]] = {}
    # The pages' Content-Security-Policy allows no injected script; the check is the test's, not the page's.
    with chromium(tmp_path / "profile", viewport=WIDTHS[width], bypass_csp=True) as ctx:  # type: ignore[arg-type]
        page = ctx.new_page()
        page.goto(manager.url + "/login")
        problems["/login"] = serious(page, axe_script)
        login(page, manager.url, "admin", ADMIN_PASSWORD)
        for path in PAGES:
            page.goto(manager.url + path)
            page.wait_for_timeout(400)  # the live stream fills the cards (it never goes idle: no "networkidle")
            problems[path] = serious(page, axe_script)
    if any(problems.values()):
        pytest.fail("\n".join(f"{p}: {v}" for p, found in problems.items() for v in found), pytrace=False)
