"""Usage against a workload the test controls: a real engine whose repository's postStartCommand writes 50 MB,
holds 300 MB of memory and burns a CPU for 8 s; the figures in the API, the CSV, the CLI and the pages must match.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from devyard.engine import install
from tests.browser import chromium, login, shot
from tests.support import ADMIN_PASSWORD, Manager, make_repo, start_manager, wait_for

WORKLOAD = (
    "head -c 50000000 /dev/zero > ballast.bin; "
    "python3 -c \"import time; big = b'x' * (300 << 20)\n"
    'while time.process_time() < 8: pass\ntime.sleep(4)"'
)  # 8 s of CPU time however busy the machine is
MB = 1 << 20


@pytest.fixture(scope="module")
def m(engine: install.Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    """A manager sampling every half second, with a priced size; admin and bob."""
    tmp = tmp_path_factory.mktemp("usage")
    config = tmp / "devyard.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "devyard": {
                    "usage_sample_s": 0.5,
                    "git_file_roots": [str(tmp)],
                    "sizes": {"small": {"memory_mb": 2048, "cost_per_hour": 0.5}},
                    "default_size": "small",
                    "workspace_domain": "none",
                }
            }
        )
    )
    with start_manager(tmp / "data", args=("--config", str(config))) as manager:
        manager.add_user("bob")
        devcontainer = {"postStartCommand": WORKLOAD}
        make_repo(tmp / "burn.git", {".devcontainer/devcontainer.json": json.dumps(devcontainer), "README": "burn\n"})
        make_repo(tmp / "quiet.git", {"README": "quiet\n"})
        yield manager


def test_usage_adds_up_what_a_workload_used(m: Manager) -> None:
    repos = Path(yaml.safe_load((m.data_dir.parent / "devyard.yaml").read_text())["devyard"]["git_file_roots"][0])
    with m.api() as api:
        for name in ("burn", "quiet"):
            assert (
                api.post("/workspaces", json={"name": name, "git_url": f"file://{repos}/{name}.git"}).status_code == 201
            )
        began = time.monotonic()
        m.wait_status("burn", "running")

        def done() -> bool:
            return any(
                "postStartCommand exited with status 0" in line
                for line in api.get("/workspaces/burn/logs").json()["lines"]
            )

        wait_for(done, 90, "the workload to finish")
        time.sleep(1.5)  # three more samples
        assert api.post("/workspaces/burn/stop").status_code == 202
        m.wait_status("burn", "stopped")
        ran = time.monotonic() - began
        time.sleep(1.0)  # the last spans are written each round

        lines = {ln["workspace"]: ln for ln in api.get("/usage", params={"group_by": "workspace"}).json()["lines"]}
        burn = lines["burn"]
        assert 8 <= burn["cpu_seconds"] <= 8 + 20, burn  # the 8 s burn, plus the engine's own start
        assert burn["memory_peak_bytes"] >= 300 * MB and burn["memory_avg_bytes"] < burn["memory_peak_bytes"]
        assert burn["disk_bytes"] >= 50_000_000
        assert burn["starts"] == 1
        assert 0.5 * ran <= burn["running_hours"] * 3600 <= ran + 2, (burn, ran)
        assert burn["cost"] == pytest.approx(burn["running_hours"] * 0.5, abs=1e-3)
        assert lines["quiet"]["cpu_seconds"] < burn["cpu_seconds"]

        # Per user: the same figures added up; bob sees only his own (none).
        mine = api.get("/usage").json()["lines"]
        assert [ln["user"] for ln in mine] == ["admin"] and mine[0]["workspace"] is None
        assert mine[0]["running_hours"] >= burn["running_hours"]
        with m.api("bob") as bob:
            assert bob.get("/usage").json()["lines"] == []
            backwards = bob.get("/usage", params={"from": "2026-12-02", "to": "2026-12-01"})
            assert backwards.status_code == 422 and backwards.json()["error"]["code"] == "bad_period"

        # The hour's samples, as the page's charts draw them.
        points = api.get("/workspaces/burn/usage", params={"window": "hour"}).json()
        assert max(p["memory_bytes"] for p in points) >= 300 * MB
        assert max(p["cpu_percent"] for p in points) >= 50

    out = m.cli("usage", "--group-by", "workspace", "--csv")
    assert out.returncode == 0, out.stderr
    rows = {r["workspace"]: r for r in csv.DictReader(io.StringIO(out.stdout))}
    assert float(rows["burn"]["cpu_seconds"]) == burn["cpu_seconds"] and rows["burn"]["user"] == "admin"
    table = m.cli("usage", "--group-by", "workspace")
    assert table.returncode == 0 and "burn" in table.stdout and "cost" in table.stdout


def test_the_usage_page_and_the_workspace_charts(m: Manager, tmp_path: Path) -> None:
    with m.api() as api:
        if api.get("/workspaces/burn").status_code == 404:
            pytest.skip("needs the workload of test_usage_adds_up_what_a_workload_used")
    with chromium(tmp_path / "profile") as ctx:
        page = ctx.new_page()
        login(page, m.url, "admin", ADMIN_PASSWORD)
        page.goto(m.url + "/admin/usage?group_by=workspace")
        chart = page.locator("#usage-chart img").get_attribute("src")
        assert chart is not None and '<rect class="bar"' in page.request.get(m.url + chart).text()
        rows = page.locator("#usage tbody tr")
        assert rows.count() == 2
        # Sorting by CPU seconds: descending first, then ascending.
        page.get_by_role("button", name="CPU seconds").click()
        assert page.locator("#usage tbody tr").first.get_attribute("data-workspace") == "burn"
        page.get_by_role("button", name="CPU seconds").click()
        assert page.locator("#usage tbody tr").first.get_attribute("data-workspace") == "quiet"
        assert page.locator("th[aria-sort=ascending]").inner_text().startswith("CPU seconds")
        with page.expect_download() as download:
            page.click("#usage-csv")
        text = Path(download.value.path()).read_text()
        assert text.startswith("user,workspace,running_hours,cpu_seconds") and "burn" in text
        shot(page, "usage-page")

        page.goto(m.url + "/workspaces/burn")
        charts = page.locator("img[data-chart]")
        assert charts.count() == 6
        page.locator("#use").scroll_into_view_if_needed()
        wait_for(
            lambda: page.evaluate(
                "[...document.querySelectorAll('img[data-chart]')].every(i => i.complete && i.naturalWidth > 0)"
            ),
            15,
            "the charts to load",
        )
        svg = page.request.get(m.url + "/workspaces/burn/chart/memory/hour.svg").text()
        assert "<polyline" in svg and "Memory, last hour" in svg
        shot(page, "workspace-charts")
