"""Usage's sums, spans and charts in milliseconds (the figures against a real workload are in test_usage.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from devyard.clock import CLOCK
from devyard.config import Settings
from devyard.errors import Invalid
from devyard.store.db import migrate, open_engine, sessionmaker
from devyard.store.tables import UsageRow
from devyard.web import charts
from devyard.workspaces.usage import Recorder, merge, span_start
from devyard.workspaces.usage_report import as_csv, period, report

pytestmark = pytest.mark.fast
T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def row(
    owner: str, name: str, start: datetime, running_s: float, cpu_s: float, memory: int, size: str = "small"
) -> UsageRow:
    return UsageRow(uid=f"{owner}-{name}", owner=owner, name=name, size=size, start=start, span_s=300,
                    running_s=running_s, cpu_s=cpu_s, memory_byte_s=memory * running_s, memory_peak=memory,
                    disk_bytes=1000, starts=0)  # fmt: skip


def test_a_report_adds_up_per_user_and_per_workspace_with_costs() -> None:
    settings = Settings(sizes={"small": {"cost_per_hour": 0.5}, "large": {"cost_per_hour": 2.0}}, default_size="small")
    rows = [
        row("ada", "a", T0, 300, 30, 100),
        row("ada", "a", T0 + timedelta(minutes=5), 300, 60, 300),
        row("ada", "b", T0 + timedelta(hours=2), 1800, 10, 50, size="large"),
        row("bob", "c", T0 + timedelta(days=1), 3600, 5, 10),
    ]
    per_ws = report(settings, rows, T0, T0 + timedelta(days=2), "workspace")
    a = next(line for line in per_ws.lines if line.workspace == "a")
    assert (a.running_hours, a.cpu_seconds, a.memory_avg_bytes, a.memory_peak_bytes) == (0.1667, 90, 200, 300)
    assert a.cost == pytest.approx(600 / 3600 * 0.5, abs=1e-4)
    per_user = report(settings, rows, T0, T0 + timedelta(days=2), "user")
    ada = next(line for line in per_user.lines if line.user == "ada")
    assert ada.workspace is None and ada.cost == pytest.approx(600 / 3600 * 0.5 + 0.5 * 2.0, abs=1e-3)
    assert per_user.step == "hour" and sum(p.running_hours for p in per_user.series) == pytest.approx(
        6000 / 3600, abs=1e-3
    )
    assert report(settings, rows, T0, T0 + timedelta(days=10), "user").step == "day"
    assert as_csv(per_ws).splitlines()[0].startswith("user,workspace,running_hours,cpu_seconds")
    unpriced = report(Settings(), rows, T0, T0 + timedelta(days=2), "user")
    assert all(line.cost is None for line in unpriced.lines)


def test_periods_and_spans() -> None:
    assert period(None, T0, T0) == (T0 - timedelta(days=30), T0)
    with pytest.raises(Invalid, match="must come before"):
        period(T0, T0, T0)
    with pytest.raises(Invalid, match="at most 400 days"):
        period(T0 - timedelta(days=401), T0, T0)
    assert span_start((T0 + timedelta(minutes=7, seconds=3)).timestamp(), 300) == T0 + timedelta(minutes=5)
    into = row("ada", "a", T0, 10, 1, 100)
    merge(into, row("ada", "a", T0, 20, 2, 400))
    assert (into.running_s, into.cpu_s, into.memory_peak) == (30, 3, 400)


def test_charts_are_svg_with_round_axes_and_escaped_titles() -> None:
    assert [charts.nice_top(v) for v in (0, 0.7, 3, 101, 2400)] == [1.0, 1.0, 5.0, 200.0, 2500.0]
    svg = charts.line_chart(
        "<CPU>", [(T0, 10.0), (T0 + timedelta(minutes=30), 40.0)], T0, T0 + timedelta(hours=1), charts.percent
    )
    assert svg.startswith("<svg") and "&lt;CPU&gt;" in svg and "<polyline" in svg and "50 %" in svg
    assert "no samples yet" in charts.line_chart("x", [], T0, T0 + timedelta(hours=1), charts.percent)
    assert "<circle" in charts.line_chart("x", [(T0, 1.0)], T0, T0 + timedelta(hours=1), charts.size)
    bars = charts.bar_chart("h", [(T0, 2.0)], T0, T0 + timedelta(days=3), timedelta(days=1), charts.hours, "%b %d")
    assert bars.count("<rect") == 1 and "Dec 07" in bars


def test_old_five_minute_rows_become_hourly_and_the_oldest_go(tmp_path: Path) -> None:
    async def body() -> None:
        settings = Settings(data_dir=tmp_path, usage_keep_days=30)
        migrate(settings.db_url)
        engine = open_engine(settings.db_url)
        db = sessionmaker(engine)
        now = CLOCK.now()
        old = now - timedelta(days=3)
        async with db() as s:
            for minutes in (0, 5, 10, 65):  # two hours' worth three days ago
                s.add(row("ada", "a", span_start((old + timedelta(minutes=minutes)).timestamp(), 300), 300, 10, 100))
            s.add(row("ada", "a", span_start(now.timestamp(), 300), 300, 10, 100))  # recent: stays as it is
            s.add(row("ada", "a", now - timedelta(days=31), 300, 10, 100))  # beyond usage_keep_days
            await s.commit()
        recorder = Recorder(settings, None, db)  # type: ignore[arg-type]  (downsampling needs no lifecycle)
        await recorder.downsample()
        async with db() as s:
            rows = sorted((await s.scalars(select(UsageRow))).all(), key=lambda r: r.start)
        # The old ones by hour, however they fall: the four rows (0, 5, 10 and 65 minutes on) touch two or three hours.
        assert [r.span_s for r in rows] in ([3600, 3600, 3600, 300], [3600, 3600, 300])
        hourly = [r for r in rows if r.span_s == 3600]
        assert sum(r.running_s for r in hourly) == 1200 and sum(r.cpu_s for r in hourly) == 40
        assert all(r.start.minute == 0 for r in hourly)
        await engine.dispose()

    asyncio.run(body())
