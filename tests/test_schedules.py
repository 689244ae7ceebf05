"""Schedules, the longest session, and why a workspace stopped (or has not), against a real manager and real engines.

The manager's policy clock is moved by the test (`clock_offset_file`), never slept through: a
schedule's start and stop times, an idle timeout and a session lifetime pass in seconds. The
browser's clock is moved the same way (Playwright's clock), so the dashboard's warning is the one a
user would see ten minutes before the stop.
"""

from __future__ import annotations

import json
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import Locator, Page

from devyard.engine import install
from tests.browser import chromium, login, shot
from tests.support import Manager, start_manager, wait_for


class Clock:
    """The manager's policy clock, moved forward by writing its offset file."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset_s = path, 0.0
        path.write_text("0")

    def forward(self, seconds: float) -> None:
        """Move the clock `seconds` on (the manager reads the file again within 0.2 s)."""
        self.offset_s += seconds
        self.path.write_text(str(self.offset_s))

    def now(self) -> datetime:
        """What the manager's policies take for now."""
        return datetime.now(UTC) + timedelta(seconds=self.offset_s)


@pytest.fixture
def clocked(engine: install.Engine, tmp_path: Path) -> Iterator[tuple[Manager, Clock]]:
    """A manager whose policy clock the test moves, acting on schedules every half second; user ada."""
    clock = Clock(tmp_path / "clock")
    env = {
        "DEVYARD_CLOCK_OFFSET_FILE": str(clock.path),
        "DEVYARD_TIMERS_INTERVAL_S": "0.5",
        "DEVYARD_SUPERVISE_INTERVAL_S": "0.5",
        "DEVYARD_IDLE_TIMEOUT_S": "600",
        "DEVYARD_MAX_SESSION_HOURS": "1",
        "DEVYARD_WORKSPACE_DOMAIN": "none",
    }
    with start_manager(tmp_path / "data", env) as m:
        m.add_user("ada")
        yield m, clock


@contextmanager
def ada_sees(m: Manager, clock: Clock, tmp_path: Path, name: str) -> Iterator[tuple[Page, Locator]]:
    """ada's dashboard in Chromium, its clock set to the manager's, once workspace `name`'s card shows a warning."""
    with chromium(tmp_path / "profile") as ctx:
        page = ctx.new_page()
        page.clock.install(time=clock.now())
        login(page, m.url, "ada", "ada-password")
        warning = page.locator(f"article.ws[data-name={name}] [data-field=stop-warning]")
        warning.wait_for(state="visible", timeout=15_000)
        yield page, warning


def at(text: str) -> datetime:
    """A time from the API."""
    return datetime.fromisoformat(text)


