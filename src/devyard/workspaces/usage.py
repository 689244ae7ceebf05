"""Usage records: what each running workspace uses, sampled by the leader into bounded storage.

Every `usage_sample_s` each running workspace's stats are taken once (Backend.stats) and go two ways:
- a ring per workspace in memory, the last hour of samples, for its page's hour charts;
- additions to its row of the current 5-minute span in the `usage` table: seconds running, CPU
  seconds (from the engine tree's cumulative CPU time, so a burst between samples counts), memory
  (byte-seconds for the average, and the peak), the last disk size, and starts.
Once an hour, 5-minute rows older than two days are merged into hourly rows and rows older than
`usage_keep_days` are removed, so a workspace costs at most ~580 rows of recent detail plus one a
running hour. Seconds are measured on the monotonic clock; spans are placed on the policy clock
(clock.py), so a test that moves the clock sees its usage in the moved hours.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devyard.clock import CLOCK
from devyard.config import Settings
from devyard.loops import Loop
from devyard.models import Stats
from devyard.store.tables import UsageRow, WorkspaceRow
from devyard.workspaces.access import Route
from devyard.workspaces.states import Status

log = logging.getLogger("devyard.usage")
RECENT_SPAN_S = 300
HOURLY_SPAN_S = 3600
RECENT_KEEP_S = 2 * 86400
RING_S = 3600
PRUNE_EVERY_S = 3600


@dataclass
class Sample:
    """One look at a running workspace."""

    at: float  # policy-clock Unix time
    cpu_percent: float
    memory_bytes: int
    disk_bytes: int


@dataclass
class Seen:
    """The last sample of a workspace's engine: when (monotonic), its CPU seconds so far, and the start it belongs to."""

    at: float
    cpu_seconds: float
    started_at: datetime | None


class Sampled(Protocol):
    """What usage needs of the lifecycle."""

    def routes_in(self, status: Status) -> list[Route]: ...
    async def rows_by_uid(self, uids: list[str]) -> list[WorkspaceRow]: ...
    async def stats(self, row: WorkspaceRow) -> Stats: ...


def span_start(at: float, span_s: int) -> datetime:
    """The start of the span of `span_s` seconds that holds Unix time `at`."""
    return datetime.fromtimestamp(at - at % span_s, UTC)


def merge(into: UsageRow, add: UsageRow) -> None:
    """Add one row's figures to another's (same workspace; the later disk size wins)."""
    into.running_s += add.running_s
    into.cpu_s += add.cpu_s
    into.memory_byte_s += add.memory_byte_s
    into.memory_peak = max(into.memory_peak, add.memory_peak)
    into.starts += add.starts
    into.disk_bytes = add.disk_bytes or into.disk_bytes
    into.size = add.size or into.size


