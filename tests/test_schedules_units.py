"""Schedules' edges, days and time zones, in milliseconds (the manager-level behaviour is in test_schedules.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from devyard.cli.ws_time import parse_days
from devyard.clock import Clock
from devyard.config import Settings
from devyard.errors import Invalid
from devyard.schedules import Schedule, zone
from devyard.workspaces.timers import due_stops

pytestmark = pytest.mark.fast
PARIS = ZoneInfo("Europe/Paris")


def test_the_last_edge_passed_is_the_one_acted_on() -> None:
    s = Schedule(days=["mon", "tue", "wed", "thu", "fri"], start="09:00", stop="18:00")
    monday_8 = datetime(2026, 12, 7, 8, 0, tzinfo=PARIS)  # a Monday
    assert s.latest_edge(PARIS, monday_8, monday_8 + timedelta(minutes=59)) is None
    at, edge = s.latest_edge(PARIS, monday_8, monday_8 + timedelta(hours=1, seconds=1))  # type: ignore[misc]
    assert (edge, at) == ("start", datetime(2026, 12, 7, 9, 0, tzinfo=PARIS))
    # A clock jumped over the whole day: the stop, the later edge, wins.
    assert s.latest_edge(PARIS, monday_8, monday_8 + timedelta(hours=12))[1] == "stop"  # type: ignore[index]
    # The weekend has none: Friday 18:00 is the last edge before Monday.
    saturday = datetime(2026, 12, 12, 12, 0, tzinfo=PARIS)
    assert s.latest_edge(PARIS, saturday, saturday + timedelta(hours=30)) is None
    assert s.next_edge(PARIS, saturday, "start") == datetime(2026, 12, 14, 9, 0, tzinfo=PARIS)


def test_wall_clock_times_hold_across_a_change_of_summer_time() -> None:
    s = Schedule(days=["sun", "mon"], start="09:00")
    before = datetime(2026, 3, 28, 12, 0, tzinfo=PARIS)  # the night of 28–29 March 2026 moves Paris to UTC+2
    sunday = s.next_edge(PARIS, before, "start")
    assert sunday is not None and sunday.astimezone(UTC).hour == 7  # 09:00 summer time, not 08:00
    monday = s.next_edge(PARIS, sunday, "start")
    assert monday is not None and monday - sunday == timedelta(days=1)


def test_a_schedule_refuses_what_it_cannot_mean() -> None:
    with pytest.raises(ValidationError, match="start time, a stop time or both"):
        Schedule(days=["mon"])
    with pytest.raises(ValidationError, match="once"):
        Schedule(days=["mon", "mon"], start="09:00")
    with pytest.raises(ValidationError):
        Schedule(days=["mon"], start="9:00")
    with pytest.raises(ValueError, match="unknown time zone 'Europe/Pariss'"):
        zone("Europe/Pariss")


def test_days_from_the_command_line() -> None:
    assert parse_days("mon-fri") == ["mon", "tue", "wed", "thu", "fri"]
    assert parse_days("sat,sun,mon") == ["sat", "sun", "mon"]
    assert parse_days("mon,wed-fri,thu") == ["mon", "wed", "thu", "fri"]
    for wrong in ("fri-mon", "monday", ""):
        with pytest.raises(Invalid):
            parse_days(wrong)


def test_why_a_running_workspace_has_not_stopped(tmp_path: object) -> None:
    settings = Settings(idle_timeout_s=1800, max_session_hours=8)
    started = datetime(2026, 12, 7, 8, 30, tzinfo=UTC)
    row = SimpleNamespace(
        idle_timeout_s=None,
        last_activity_at=started + timedelta(minutes=5),
        started_at=started,
        schedule={"days": ["mon"], "start": None, "stop": "18:00"},
    )
    seen = (started + timedelta(minutes=40)).timestamp()  # in memory, newer than the row's
    due = due_stops(settings, row, "Europe/Paris", seen, started + timedelta(minutes=41))
    assert [(d.reason, d.at) for d in due] == [
        ("idle", started + timedelta(minutes=70)),
        ("max_lifetime", started + timedelta(hours=8)),
        ("schedule", datetime(2026, 12, 7, 17, 0, tzinfo=UTC)),
    ]
    row.idle_timeout_s = 0  # its own: never
    assert [d.reason for d in due_stops(settings, row, None, seen, started)] == ["max_lifetime", "schedule"]


def test_the_policy_clock_moves_by_its_file_and_survives_a_bad_one(tmp_path: object) -> None:
    path = tmp_path / "offset"  # type: ignore[operator]
    clock = Clock()
    clock.use(path)
    assert abs(clock.time() - datetime.now(UTC).timestamp()) < 1  # no file: real time
    path.write_text("86400")
    clock._read_at = 0.0  # as if REREAD_S had passed
    assert abs(clock.time() - datetime.now(UTC).timestamp() - 86400) < 1
    path.write_text("not a number")
    clock._read_at = 0.0
    assert abs(clock.time() - datetime.now(UTC).timestamp()) < 1