def test_a_schedule_starts_and_stops_a_workspace_in_its_owners_time_zone(clocked: tuple[Manager, Clock]) -> None:
    m, clock = clocked
    assert m.cli("timezone", "Asia/Tokyo", token="ada").stdout.strip() == "Asia/Tokyo"
    wrong = m.cli("timezone", "Mars/Olympus_Mons", token="ada")
    assert wrong.returncode != 0 and "unknown time zone 'Mars/Olympus_Mons'" in wrong.stderr
    with m.api("ada") as api:
        assert api.post("/workspaces", json={"name": "office", "start": False}).status_code == 201
        m.wait_status("office", "stopped", "ada")
        tokyo = ZoneInfo("Asia/Tokyo")
        begin = (clock.now().astimezone(tokyo) + timedelta(hours=3)).replace(second=0, microsecond=0)
        end = begin + timedelta(hours=2)
        out = m.cli(
            "ws", "schedule", "office", "--days", "mon-sun", "--start", f"{begin:%H:%M}", "--stop", f"{end:%H:%M}",
            token="ada",
        )  # fmt: skip
        assert out.returncode == 0 and f"start {begin:%H:%M}, stop {end:%H:%M}" in out.stdout, out.stderr
        bad = api.patch("/workspaces/office", json={"schedule": {"days": ["mon"], "start": "25:00"}})
        assert bad.status_code == 422 and "start" in bad.json()["error"]["message"]
        time.sleep(1.5)  # three rounds of the timers: nothing is due yet
        assert api.get("/workspaces/office").json()["status"] == "stopped"

        clock.forward((begin - clock.now()).total_seconds() + 30)  # 30 s past the start time, in Tokyo
        ws = m.wait_status("office", "running", "ada")
        started = ws["last_start"]
        assert started["reason"] == "schedule" and started["by"] is None
        assert f"{begin:%H:%M}" in started["detail"] and "Asia/Tokyo" in started["detail"]
        # Why it has not stopped: the idle timeout, the schedule's stop, the longest session, soonest first.
        due = {d["reason"]: at(d["at"]) for d in ws["stops_due"]}
        assert due["schedule"] == end and list(due) == sorted(due, key=lambda r: due[r])
        assert due["max_lifetime"] - at(ws["started_at"]) == timedelta(hours=1)

        api.patch("/workspaces/office", json={"idle_timeout_s": 0})  # idleness must not win the race below
        clock.forward(50 * 60)
        assert api.get("/workspaces/office").json()["status"] == "running"

    # Stopped by the schedule at its stop time (the lifetime is an hour, so set that stop inside it).
    with m.api("ada") as api:
        soon = (clock.now().astimezone(ZoneInfo("Asia/Tokyo")) + timedelta(minutes=5)).replace(second=0, microsecond=0)
        api.patch("/workspaces/office", json={"schedule": {"days": list(DAYS), "stop": f"{soon:%H:%M}"}})
        clock.forward((soon - clock.now()).total_seconds() + 20)
        ws = m.wait_status("office", "stopped", "ada", timeout=60)
        assert ws["last_stop"]["reason"] == "schedule" and f"{soon:%H:%M}" in ws["last_stop"]["detail"]
        assert ws["stops_due"] == []
    why = m.cli("ws", "why", "office", token="ada")
    assert why.returncode == 0 and "last stopped" in why.stdout and "schedule: its schedule stops it" in why.stdout
    with m.api() as admin:
        audit = admin.get("/audit", params={"action": "workspace."}).json()
    decided = [
        (e["action"], e["detail"]["reason"]) for e in audit if e["actor"] is None and e["target"] == "ada/office"
    ]
    assert ("workspace.start", "schedule") in decided and ("workspace.stop", "schedule") in decided


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def test_idle_and_lifetime_stops_say_why_and_the_dashboard_warns_first(
    clocked: tuple[Manager, Clock], tmp_path: Path
) -> None:
    m, clock = clocked
    with m.api("ada") as api:
        assert api.post("/workspaces", json={"name": "lab"}).status_code == 201
        ws = m.wait_status("lab", "running", "ada")
        assert ws["last_start"]["reason"] == "created"
        idle = next(d for d in ws["stops_due"] if d["reason"] == "idle")
        assert "10 minutes" in idle["detail"]

        # Nobody uses it for 11 minutes: stopped for idleness, with the last activity seen.
        clock.forward(11 * 60)
        ws = m.wait_status("lab", "stopped", "ada", timeout=30)
        assert ws["last_stop"]["reason"] == "idle" and "last activity seen" in ws["last_stop"]["detail"]

        # Opening it starts it again, and says who did.
        token = m.token("ada")
        with httpx.Client(base_url=m.url, headers={"authorization": f"Bearer {token}"}) as gw:
            assert gw.get("/w/ada/lab/", headers={"accept": "text/html"}).status_code == 503
        ws = m.wait_status("lab", "running", "ada")
        assert ws["last_start"]["reason"] == "opened" and ws["last_start"]["by"] == "ada"
        api.patch("/workspaces/lab", json={"idle_timeout_s": 0})
        end = at(ws["started_at"]) + timedelta(hours=1)
        assert [d["reason"] for d in api.get("/workspaces/lab").json()["stops_due"]] == ["max_lifetime"]

    # 10 minutes before the end of its session, the dashboard says so (the browser's clock moved alike).
    clock.forward((end - clock.now()).total_seconds() - 10 * 60)
    with ada_sees(m, clock, tmp_path, "lab") as (page, card):
        assert "will stop at" in card.inner_text() and "at most 60 minutes" in card.inner_text()
        page.goto(m.url + "/workspaces/lab")
        banner = page.locator("#detail [data-field=stop-warning]")
        banner.wait_for(state="visible", timeout=15_000)
        assert "Save your work" in banner.inner_text()
        assert "opened" in page.locator("[data-field=last-start]").inner_text()
        assert "max lifetime" in page.locator("[data-field=stops-due]").inner_text()
        shot(page, "workspace-stop-warning")

        # The session's end comes: stopped, and the page says why as it happens.
        clock.forward(11 * 60)
        wait_for(
            lambda: "max lifetime" in page.locator("[data-field=last-stop]").inner_text(),
            30,
            "the page to show the lifetime stop",
        )
        assert banner.is_hidden()
    ws = m.wait_status("lab", "stopped", "ada", timeout=30)
    assert ws["last_stop"]["reason"] == "max_lifetime"
    assert "sessions last at most 60 minutes" in ws["last_stop"]["detail"]


DORMANCY = """
devyard:
  dormant_after_days: 30
  delete_dormant_after_days: 14
  dormancy_dry_run: {dry_run}
  timers_interval_s: 0.5
  workspace_domain: none
"""


