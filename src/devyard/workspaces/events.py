"""Live workspace changes for the dashboard: one in-process fan-out, and stats sampled once for every viewer.

Browsers follow `/api/v1/events` (server-sent events) instead of polling each row: status and
progress changes are pushed the moment WorkspaceService makes them, and resource use is sampled
by one loop per manager, only while someone watches, whatever the number of open dashboards.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("devyard.events")
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


class StatsSampler:
    """Samples running workspaces every few seconds while the hub has subscribers, publishing `stats` events."""

    def __init__(self, hub: EventHub, sample: Callable[[], Awaitable[list[Event]]], every_s: float = STATS_EVERY_S) -> None:
        self._hub, self._sample, self._every = hub, sample, every_s
        self._task: asyncio.Task[None] | None = None
        self.latest: dict[tuple[str, str], dict[str, Any]] = {}  # (owner, name) → last stats, for snapshots

    def start(self) -> None:
        """Run the loop in the background."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """End the loop."""
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            began = time.monotonic()
            if self._hub.watched:
                try:
                    for event in await self._sample():
                        self.latest[(event.owner, event.data["name"])] = event.data["stats"]
                        self._hub.publish(event)
                except Exception:  # a failed sample must not end live updates for everyone
                    log.exception("sampling workspace stats failed")
            await asyncio.sleep(max(0.2, self._every - (time.monotonic() - began)))
