"""This manager among its replicas (store/coordination.py): the background loops while it leads, the others' changes in its tables.

Any replica serves the API and the gateway; what must happen once (crash restarts, idle stop,
scheduled backups, reconciling workspaces with what runs) happens on the leader only, and moves
to another replica when the leader dies. A workspace in the middle of a change (provisioning,
starting, stopping, deleting) names the replica doing it (`busy_replica`): a new leader leaves it
alone while that replica lives, and counts it as interrupted once it does not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from devyard.loops import Loop
from devyard.store.coordination import Coordinator
from devyard.workspaces.access import Listeners

log = logging.getLogger("devyard.replicas")


class Workspaces(Protocol):
    """What the replicas need of the workspaces (and nothing more)."""

    async def reconcile(self, leading: bool) -> None: ...
    async def reload(self, uid: str) -> None: ...


class Replicas:
    """Leadership and change notices: the leader's loops run here while it leads; other replicas' changes are read again."""

    def __init__(
        self,
        coordinator: Coordinator,
        workspaces: Workspaces,
        listeners: Listeners,
        loops: Sequence[Loop],
        leading_changed: Callable[[bool], None],
    ) -> None:
        self.coordinator = coordinator
        self.workspaces = workspaces
        self.listeners = listeners
        self.loops = loops
        self._leading_changed = leading_changed
        self._reloading: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()  # changed again while being reloaded

    @property
    def leading(self) -> bool:
        """Whether this manager runs the background loops now."""
        return self.coordinator.leader

    async def join(self) -> None:
        """Join the replicas (the first try to lead included), fill the route table, begin the loops when leading, then follow."""
        await self.coordinator.connect()
        self._leading_changed(self.leading)
        await self.workspaces.reconcile(self.leading)
        if self.leading:
            self.start_loops()
        self.coordinator.watch(self._leadership, self._changed)

    def start_loops(self) -> None:
        """Begin what runs on the leader only: crash restarts and idle stop, disk checks, scheduled backups."""
        for loop in self.loops:
            loop.start()

    async def stop_loops(self) -> None:
        """End what runs on the leader only (another replica leads now, or this one stops)."""
        for loop in self.loops:
            await loop.stop()

    async def _leadership(self, leading: bool) -> None:
        self._leading_changed(leading)
        if leading:
            await self.workspaces.reconcile(True)  # what the old leader was doing when it died is interrupted: say so
            self.start_loops()
        else:
            await self.stop_loops()

    def _changed(self, uid: str) -> None:
        if ":" in uid:  # not a workspace: a notice for whoever listens (credentials that ended, say)
            self.listeners.notice(uid)
            return
        # A burst of notices for one workspace costs at most one more reload, which sees the newest state.
        if uid in self._reloading:
            self._again.add(uid)
            return
        self._reloading[uid] = asyncio.get_running_loop().create_task(self._reload_until_settled(uid))

    async def _reload_until_settled(self, uid: str) -> None:
        try:
            while True:
                self._again.discard(uid)
                try:
                    await self.workspaces.reload(uid)
                    self.listeners.narrowed(uid)
                except Exception:
                    log.exception("could not reload workspace %s after another replica changed it", uid)
                if uid not in self._again:
                    return
        finally:
            self._reloading.pop(uid, None)

    async def leave(self) -> None:
        """This manager stops: end its loops, then leave the other replicas (one of them leads next)."""
        await self.stop_loops()
        await self.coordinator.close()
        for task in list(self._reloading.values()):
            task.cancel()
