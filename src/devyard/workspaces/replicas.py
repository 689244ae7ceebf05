"""This manager among its replicas (store/coordination.py): the background loops while it leads, the others' changes in its route table.

Any replica serves the API and the gateway; what must happen once (crash restarts, idle stop,
scheduled backups, reconciling workspaces with what runs) happens on the leader only, and moves
to another replica when the leader dies. A workspace in the middle of a change (provisioning,
starting, stopping, deleting) names the replica doing it (`busy_replica`): a new leader leaves it
alone while that replica lives, and counts it as interrupted once it does not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from sqlalchemy import select

from devyard.backends.base import WorkspaceSpec
from devyard.models import Status
from devyard.store.coordination import Coordinator
from devyard.store.tables import ShareRow, UserRow, WorkspaceRow
from devyard.workspaces.supervisor import reconcile

if TYPE_CHECKING:
    from devyard.workspaces.service import WorkspaceService

log = logging.getLogger("devyard.replicas")
BUSY = frozenset({Status.creating, Status.provisioning, Status.starting, Status.stopping, Status.deleting})


class Replicas:
    """Leadership and change notices for one WorkspaceService."""

    def __init__(self, service: WorkspaceService, coordinator: Coordinator) -> None:
        self.service = service
        self.coordinator = coordinator
        self._reloading: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()  # changed again while being reloaded

    @property
    def leading(self) -> bool:
        """Whether this manager runs the background loops now."""
        return self.coordinator.leader

    @property
    def replica(self) -> str:
        """This manager's name among replicas."""
        return self.coordinator.replica

    def busy_mark(self, status: str) -> str | None:
        """What `busy_replica` becomes with `status`: this replica while it changes the workspace, else nobody."""
        return self.replica if status in BUSY else None

    async def busy_elsewhere(self, row: WorkspaceRow) -> bool:
        """Whether another replica, still alive, is in the middle of changing the workspace."""
        other = row.busy_replica
        return bool(other) and other != self.replica and row.status in BUSY and await self.coordinator.alive(other)  # type: ignore[arg-type]

    async def join(self) -> None:
        """Join the replicas (the first try to lead included), fill the route table, begin the loops when leading, then follow."""
        await self.coordinator.connect()
        self.service.metrics.leader.set(1 if self.leading else 0)
        await self.reconcile()
        if self.leading:
            self.start_loops()
        self.coordinator.watch(self._leadership, self._changed)

    async def reconcile(self) -> None:
        """Routes from the database and the engines the backend finds; the leader also corrects statuses that are no longer true.

        A workspace another live replica is in the middle of changing is left to it.
        """
        service = self.service
        adopted = {s.uid: s for s in await service.backend.adopt()}
        async with service.db() as s:
            rows = list((await s.scalars(select(WorkspaceRow))).all())
            shares = (await s.execute(select(WorkspaceRow.uid, UserRow.name).join(ShareRow, ShareRow.workspace_id == WorkspaceRow.id)
                                      .join(UserRow, UserRow.id == ShareRow.user_id))).all()
        service.set_shares([(uid, user) for uid, user in shares])
        await service.ports.load_all()
        leading = self.leading
        for row in rows:
            found = adopted.get(row.uid)
            address = found.endpoint.address if found and found.endpoint else row.address
            if found is not None and service.activity.last_seen(row.uid) is None:  # idle time counts from the last use before the restart
                service.activity.seen(row.uid, row.last_activity_at.timestamp() if row.last_activity_at else time.time())
            if not leading or await self.busy_elsewhere(row):
                service.remember(row, address)
                continue
            status, fields = reconcile(row, found is not None)
            if status != row.status or fields or (status == Status.running and address != row.address):
                await service.set_status(row, status, address=address, **fields)
            else:
                service.remember(row, address)
        if leading:
            for uid in adopted.keys() - {row.uid for row in rows}:
                log.warning("stopping engine %s: it belongs to no workspace", uid)
                await service.backend.stop(WorkspaceSpec(uid, "?", "?", service.settings.workspaces_dir / "_orphan"), service.settings.engine_stop_timeout_s)

    def start_loops(self) -> None:
        """Begin what runs on the leader only: crash restarts and idle stop, disk checks, scheduled backups."""
        self.service.supervisor.start()
        if self.service.backend.local_files:
            self.service.diskwatch.start()
        if self.service.settings.backup_interval_s:
            self.service.backups.start()

    async def stop_loops(self) -> None:
        """End what runs on the leader only (another replica leads now, or this one stops)."""
        await self.service.supervisor.stop()
        await self.service.diskwatch.stop()
        await self.service.backups.stop()

    async def _leadership(self, leading: bool) -> None:
        self.service.metrics.leader.set(1 if leading else 0)
        if leading:
            await self.reconcile()  # what the old leader was doing when it died is interrupted: say so
            self.start_loops()
        else:
            await self.stop_loops()

    def _changed(self, uid: str) -> None:
        if ":" in uid:  # not a workspace: a notice for whoever listens (credentials that ended, say)
            for hook in self.service.notices:
                hook(uid)
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
                await self._reload(uid)
                if uid not in self._again:
                    return
        finally:
            self._reloading.pop(uid, None)

    async def _reload(self, uid: str) -> None:
        service = self.service
        try:
            row = await service.row_by_uid(uid)
            if row is None:
                service.forget_route(uid)
                return
            await service.reload_shares(row)
            await service.ports.reload(row)
            service.remember(row, row.address)
            service.narrowed(uid)
        except Exception:
            log.exception("could not reload workspace %s after another replica changed it", uid)

    async def leave(self) -> None:
        """This manager stops: end its loops, then leave the other replicas (one of them leads next)."""
        await self.stop_loops()
        await self.coordinator.close()
        for task in list(self._reloading.values()):
            task.cancel()