class Recorder(Loop):
    """Samples on the leader; the rings and the pending additions live here."""

    def __init__(self, settings: Settings, service: Sampled, db: async_sessionmaker[AsyncSession]) -> None:
        super().__init__()
        self.settings, self.service, self.db = settings, service, db
        self.every_s = settings.usage_sample_s
        self.rings: dict[str, deque[Sample]] = {}
        self._seen: dict[str, Seen] = {}
        self._pending: dict[tuple[str, datetime], UsageRow] = {}
        self._pruned_at = time.monotonic()
        self._since = CLOCK.now()  # engines started before this (another manager's) were counted by it

    def start(self) -> None:
        """Begin the rounds (on becoming the leader): engines already running count from now on."""
        self._since = CLOCK.now()
        super().start()

    async def tick(self) -> None:
        """Sample, write what was added, and once an hour merge and prune old rows."""
        await self.sample()
        await self.flush()
        if time.monotonic() - self._pruned_at > PRUNE_EVERY_S:
            self._pruned_at = time.monotonic()
            await self.downsample()

    async def stop(self) -> None:
        """End the loop and write what is pending."""
        await super().stop()
        await self.flush()

    def history(self, uid: str, since: float) -> list[Sample]:
        """The ring's samples of a workspace taken after `since` (policy-clock Unix time)."""
        return [s for s in self.rings.get(uid, ()) if s.at > since]

    async def sample(self) -> None:
        """Take every running workspace's stats once and add them to its ring and its current span."""
        uids = [r.uid for r in self.service.routes_in(Status.running)]
        rows = await self.service.rows_by_uid(uids) if uids else []
        found = await asyncio.gather(*(self.service.stats(r) for r in rows), return_exceptions=True)
        mono, now = time.monotonic(), CLOCK.time()
        for row, stats in zip(rows, found, strict=True):
            if isinstance(stats, BaseException):
                continue  # stopped meanwhile
            self.add(row, stats, mono, now)
        running = {r.uid for r in rows}
        for uid in list(self._seen):
            if uid not in running:
                del self._seen[uid]
        for uid in [u for u, ring in self.rings.items() if not ring or ring[-1].at < now - RING_S]:
            del self.rings[uid]

    def add(self, row: WorkspaceRow, stats: Stats, mono: float, now: float) -> None:
        """Count one sample of a running workspace."""
        ring = self.rings.setdefault(row.uid, deque(maxlen=int(RING_S / self.every_s) + 2))
        ring.append(Sample(now, stats.cpu_percent, stats.memory_bytes, stats.disk_bytes))
        before = self._seen.get(row.uid)
        self._seen[row.uid] = Seen(mono, stats.cpu_seconds, row.started_at)
        same_engine = before is not None and before.started_at == row.started_at
        if same_engine:
            assert before is not None
            seconds = mono - before.at
            cpu = stats.cpu_seconds - before.cpu_seconds
            if stats.cpu_seconds <= 0 or cpu < 0:  # a backend without CPU time: the sampled rate
                cpu = stats.cpu_percent / 100 * seconds
            started = 0
        else:
            # First seen: an engine started while this manager recorded counts whole (its boot included),
            # one found running (a manager restarted meanwhile) from now on: the last manager counted the rest.
            new = row.started_at is not None and row.started_at >= self._since
            seconds = stats.uptime_s if new else 0.0
            cpu = stats.cpu_seconds if new and stats.cpu_seconds > 0 else 0.0
            started = 1 if new else 0
        span = self._pending.get((row.uid, start := span_start(now, RECENT_SPAN_S)))
        if span is None:
            span = self._pending[(row.uid, start)] = UsageRow(
                uid=row.uid,
                owner=row.owner.name,
                name=row.name,
                size=row.size or self.settings.default_size,
                start=start,
                span_s=RECENT_SPAN_S,
                running_s=0.0,
                cpu_s=0.0,
                memory_byte_s=0.0,
                memory_peak=0,
                disk_bytes=0,
                starts=0,
            )
        merge(
            span,
            UsageRow(
                running_s=seconds,
                cpu_s=max(0.0, cpu),
                memory_byte_s=stats.memory_bytes * seconds,
                memory_peak=stats.memory_bytes,
                disk_bytes=stats.disk_bytes,
                starts=started,
                size=span.size,
            ),
        )

    async def flush(self) -> None:
        """Add the pending spans to their rows, in one transaction."""
        pending, self._pending = self._pending, {}
        if pending:
            async with self.db() as s:
                await upsert(s, pending.values())
                await s.commit()

    async def downsample(self) -> None:
        """Merge 5-minute rows older than two days into hourly rows; remove rows older than usage_keep_days."""
        now = CLOCK.now()
        async with self.db() as s:
            await s.execute(
                delete(UsageRow).where(UsageRow.start < now - timedelta(days=self.settings.usage_keep_days))
            )
            old = (
                await s.scalars(
                    select(UsageRow).where(
                        UsageRow.span_s == RECENT_SPAN_S, UsageRow.start < now - timedelta(seconds=RECENT_KEEP_S)
                    )
                )
            ).all()
            hourly: dict[tuple[str, datetime], UsageRow] = {}
            for row in old:
                key = (row.uid, span_start(row.start.timestamp(), HOURLY_SPAN_S))
                into = hourly.setdefault(
                    key,
                    UsageRow(uid=row.uid, owner=row.owner, name=row.name, size=row.size, start=key[1], span_s=HOURLY_SPAN_S,
                             running_s=0.0, cpu_s=0.0, memory_byte_s=0.0, memory_peak=0, disk_bytes=0, starts=0),
                )  # fmt: skip
                merge(into, row)
                await s.delete(row)
            await upsert(s, hourly.values())
            await s.commit()
        if old:
            log.info("usage: %d five-minute rows merged into %d hourly ones", len(old), len(hourly))


async def upsert(s: AsyncSession, rows: Iterable[UsageRow]) -> None:
    """Add each row's figures to the stored row of its workspace and span, or store it as the first."""
    for row in rows:
        stored = await s.scalar(
            select(UsageRow).where(UsageRow.uid == row.uid, UsageRow.start == row.start, UsageRow.span_s == row.span_s)
        )
        if stored is None:
            s.add(row)
        else:
            merge(stored, row)
