"""Bringing memory and statuses in line with what runs (a manager starting, a new leader) and with what another replica wrote.

Apart from the lifecycle's transitions because it runs rarely and decides from what it finds, not
from what a user asked: a workspace whose engine is gone when a manager takes over is marked
stopped with the reason `failover`, so its page says why.
"""

from __future__ import annotations

import logging

from devyard.backends.base import WorkspaceSpec
from devyard.clock import CLOCK
from devyard.reasons import Cause
from devyard.store.tables import WorkspaceRow
from devyard.workspaces import states
from devyard.workspaces.lifecycle import Lifecycle
from devyard.workspaces.states import Status

log = logging.getLogger("devyard.workspaces")
GONE = Cause("failover", "its engine was not running when a manager took over (a restart, or another replica leading)")


class Reconciler:
    """What the replicas ask of the workspaces: reconcile on joining or leading, reload one another replica changed."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lifecycle = lifecycle

    async def busy_elsewhere(self, row: WorkspaceRow) -> bool:
        """Whether another replica, still alive, is in the middle of changing the workspace."""
        other = row.busy_replica
        if not other or other == self.lifecycle.peers.replica or row.status not in states.BUSY:
            return False
        return await self.lifecycle.peers.alive(other)

    async def reconcile(self, leading: bool) -> None:
        """Routes from the database and the engines the backend finds; the leader also corrects statuses that are no longer true.

        A workspace another live replica is in the middle of changing is left to it.
        """
        life = self.lifecycle
        adopted = {s.uid: s for s in await life.backend.adopt()}
        rows = await life.repo.all()
        life.routes.set_shares(await life.repo.all_shares())
        await life.ports.load_all()
        for row in rows:
            found = adopted.get(row.uid)
            address = found.endpoint.address if found and found.endpoint else row.address
            if found is not None and life.activity.last_seen(row.uid) is None:
                # Idle time counts from the last use before the restart.
                life.activity.seen(row.uid, row.last_activity_at.timestamp() if row.last_activity_at else CLOCK.time())
            if not leading or await self.busy_elsewhere(row):
                life.remember(row, address)
                continue
            status, fields = states.after_restart(row.status, found is not None)
            if row.status == Status.running and status == Status.stopped:
                fields["last_stop"] = await life.noted(row, GONE, "stop")
            if status != row.status or fields or (status == Status.running and address != row.address):
                await life.transition(row, status, address=address, **fields)
            else:
                life.remember(row, address)
        if leading:
            for uid in adopted.keys() - {row.uid for row in rows}:
                log.warning("stopping engine %s: it belongs to no workspace", uid)
                await life.backend.stop(
                    WorkspaceSpec(uid, "?", "?", life.settings.workspaces_dir / "_orphan"),
                    life.settings.engine_stop_timeout_s,
                )

    async def reload(self, uid: str) -> None:
        """Read one workspace again after another replica changed it (its row, shares and ports)."""
        life = self.lifecycle
        row = await life.repo.by_uid(uid)
        if row is None:
            life.forget(uid)
            return
        life.routes.share(uid, await life.repo.shared_names(row))
        await life.ports.reload(row)
        life.remember(row, row.address)
