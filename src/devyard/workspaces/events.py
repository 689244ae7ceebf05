"""Live workspace changes for the dashboard: one in-process fan-out, and stats sampled once for every viewer.

Browsers follow `/api/v1/events` (server-sent events) instead of polling each row: status and
progress changes are pushed the moment the lifecycle makes them, and resource use is sampled
by one loop per manager, only while someone watches, whatever the number of open dashboards.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from devyard.backends.base import Stats
from devyard.loops import Loop
from devyard.store.tables import WorkspaceRow
from devyard.workspaces.access import Route
from devyard.workspaces.states import Status

QUEUE_SIZE = 512
STATS_EVERY_S = 3.0


@dataclass(frozen=True, slots=True)
class Event:
    """One change: `kind` is workspace, stats or deleted; `data` is what the browser gets."""

    kind: str
    owner: str
    shares: frozenset[str]
    data: dict[str, Any]

    def visible_to(self, user: str, everyone: bool) -> bool:
        """Whether a viewer named `user` (seeing every workspace when `everyone`) gets this event."""
        return everyone or user == self.owner or user in self.shares


@dataclass(eq=False)
class Subscription:
    """One viewer's queue; `lost` is set when it fell so far behind that events were dropped."""

    queue: asyncio.Queue[Event] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    lost: bool = False


class EventHub:
    """Fan-out of workspace events to every open event stream."""

    def __init__(self) -> None:
        self._subs: set[Subscription] = set()

    @property
    def watched(self) -> bool:
        """Whether anyone is following events now."""
        return bool(self._subs)

    def publish(self, event: Event) -> None:
        """Queue `event` for every subscriber, without ever waiting on a slow one."""
        for sub in self._subs:
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                sub.lost = True  # the stream sends a fresh snapshot instead of the missed events

    @contextmanager
    def subscribe(self) -> Iterator[Subscription]:
        """A subscription for the duration of the block."""
        sub = Subscription()
        self._subs.add(sub)
        try:
            yield sub
        finally:
            self._subs.discard(sub)


class StatsSampler(Loop):
    """Samples running workspaces every few seconds while the hub has subscribers, publishing `stats` events."""

    def __init__(
        self, hub: EventHub, sample: Callable[[], Awaitable[list[Event]]], every_s: float = STATS_EVERY_S
    ) -> None:
        super().__init__()
        self._hub, self._sample, self.every_s = hub, sample, every_s
        self.latest: dict[tuple[str, str], dict[str, Any]] = {}  # (owner, name) → last stats, for snapshots

    async def tick(self) -> None:
        """Sample and publish, when someone watches."""
        if self._hub.watched:
            await self.refresh()

    async def refresh(self) -> None:
        """Sample every running workspace now (for a scrape of /metrics, say) and publish the results."""
        for event in await self._sample():
            self.latest[(event.owner, event.data["name"])] = event.data["stats"]
            self._hub.publish(event)


class Sampled(Protocol):
    """What sampling needs of the lifecycle (and nothing more)."""

    def routes_in(self, status: Status) -> list[Route]: ...
    def shares_of(self, uid: str) -> frozenset[str]: ...
    async def rows_by_uid(self, uids: list[str]) -> list[WorkspaceRow]: ...
    async def stats(self, row: WorkspaceRow) -> Stats: ...


async def sample_running(service: Sampled) -> list[Event]:
    """Resource use of every running workspace, sampled together, as `stats` events."""
    uids = [r.uid for r in service.routes_in(Status.running)]
    if not uids:
        return []
    rows = await service.rows_by_uid(uids)
    sampled = await asyncio.gather(*(service.stats(r) for r in rows), return_exceptions=True)
    events = []
    for row, stats in zip(rows, sampled, strict=True):
        if isinstance(stats, BaseException):
            continue  # stopped meanwhile
        data = {
            **dataclasses.asdict(stats),
            "last_activity_at": row.last_activity_at.isoformat() if row.last_activity_at else None,
        }
        events.append(
            Event(
                "stats",
                row.owner.name,
                service.shares_of(row.uid),
                {"owner": row.owner.name, "name": row.name, "stats": data},
            )
        )
    return events
