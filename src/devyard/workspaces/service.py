"""WorkspaceService: the façade the API, the dashboard and the gateway call; the work is done by the parts it holds.

- `RouteTable` (routes.py): what the gateway reads on every request, memory only.
- `Repository` (repository.py): rows, and writes with their notice to other replicas.
- `Lifecycle` (lifecycle.py): transitions, start, stop, restart, delete; `states.py` holds the rules.
- `Provisioner` (provisioning.py): creating a workspace and filling it.
- `Replicas` (replicas.py) and the leader's loops (supervisor, disk watch, backups).

app.py builds and wires them (`build_workspaces`); this class only answers for one caller at a
time: who may see a workspace, and which part does what was asked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from devyard.auth.identity import Identity
from devyard.backends.base import Backend, Stats, WorkspaceSpec
from devyard.clock import CLOCK
from devyard.config import Settings
from devyard.errors import Forbidden, Invalid, NotFound, WorkspaceNotFound
from devyard.metrics import Metrics
from devyard.models import Workspace, WorkspaceCreate, WorkspacePort
from devyard.origins import Origins
from devyard.provision.devcontainer import DevContainer
from devyard.reasons import Cause
from devyard.store.tables import UserRow, WorkspaceRow
from devyard.usersecrets import SecretStore
from devyard.workspaces import dormancy, listing, usage_report
from devyard.workspaces.access import ADMIN_ACTIONS, SHARED_USER_ACTIONS, Action, Listeners, Route
from devyard.workspaces.dormancy import DormancyReport
from devyard.workspaces.events import EventHub, StatsSampler
from devyard.workspaces.lifecycle import Lifecycle
from devyard.workspaces.ports import PortTable, Visibility
from devyard.workspaces.presenter import Presenter
from devyard.workspaces.provisioning import Provisioner
from devyard.workspaces.replicas import Replicas
from devyard.workspaces.states import Status
from devyard.workspaces.supervisor import Supervisor
from devyard.workspaces.usage import Recorder
from devyard.workspaces.usage_report import GroupBy, HistoryPoint, UsageReport, Window

ON_EXIT = Cause("manager_exit", "the manager stopped, and stop_workspaces_on_exit stops every engine with it")


class WorkspaceService:
    """What callers may ask of workspaces; one instance per manager."""

    def __init__(
        self,
        lifecycle: Lifecycle,
        presenter: Presenter,
        provisioner: Provisioner,
        supervisor: Supervisor,
        replicas: Replicas,
        sampler: StatsSampler,
        origins: Origins,
        listeners: Listeners,
        recorder: Recorder,
    ) -> None:
        self.lifecycle, self.presenter, self.provisioner = lifecycle, presenter, provisioner
        self.supervisor, self.replicas, self.sampler, self.origins = supervisor, replicas, sampler, origins
        self.settings: Settings = lifecycle.settings
        self.backend: Backend = lifecycle.backend
        self.secrets: SecretStore = lifecycle.secrets
        self.metrics: Metrics = lifecycle.metrics
        self.ports: PortTable = lifecycle.ports
        self.events: EventHub = presenter.events
        self.routes = lifecycle.routes
        self.repo = lifecycle.repo
        self.listeners = listeners
        self.recorder = recorder
        self.access_changed: list[Callable[[str], None]] = (
            listeners.access_changed
        )  # told the uid when who may reach a workspace narrows
        self.notices: list[Callable[[str], None]] = (
            listeners.notices
        )  # told other replicas' notices that name no workspace (see broadcast)

    # -- startup and shutdown -----------------------------------------------------------
    async def startup(self) -> None:
        """Join the other replicas (adopting the engines that run and filling the route table), then serve."""
        await self.replicas.join()
        self.lifecycle.activity.start()
        self.sampler.start()

    async def shutdown(self) -> None:
        """Stop background work; engines keep running for the next manager to adopt (unless stop_workspaces_on_exit)."""
        await self.sampler.stop()
        await self.replicas.leave()
        await self.lifecycle.runner.close()
        await self.lifecycle.activity.stop()
        await self.backend.close()
        if self.settings.stop_workspaces_on_exit:
            running = await self.repo.by_uids([r.uid for r in self.routes.in_status(Status.running)])
            await asyncio.gather(
                *(self._stop_on_exit(r) for r in running if r.status == Status.running), return_exceptions=True
            )

    async def _stop_on_exit(self, row: WorkspaceRow) -> None:
        await self.lifecycle.save(row, last_stop=await self.lifecycle.noted(row, ON_EXIT, "stop"))
        await self.lifecycle.do_stop(row)

    # -- replicas -------------------------------------------------------------------------
    async def broadcast(self, notice: str) -> None:
        """Send the other replicas a notice that is not a workspace's uid (they pass it to their `notices`)."""
        await self.repo.broadcast(notice)

    def narrowed(self, uid: str) -> None:
        """Who may reach a workspace (or one of its ports) may have narrowed: live connections are checked again."""
        self.listeners.narrowed(uid)

    # -- queries ------------------------------------------------------------------------
    def spec(self, row: WorkspaceRow) -> WorkspaceSpec:
        """The backend's view of a workspace, with the limits of its size."""
        return self.lifecycle.spec(row)

    def need_local_files(self, what: str) -> None:
        """NotOnThisBackend when the backend keeps workspaces' files away from this machine (what `what` needs)."""
        self.lifecycle.need_local_files(what)

    def to_model(self, row: WorkspaceRow) -> Workspace:
        """The API shape of a workspace row."""
        return self.presenter.model(row)

    async def list_models(self, who: Identity, all_users: bool = False, shared: bool = False) -> list[Workspace]:
        """What list_for finds, in the API's shape, read as plain rows: a thousand workspaces in milliseconds, not ORM objects."""
        return [
            self.presenter.shape(r, r.owner_name, r.owner_timezone)
            for r in await listing.columns(self.repo.db, who, all_users, shared)
        ]

    async def list_for(self, who: Identity, all_users: bool = False, shared: bool = False) -> list[WorkspaceRow]:
        """Workspaces of `who`, plus those shared with them when `shared`; everyone's when `all_users` (admins)."""
        return await listing.rows(self.repo.db, who, all_users, shared)

    async def find(
        self, who: Identity, name: str, owner: str | None = None, action: Action = Action.read
    ) -> WorkspaceRow:
        """The workspace `owner/name` (default owner: the caller) if `who` may do `action` to it.

        Anyone who may not gets the same WorkspaceNotFound as for a workspace that does not exist.
        """
        owner = owner or who.name
        row = await self.repo.named(owner, name)
        if row is not None and (
            row.owner_id == who.user_id
            or (action in SHARED_USER_ACTIONS and who.name in self.routes.shares_of(row.uid))
            or (action in ADMIN_ACTIONS and who.acts_as_admin)
        ):
            return row
        raise WorkspaceNotFound(f"no workspace '{name}'" if owner == who.name else f"no workspace '{owner}/{name}'")

    def route(self, owner: str, name: str) -> Route | None:
        """The gateway's view of a workspace, from memory."""
        return self.routes.get(owner, name)

    def route_by_uid(self, uid: str) -> Route | None:
        """The gateway's view of a workspace named by its uid (a host in uid form), from memory."""
        return self.routes.by_uid(uid)

    async def logs(self, row: WorkspaceRow, lines: int) -> list[str]:
        """The last `lines` lines of the engine log."""
        return await self.lifecycle.logs(row, lines)

    async def stats(self, row: WorkspaceRow) -> Stats:
        """Resource use of the workspace."""
        return await self.lifecycle.stats(row)

    async def dormancy(self) -> DormancyReport:
        """What dormancy does, to which workspaces, and when (the same decision its loop takes)."""
        return dormancy.plan(self.settings, await self.repo.all(), CLOCK.now())

    async def usage(self, who: Identity, start: datetime, end: datetime, group_by: GroupBy) -> UsageReport:
        """Use per user or workspace over [start, end): everyone's for admins, the caller's own for others."""
        owner = None if who.acts_as_admin else who.name
        rows = await usage_report.rows_in(self.repo.db, start, end, owner=owner)
        return usage_report.report(self.settings, rows, start, end, group_by)

    async def usage_history(self, row: WorkspaceRow, window: Window) -> list[HistoryPoint]:
        """A workspace's CPU, memory and disk over the last hour (samples) or day (5-minute averages)."""
        now = CLOCK.now()
        since = now - (timedelta(hours=1) if window == "hour" else timedelta(days=1))
        ring = self.recorder.history(row.uid, since.timestamp()) if window == "hour" else []
        rows = [] if ring else await usage_report.rows_in(self.repo.db, since, now, uid=row.uid)
        return usage_report.history(rows, ring)

    def render_metrics(self) -> bytes:
        """The Prometheus exposition, gauges filled from the route table and the last stats sample."""
        counts = {s.value: 0 for s in Status}
        for route in self.routes.all():
            counts[route.status.value] += 1
        running = [(r.owner, r.name) for r in self.routes.in_status(Status.running)]
        return self.metrics.render(counts, running, self.sampler.latest)

    # -- sharing and ports ----------------------------------------------------------------
    async def shares(self, row: WorkspaceRow) -> list[tuple[str, datetime]]:
        """Who the workspace is shared with, and since when."""
        return await self.repo.shares(row)

    async def share(self, row: WorkspaceRow, user: UserRow) -> None:
        """Let `user` open the workspace; Conflict if it already may, Invalid for its owner."""
        if user.id == row.owner_id:
            raise Invalid(
                "a workspace is always open to its owner; share it with someone else", code="share_with_owner"
            )
        await self.repo.add_share(row, user)
        self.routes.share(row.uid, await self.repo.shared_names(row))
        self.presenter.publish(row)

    async def unshare(self, row: WorkspaceRow, user: UserRow) -> None:
        """Take back a share; the user's open connections are refused from their next request."""
        if not await self.repo.remove_share(row, user):
            raise NotFound(f"'{row.name}' is not shared with {user.name}", code="share_not_found")
        await self.members_changed(row.uid)

    async def group_shares(self, row: WorkspaceRow) -> list[tuple[str, datetime]]:
        """The groups the workspace is shared with, and since when."""
        return await self.repo.group_shares(row)

    async def share_group(self, row: WorkspaceRow, group: str) -> None:
        """Let every member of a group open the workspace, as members come and go; NotFound, Conflict."""
        await self.repo.add_group_share(row, group)
        self.routes.share(row.uid, await self.repo.shared_names(row))
        self.presenter.publish(row)

    async def unshare_group(self, row: WorkspaceRow, group: str) -> None:
        """Take back a group's share; its members' open connections are refused from their next request."""
        if not await self.repo.remove_group_share(row, group):
            raise NotFound(f"'{row.name}' is not shared with group {group}", code="share_not_found")
        await self.members_changed(row.uid)

    async def group_changed(self, group: str) -> None:
        """A group's members changed: the workspaces shared with it follow, here and on the other replicas."""
        for uid in await self.repo.shared_with_group(group):
            await self.members_changed(uid)
            await self.repo.broadcast(uid)

    async def members_changed(self, uid: str) -> None:
        """Read again who may open one workspace, and check its live connections against that."""
        row = await self.repo.by_uid(uid)
        if row is not None:
            self.routes.share(uid, await self.repo.shared_names(row))
            self.presenter.publish(row)
            self.narrowed(uid)

    async def port_list(self, row: WorkspaceRow) -> list[WorkspacePort]:
        """The workspace's forwarded ports: listening now (read from outside its engine), given a visibility, or in its devcontainer.json."""
        listening: list[int] | None = []
        if self.routes.address(row.uid) is not None:
            listening = await self.backend.listening_ports(self.lifecycle.spec_of(row.uid, row.owner.name, row.name))
        chosen = self.ports.chosen(row.uid)
        container = DevContainer.from_json(row.devcontainer)
        labels = container.labels() if container else {}
        return [
            WorkspacePort(
                port=port,
                visibility=chosen.get(port, "private"),
                listening=port in (listening or []),
                url=self.origins.port_url(row.owner.name, row.name, row.uid, port),
                label=labels.get(port),
            )
            for port in sorted(set(listening or []) | set(chosen) | set(labels))
        ]

    async def set_port(self, row: WorkspaceRow, port: int, visibility: Visibility) -> WorkspacePort:
        """Choose who may open one forwarded port; connections no longer allowed are closed."""
        if visibility == "public" and not self.settings.public_ports:
            raise Forbidden(
                "public ports are not allowed on this manager (an admin can allow them with public_ports)",
                code="public_ports_disabled",
            )
        async with self.repo.change(row.uid) as s:
            await self.ports.write(s, row, port, visibility)
        self.ports.remember(row.uid, port, visibility)
        self.narrowed(row.uid)
        container = DevContainer.from_json(row.devcontainer)
        return WorkspacePort(
            port=port,
            visibility=visibility,
            listening=False,
            url=self.origins.port_url(row.owner.name, row.name, row.uid, port),
            label=container.labels().get(port) if container else None,
        )

    # -- commands -----------------------------------------------------------------------
    async def create(
        self, who: Identity, req: WorkspaceCreate, unpacked: Path | None = None, restore: Path | None = None
    ) -> WorkspaceRow:
        """Record a workspace and provision it in the background (then start it, when asked)."""
        return await self.provisioner.create(who, req, unpacked, restore)

    async def retry_provision(self, row: WorkspaceRow) -> WorkspaceRow:
        """Provision again a workspace whose provisioning failed."""
        return await self.provisioner.retry(row)

    async def start(self, row: WorkspaceRow, cause: Cause) -> WorkspaceRow:
        """Mark the workspace starting (for `cause`) and start its engine in the background."""
        return await self.lifecycle.start(row, cause)

    async def stop(self, row: WorkspaceRow, cause: Cause) -> WorkspaceRow:
        """Mark the workspace stopping (for `cause`) and stop its engine in the background."""
        return await self.lifecycle.stop(row, cause)

    async def restart(self, row: WorkspaceRow, cause: Cause) -> WorkspaceRow:
        """Stop, then start, in the background."""
        return await self.lifecycle.restart(row, cause)

    async def update(self, row: WorkspaceRow, changes: dict[str, Any]) -> WorkspaceRow:
        """Change the workspace's own settings: `idle_timeout_s` any time, `size` while it is stopped or failed."""
        return await self.lifecycle.update(row, changes)

    async def delete(self, row: WorkspaceRow, keep_files: bool) -> None:
        """Stop the engine, remove the folders (files/ stays with keep_files) and the record."""
        await self.lifecycle.delete(row, keep_files)

    async def stop_all_of(self, user_id: int, cause: Cause) -> None:
        """Stop every running workspace of a user (their account was disabled)."""
        await self.lifecycle.stop_all_of(user_id, cause)

    async def secrets_changed(self, user_id: int, removed_file: str | None) -> None:
        """Rewrite the user's secret files in each of their workspaces (variables reach engines at their next start)."""
        await self.lifecycle.secrets_changed(user_id, removed_file)

    # -- the gateway's calls --------------------------------------------------------------
    async def ensure_started(self, route: Route, who: str) -> None:
        """Start a stopped or failed workspace (the gateway calls this for `who`, someone who may open it)."""
        await self.lifecycle.ensure_started(route, who)

    def recheck_soon(self, route: Route) -> None:
        """Check at once, in the background, a workspace the gateway could not reach (a gone engine counts as a crash).

        The leader's only, like every crash handling: two replicas must not both restart one engine.
        """
        if self.replicas.leading:
            self.lifecycle.runner.spawn(self.supervisor.check(route))

    def touch(self, uid: str) -> None:
        """Note activity on a workspace (the gateway's hot path: memory only)."""
        self.lifecycle.activity.touch(uid)