def test_dormant_workspaces_are_stopped_then_backed_up_and_deleted(engine: install.Engine, tmp_path: Path) -> None:
    clock = Clock(tmp_path / "clock")
    config = tmp_path / "devyard.yaml"
    config.write_text(DORMANCY.format(dry_run="true"))
    env = {"DEVYARD_CLOCK_OFFSET_FILE": str(clock.path)}
    with start_manager(tmp_path / "data", env, args=("--config", str(config))) as m:
        m.add_user("ada")
        with m.api("ada") as api:
            for name in ("old", "back", "kept"):
                assert api.post("/workspaces", json={"name": name, "start": False}).status_code == 201
                m.wait_status(name, "stopped", "ada")
            clock.forward(20 * 86400)
            # "kept" is opened after 20 days: its 30 days start again from there.
            token = m.token("ada")
            with httpx.Client(base_url=m.url, headers={"authorization": f"Bearer {token}"}) as gw:
                assert gw.get("/w/ada/kept/", headers={"accept": "text/html"}).status_code == 503
            m.wait_status("kept", "running", "ada")
            assert api.post("/workspaces/kept/stop").status_code == 202
            m.wait_status("kept", "stopped", "ada")
            clock.forward(11 * 86400)

            # A dry run only says what it would do: in the report and once in the log.
            with m.api() as admin:
                report = wait_for(lambda: admin.get("/dormancy").json(), 10, "the dormancy report")
            assert report["dry_run"] is True
            due = {w["name"]: w for w in report["workspaces"]}
            assert due["old"]["next"] == "dormant" and due["old"]["due"] is True
            assert due["kept"]["next"] == "dormant" and due["kept"]["due"] is False
            wait_for(lambda: "dry run: would mark dormant ada/old" in m.log, 10, "the dry run's log line")
            time.sleep(1.5)
            assert m.log.count("dry run: would mark dormant ada/old") == 1
            assert api.get("/workspaces/old").json()["dormant_at"] is None

            # For real now (a reload: no restart): both idle ones are marked, the one opened 11 days ago is not.
            config.write_text(DORMANCY.format(dry_run="false"))
            assert m.cli("reload").returncode == 0
            for name in ("old", "back"):
                ws = wait_for(
                    lambda n=name: (
                        api.get(f"/workspaces/{n}").json()["dormant_at"] and api.get(f"/workspaces/{n}").json()
                    ),
                    15,
                    f"{name} to be dormant",
                )
                assert ws["status"] == "stopped" and ws["last_stop"]["reason"] == "dormant"
                assert at(ws["delete_at"]) - at(ws["dormant_at"]) == timedelta(days=14)
            assert api.get("/workspaces/kept").json()["dormant_at"] is None
            ws = api.get("/workspaces/old").json()
            why = m.cli("ws", "why", "old", token="ada").stdout
            assert "dormant since" in why and "deleted at" in why

        # Its owner is told on the dashboard, with the date it goes.
        with ada_sees(m, clock, tmp_path, "old") as (page, warning):
            assert "is dormant" in warning.inner_text() and "will be deleted on" in warning.inner_text()
            shot(page, "workspace-dormant")
        with m.api() as admin:
            listed = admin.get("/dormancy").json()["workspaces"]
        assert [w["next"] for w in listed if w["name"] == "old"] == ["delete"]
        assert "mark dormant" in m.cli("dormancy").stdout

        # Starting one clears its mark; the other is backed up, then deleted, 14 days on.
        with m.api("ada") as api:
            assert api.post("/workspaces/back/start").status_code == 202
            assert m.wait_status("back", "running", "ada")["dormant_at"] is None
            assert api.post("/workspaces/back/stop").status_code == 202
            m.wait_status("back", "stopped", "ada")
            clock.forward(15 * 86400)
            wait_for(lambda: api.get("/workspaces/old").status_code == 404, 30, "old to be deleted")
            assert api.get("/workspaces/back").json()["dormant_at"] is None
        saved = list((m.data_dir / "backups" / "dormant" / "ada").glob("old-*.tar.gz"))
        assert len(saved) == 1
        with tarfile.open(saved[0]) as tar:
            manifest = json.load(tar.extractfile("devyard-backup.json"))  # type: ignore[arg-type]
        assert manifest["name"] == "old" and manifest["owner"] == "ada"
        with m.api() as admin:
            audit = admin.get("/audit", params={"action": "workspace.delete"}).json()
        assert any(
            e["actor"] is None and e["detail"]["reason"] == "dormant" and e["target"] == "ada/old" for e in audit
        )
