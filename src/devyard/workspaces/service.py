"""WorkspaceService: create, start, stop, restart and delete workspaces; the gateway's route table.

Every state change goes through _set(), which writes the database row and the in-memory route
the gateway reads on each request (no database query on the proxy's hot path). Operations on
one workspace run one at a time under its lock; start/stop/restart run in the background and
the API answers 202 at once, delete waits for the engine to be gone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import shutil
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devyard import provision
from devyard.auth.identity import Identity
from devyard.backends.base import Backend, Stats, WorkspaceSpec
from devyard.config import Settings
from devyard.errors import Conflict, DevyardError, Forbidden, Invalid, NotFound, NotOnThisBackend, WorkspaceExists, WorkspaceNotFound
from devyard.models import Status, Workspace, WorkspaceCreate, WorkspacePort
from devyard.origins import Origins
from devyard.paths import child
from devyard.provision import extensions as provision_extensions
from devyard.provision import git as provision_git
from devyard.provision import tools as provision_tools
from devyard.store.coordination import Coordinator, FileCoordinator
from devyard.store.tables import ShareRow, UserRow, WorkspaceRow, utcnow
from devyard.usersecrets import SecretStore
from devyard.metrics import Metrics
from devyard.workspaces import backups, listing, quotas, sizes
from devyard.workspaces.activity import Activity
from devyard.workspaces.diskwatch import DiskWatch
from devyard.workspaces.access import ADMIN_ACTIONS, SHARED_USER_ACTIONS, Action, Route
from devyard.workspaces.events import Event, EventHub, StatsSampler, sample_running
from devyard.workspaces.ports import PortTable, Visibility
from devyard.workspaces.provisioning import Provisioner
from devyard.workspaces.replicas import Replicas
from devyard.workspaces.supervisor import Supervisor

log = logging.getLogger("devyard.workspaces")


class WorkspaceService:
    """Owns workspace state; one instance per manager."""

    def __init__(self, settings: Settings, db: async_sessionmaker[AsyncSession], backend: Backend, secrets: SecretStore,
                 coordinator: Coordinator | None = None, origins: Origins | None = None) -> None:
        self.settings = settings
        self.db = db
        self.backend = backend
        self.secrets = secrets
        self._routes: dict[tuple[str, str], Route] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._user_locks: dict[int, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.activity = Activity(db, settings.activity_flush_s)
        self._shares: dict[str, frozenset[str]] = {}
        self.ports = PortTable(db, settings.public_ports)
        self.access_changed: list[Callable[[str], None]] = []  # told the uid when who may reach a workspace or port narrows
        self.notices: list[Callable[[str], None]] = []  # told other replicas' notices that name no workspace (see broadcast)
        self.origins = origins or Origins.from_settings(settings)
        self.events = EventHub()
        self.sampler = StatsSampler(self.events, lambda: sample_running(self))
        self.supervisor = Supervisor(self)
        self.metrics = Metrics()
        self.provisioner = Provisioner(self)
        self.backups = backups.Scheduler(self)
        self.diskwatch = DiskWatch(self)
        self.replicas = Replicas(self, coordinator or FileCoordinator(settings.run_dir / "leader.lock"))

    # -- startup and shutdown -----------------------------------------------------------
    async def startup(self) -> None:
        """Join the other replicas (adopting the engines that run and filling the route table), then serve."""
        await self.replicas.join()
        self.activity.start()
        self.sampler.start()

    def set_shares(self, pairs: list[tuple[str, str]]) -> None:
        """Who each workspace is shared with, as (uid, user name) pairs: the whole table, replaced."""
        shares: dict[str, frozenset[str]] = {}
        for uid, user in pairs:
            shares[uid] = shares.get(uid, frozenset()) | {user}
        self._shares = shares

    async def shutdown(self) -> None:
        """Stop background work; engines keep running for the next manager to adopt (unless stop_workspaces_on_exit)."""
        await self.sampler.stop()
        await self.replicas.leave()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.activity.stop()
        await self.backend.close()
        if self.settings.stop_workspaces_on_exit:
            rows = [r for r in await self.rows_by_uid([r.uid for r in self.routes_in(Status.running)]) if r.status == Status.running]
            await asyncio.gather(*(self._do_stop(r) for r in rows), return_exceptions=True)

    # -- queries ------------------------------------------------------------------------
    def spec(self, row: WorkspaceRow) -> WorkspaceSpec:
        """The backend's view of a workspace, with the limits of its size."""
        return dataclasses.replace(self.spec_of(row.uid, row.owner.name, row.name), limits=sizes.limits(self.settings, row.size))

    def spec_of(self, uid: str, owner: str, name: str) -> WorkspaceSpec:
        """The backend's view of a workspace, from its route (no database query)."""
        return WorkspaceSpec(uid=uid, owner=owner, name=name, root=child(self.settings.workspaces_dir, owner, name))

    def need_local_files(self, what: str) -> None:
        """NotOnThisBackend when the backend keeps workspaces' files away from this machine (what `what` needs)."""
        if not self.backend.local_files:
            raise NotOnThisBackend(f"{what} need the workspace's files on the manager's machine, and the {self.settings.backend} backend keeps "
                                   "them in the workspace's volume (use the cluster's volume snapshots)", code="not_on_this_backend")

    def shares_of(self, uid: str) -> frozenset[str]:
        """Who a workspace is shared with, from memory."""
        return self._shares.get(uid, frozenset())

    def all_routes(self) -> list[Route]:
        """Every workspace's route, from memory."""
        return list(self._routes.values())

    def routes_in(self, status: Status) -> list[Route]:
        """Every workspace in `status`, from memory."""
        return [r for r in self._routes.values() if r.status == status]

    def last_seen(self, uid: str) -> float | None:
        """When the workspace was last used through the gateway (or started), as a Unix time."""
        return self.activity.last_seen(uid)

    def to_model(self, row: WorkspaceRow) -> Workspace:
        """The API shape of a workspace row."""
        return self._shape(row, row.owner.name)

    def _shape(self, row: Any, owner: str) -> Workspace:
        """The API shape of anything with a workspace row's attributes (an ORM row or a plain result row)."""
        return Workspace(
            name=row.name, owner=owner, status=Status(row.status), url=self.origins.workspace_url(owner, row.name, row.uid),
            template=row.template, extension_groups=list(row.extension_groups or []), created_at=row.created_at,
            started_at=row.started_at, last_activity_at=row.last_activity_at, error=row.error,
            progress=self.provisioner.progress.get(row.uid) if row.status == Status.provisioning else None, idle_timeout_s=row.idle_timeout_s,
            size=sizes.effective(self.settings, row.size), reason=row.reason if row.status == Status.failed else None,
        )

    async def list_models(self, who: Identity, all_users: bool = False, shared: bool = False) -> list[Workspace]:
        """What list_for finds, in the API's shape, read as plain rows: a thousand workspaces in milliseconds, not ORM objects."""
        return [self._shape(r, r.owner_name) for r in await listing.columns(self.db, who, all_users, shared)]

    async def list_for(self, who: Identity, all_users: bool = False, shared: bool = False) -> list[WorkspaceRow]:
        """Workspaces of `who`, plus those shared with them when `shared`; everyone's when `all_users` (admins)."""
        return await listing.rows(self.db, who, all_users, shared)

    async def find(self, who: Identity, name: str, owner: str | None = None, action: Action = Action.read) -> WorkspaceRow:
        """The workspace `owner/name` (default owner: the caller) if `who` may do `action` to it.

        Anyone who may not gets the same WorkspaceNotFound as for a workspace that does not exist.
        """
        owner = owner or who.name
        missing = WorkspaceNotFound(f"no workspace '{name}'" if owner == who.name else f"no workspace '{owner}/{name}'")
        async with self.db() as s:
            row = await s.scalar(select(WorkspaceRow).join(UserRow, UserRow.id == WorkspaceRow.owner_id)
                                 .where(UserRow.name == owner, WorkspaceRow.name == name))
        if row is None:
            raise missing
        if row.owner_id == who.user_id:
            return row
        if action in SHARED_USER_ACTIONS and who.name in self._shares.get(row.uid, frozenset()):
            return row
        if action in ADMIN_ACTIONS and who.acts_as_admin:
            return row
        raise missing

    async def shares(self, row: WorkspaceRow) -> list[tuple[str, datetime]]:
        """Who the workspace is shared with, and since when."""
        async with self.db() as s:
            found = await s.execute(select(UserRow.name, ShareRow.created_at).join(ShareRow, ShareRow.user_id == UserRow.id)
                                    .where(ShareRow.workspace_id == row.id).order_by(UserRow.name))
            return [(n, c) for n, c in found.all()]

    async def share(self, row: WorkspaceRow, user: UserRow) -> None:
        """Let `user` open the workspace; Conflict if it already may, Invalid for its owner."""
        if user.id == row.owner_id:
            raise Invalid("a workspace is always open to its owner; share it with someone else", code="share_with_owner")
        async with self.db() as s:
            s.add(ShareRow(workspace_id=row.id, user_id=user.id))
            try:
                await s.flush()  # a share that exists fails here, before anyone is told of it
                await self.replicas.coordinator.notify(s, row.uid)
                await s.commit()
            except IntegrityError as exc:
                raise Conflict(f"'{row.name}' is already shared with {user.name}", code="already_shared") from exc
        self._shares[row.uid] = self._shares.get(row.uid, frozenset()) | {user.name}
        self.remember(row, self.address_of(row))

    async def unshare(self, row: WorkspaceRow, user: UserRow) -> None:
        """Take back a share; the user's open connections are refused from their next request."""
        async with self.db() as s:
            result = await s.execute(delete(ShareRow).where(ShareRow.workspace_id == row.id, ShareRow.user_id == user.id))
            await self.replicas.coordinator.notify(s, row.uid)
            await s.commit()
        if not result.rowcount:  # type: ignore[attr-defined]
            raise NotFound(f"'{row.name}' is not shared with {user.name}", code="share_not_found")
        self._shares[row.uid] = self._shares.get(row.uid, frozenset()) - {user.name}
        self.remember(row, self.address_of(row))
        self.narrowed(row.uid)

    async def broadcast(self, notice: str) -> None:
        """Send the other replicas a notice that is not a workspace's uid (they pass it to their `notices`)."""
        async with self.db() as s:
            await self.replicas.coordinator.notify(s, notice)
            await s.commit()

    def narrowed(self, uid: str) -> None:
        """Who may reach a workspace (or one of its ports) may have narrowed: live connections are checked again."""
        for hook in self.access_changed:
            hook(uid)

    async def port_list(self, row: WorkspaceRow) -> list[WorkspacePort]:
        """The workspace's forwarded ports: those listening now (read from outside its engine) and those given a visibility."""
        listening: list[int] | None = []
        if self.address_of(row) is not None:
            listening = await self.backend.listening_ports(self.spec_of(row.uid, row.owner.name, row.name))
        chosen = self.ports.chosen(row.uid)
        return [WorkspacePort(port=port, visibility=chosen.get(port, "private"), listening=port in (listening or []),
                              url=self.origins.port_url(row.owner.name, row.name, row.uid, port))
                for port in sorted(set(listening or []) | set(chosen))]

    async def set_port(self, row: WorkspaceRow, port: int, visibility: Visibility) -> WorkspacePort:
        """Choose who may open one forwarded port; connections no longer allowed are closed."""
        if visibility == "public" and not self.settings.public_ports:
            raise Forbidden("public ports are not allowed on this manager (an admin can allow them with public_ports)", code="public_ports_disabled")
        async with self.db() as s:
            await self.ports.write(s, row, port, visibility)
            await self.replicas.coordinator.notify(s, row.uid)
            await s.commit()
        self.ports.remember(row.uid, port, visibility)
        self.narrowed(row.uid)
        return WorkspacePort(port=port, visibility=visibility, listening=False, url=self.origins.port_url(row.owner.name, row.name, row.uid, port))

    async def stop_all_of(self, user_id: int) -> None:
        """Stop every running workspace of a user (their account was disabled)."""
        async with self.db() as s:
            rows = (await s.scalars(select(WorkspaceRow).where(WorkspaceRow.owner_id == user_id, WorkspaceRow.status.in_([Status.running, Status.starting])))).all()
        for row in rows:
            await self.stop(row)

    def address_of(self, row: WorkspaceRow) -> str | None:
        """The engine address the gateway uses for the workspace (None unless running)."""
        route = self._routes.get((row.owner.name, row.name))
        return route.address if route else None

    def route(self, owner: str, name: str) -> Route | None:
        """The gateway's view of a workspace, from memory."""
        return self._routes.get((owner, name))

    def route_by_uid(self, uid: str) -> Route | None:
        """The gateway's view of a workspace named by its uid (a host in uid form), from memory."""
        return next((r for r in self._routes.values() if r.uid == uid), None)

    async def logs(self, row: WorkspaceRow, lines: int) -> list[str]:
        """The last `lines` lines of the engine log."""
        return await self.backend.logs(self.spec(row), lines)

    async def stats(self, row: WorkspaceRow) -> Stats:
        """Resource use of the workspace."""
        return await self.backend.stats(self.spec(row))

    # -- commands -----------------------------------------------------------------------
    async def create(self, who: Identity, req: WorkspaceCreate, unpacked: Path | None = None, restore: Path | None = None) -> WorkspaceRow:
        """Record a workspace and provision it in the background (then start it, when asked).

        `unpacked`: an uploaded archive already unpacked and checked; it becomes the workspace's files.
        `restore`: from a backup, the user-data and extension list to restore (backups.restore_folder).
        """
        template = provision.find_template(self.settings, req.template) if req.template else None
        if template and template.git_url and req.git_url:
            raise Invalid(f"template '{template.name}' brings its own git URL; give a template or a git URL, not both",
                          code="conflicting_sources")
        git_url = req.git_url if req.git_url is not None else (template.git_url if template else None)
        if git_url is not None:
            git_url = provision_git.check_url(git_url, self.settings.git_file_roots)
        names = list(dict.fromkeys([*(template.extension_groups if template else []), *req.extension_groups]))
        groups = provision.resolve_groups(names, self.settings.extension_groups)
        provision_extensions.check_allowed(provision.group_extensions(groups), self.settings.extensions)
        row = WorkspaceRow(uid=secrets.token_hex(6), owner_id=who.user_id, name=req.name, status=Status.provisioning,
                           template=req.template, extension_groups=names, git_url=git_url, idle_timeout_s=req.idle_timeout_s,
                           size=sizes.check(self.settings, req.size))
        async with self._user_lock(who.user_id), self.db() as s:
            await quotas.check(self.db, self.settings, await s.get_one(UserRow, who.user_id), new=True, running=req.start)
            s.add(row)
            try:
                await s.flush()  # a name taken fails here, before anyone is told of it
                await self.replicas.coordinator.notify(s, row.uid)
                await s.commit()
            except IntegrityError as exc:
                raise WorkspaceExists(f"you already have a workspace named '{req.name}'") from exc
            await s.refresh(row, attribute_names=["owner"])
        if unpacked is not None:
            await asyncio.to_thread(self.provisioner.keep_upload, row, unpacked, restore)
        self.remember(row, None)
        self._background(row, lambda r: self.provisioner.run(r, req.start))
        return row

    async def retry_provision(self, row: WorkspaceRow) -> WorkspaceRow:
        """Provision again a workspace whose provisioning failed (the files of the failed try are gone)."""
        if row.provisioned_at is not None or row.status != Status.failed:
            raise Invalid(f"workspace '{row.name}' is {row.status} and was provisioned; only a failed provisioning is retried",
                          code="nothing_to_retry")
        await self.set_status(row, Status.provisioning, error=None)
        self._background(row, lambda r: self.provisioner.run(r, True))
        return row

    async def start(self, row: WorkspaceRow) -> WorkspaceRow:
        """Mark the workspace starting and start its engine in the background."""
        if row.status in (Status.running, Status.starting):
            return row
        self._refuse_while(row, Status.deleting, Status.creating, Status.provisioning)
        if row.provisioned_at is None:
            raise Invalid(f"workspace '{row.name}' was never provisioned ({row.error or 'provisioning failed'}); "
                          "retry it with retry-provision, or delete it", code="not_provisioned")
        await sizes.check_disk(self.settings, row.size, row.name, self.spec(row).root)
        async with self._user_lock(row.owner_id):
            await quotas.check(self.db, self.settings, row.owner, new=False, running=True, exclude=row.id)
            await self.set_status(row, Status.starting, error=None)
        self._background(row, self.do_start)
        return row

    async def update(self, row: WorkspaceRow, changes: dict[str, Any]) -> WorkspaceRow:
        """Change the workspace's own settings: `idle_timeout_s` any time, `size` while it is stopped or failed."""
        async with self.lock(row.uid):
            if "size" in changes:
                sizes.check(self.settings, changes["size"])
                fresh = await self.row_by_uid(row.uid)
                status = fresh.status if fresh else row.status
                if status not in (Status.stopped, Status.failed):
                    raise Conflict(f"workspace '{row.name}' is {status}; stop it before changing its size", code="workspace_not_stopped")
            await self.set_status(row, row.status, address=self.address_of(row), **changes)
        return row

    async def stop(self, row: WorkspaceRow, why: str | None = None) -> WorkspaceRow:
        """Mark the workspace stopping and stop its engine in the background; `why` (the manager's reason) becomes its `error`."""
        if row.status in (Status.stopped, Status.stopping):
            return row
        self._refuse_while(row, Status.deleting, Status.creating, Status.provisioning)
        await self.set_status(row, Status.stopping)
        self._background(row, lambda r: self._do_stop(r, why))
        return row

    async def restart(self, row: WorkspaceRow) -> WorkspaceRow:
        """Stop, then start, in the background."""
        self._refuse_while(row, Status.deleting, Status.creating, Status.provisioning)
        await self.set_status(row, Status.stopping)

        async def both(r: WorkspaceRow) -> None:
            await self._do_stop(r)
            await self.set_status(r, Status.starting)
            await self.do_start(r)

        self._background(row, both)
        return row

    async def delete(self, row: WorkspaceRow, keep_files: bool) -> None:
        """Stop the engine, remove the folders (files/ stays with keep_files) and the record."""
        self._refuse_while(row, Status.deleting)
        await self.set_status(row, Status.deleting)
        async with self.lock(row.uid):
            spec = self.spec(row)
            await self.backend.stop(spec, self.settings.engine_stop_timeout_s)
            await self.backend.remove(spec, keep_files)
            shutil.rmtree(self.settings.uploads_dir / row.uid, ignore_errors=True)
            async with self.db() as s:
                await s.delete(await s.get_one(WorkspaceRow, row.id))
                await self.replicas.coordinator.notify(s, row.uid)
                await s.commit()
        self.forget_route(row.uid)

    def forget_route(self, uid: str) -> None:
        """A workspace is gone (deleted here or by another replica): out of the route table, the viewers told."""
        route = next((r for r in self._routes.values() if r.uid == uid), None)
        if route is not None:
            self._routes.pop((route.owner, route.name), None)
            self.events.publish(Event("deleted", route.owner, self._shares.get(uid, frozenset()), {"owner": route.owner, "name": route.name}))
        self._shares.pop(uid, None)
        self.ports.forget(uid)
        self.activity.forget(uid)
        self._locks.pop(uid, None)

    async def reload_shares(self, row: WorkspaceRow) -> None:
        """Read who the workspace is shared with again (another replica changed it)."""
        self._shares[row.uid] = frozenset(name for name, _ in await self.shares(row))

    async def ensure_started(self, route: Route) -> None:
        """Start a stopped or failed workspace (the gateway calls this for someone who may open it)."""
        if route.status in (Status.stopped, Status.failed):
            row = await self.row_by_uid(route.uid)
            if row is not None and row.provisioned_at is not None:
                await self.start(row)

    def recheck_soon(self, route: Route) -> None:
        """Check at once, in the background, a workspace the gateway could not reach (a gone engine counts as a crash).

        The leader's only, like every crash handling: two replicas must not both restart one engine.
        """
        if self.replicas.leading:
            self._keep(asyncio.create_task(self.supervisor.check(route)))

    async def row_by_uid(self, uid: str) -> WorkspaceRow | None:
        """The workspace with this uid, fresh from the database."""
        rows = await self.rows_by_uid([uid])
        return rows[0] if rows else None

    async def all_rows(self) -> list[WorkspaceRow]:
        """Every workspace, fresh from the database."""
        async with self.db() as s:
            return list((await s.scalars(select(WorkspaceRow).order_by(WorkspaceRow.id))).all())

    async def rows_by_uid(self, uids: list[str]) -> list[WorkspaceRow]:
        """The workspaces with these uids, fresh from the database."""
        async with self.db() as s:
            return list((await s.scalars(select(WorkspaceRow).where(WorkspaceRow.uid.in_(uids)))).all())

    def start_in_background(self, row: WorkspaceRow) -> None:
        """Start the engine of a workspace already marked starting."""
        self._background(row, self.do_start)

    def touch(self, uid: str) -> None:
        """Note activity on a workspace (the gateway's hot path: memory only)."""
        self.activity.touch(uid)

    async def _with_secrets(self, row: WorkspaceRow) -> WorkspaceSpec:
        found = await self.secrets.materials(row.owner_id)
        path = tuple(provision_tools.bin_dirs(self.settings.tools_dir, self.settings.tools))
        return dataclasses.replace(self.spec(row), env=found.env, files=found.files, path=path, first_start=row.started_at is None)

    async def secrets_changed(self, user_id: int, removed_file: str | None) -> None:
        """Rewrite the user's secret files in each of their workspaces (variables reach engines at their next start)."""
        async with self.db() as s:
            rows = (await s.scalars(select(WorkspaceRow).where(WorkspaceRow.owner_id == user_id, WorkspaceRow.provisioned_at.is_not(None)))).all()
        for row in rows:
            await self.backend.write_files(await self._with_secrets(row), [removed_file] if removed_file else [])

    async def do_start(self, row: WorkspaceRow, keep_error: bool = False) -> None:
        """Start the engine of a workspace marked starting (under its lock), and record how that went."""
        began = time.perf_counter()
        try:
            endpoint = await self.backend.start(await self._with_secrets(row))
        except DevyardError as exc:
            self.metrics.start_failures.inc()
            await self.set_status(row, Status.failed, error=exc.message, reason=exc.code)
            return
        self.metrics.starts.inc()
        self.metrics.start_seconds.observe(time.perf_counter() - began)
        self.activity.seen(row.uid, time.time())
        await self.set_status(row, Status.running, address=endpoint.address, started_at=utcnow(), error=row.error if keep_error else None)

    async def _do_stop(self, row: WorkspaceRow, why: str | None = None) -> None:
        try:
            await self.backend.stop(self.spec(row), self.settings.engine_stop_timeout_s)
        except DevyardError as exc:
            await self.set_status(row, Status.failed, error=exc.message, reason=exc.code)
            return
        await self.set_status(row, Status.stopped, **({"error": why} if why else {}))

    def _background(self, row: WorkspaceRow, op: Callable[[WorkspaceRow], Awaitable[None]]) -> None:
        async def run() -> None:
            async with self.lock(row.uid):
                fresh = await self.row_by_uid(row.uid)
                if fresh is None or fresh.status == Status.deleting:
                    return  # deleted while this waited its turn: starting it now would leave an orphan engine
                try:
                    await op(row)
                except Exception as exc:
                    log.exception("workspace %s/%s: %s failed", row.owner.name, row.name, op.__name__)
                    await self.set_status(row, Status.failed, error=f"internal error: {exc}")

        self._keep(asyncio.create_task(run()))

    def _keep(self, task: asyncio.Task[Any]) -> None:
        # The event loop holds tasks weakly: keep a reference until each is done.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def lock(self, uid: str) -> asyncio.Lock:
        """The lock that orders operations on one workspace."""
        return self._locks.setdefault(uid, asyncio.Lock())

    def _user_lock(self, user_id: int) -> asyncio.Lock:
        # Quota checks and the change they allow happen together: parallel requests cannot both fit.
        return self._user_locks.setdefault(user_id, asyncio.Lock())

    @staticmethod
    def _refuse_while(row: WorkspaceRow, *states: Status) -> None:
        if row.status in states:
            raise Invalid(f"workspace '{row.name}' is {row.status}; try again when that is done", code="workspace_busy")

    async def set_status(self, row: WorkspaceRow, status: str, address: str | None = None, **fields: Any) -> None:
        """Write a status change to the database, the row object and the route table (`reason` only stays while failed)."""
        values = {"status": status, **fields, "address": address if status == Status.running else None,
                  "busy_replica": self.replicas.busy_mark(status)}
        if status != Status.failed:
            values["reason"] = None
        elif values.get("reason"):
            values["reason"] = str(values["reason"])[:32]  # a code, kept to its column
        async with self.db() as s:
            await s.execute(update(WorkspaceRow).where(WorkspaceRow.id == row.id).values(**values))
            await self.replicas.coordinator.notify(s, row.uid)
            await s.commit()
        for field, value in values.items():
            setattr(row, field, value)
        self.remember(row, address)
        log.info("workspace %s/%s: %s", row.owner.name, row.name, status)

    def remember(self, row: WorkspaceRow, address: str | None) -> None:
        """Put the row's state in the gateway's route table (an engine address only while running)."""
        status = Status(row.status)
        self._routes[(row.owner.name, row.name)] = Route(
            row.uid, row.owner.name, row.name, status, address if status == Status.running else None, self._shares.get(row.uid, frozenset()),
            row.idle_timeout_s,
        )
        self.publish(row)

    def publish(self, row: WorkspaceRow) -> None:
        """Tell live viewers (the dashboard) about the row as it is now."""
        if self.events.watched:
            shares = self._shares.get(row.uid, frozenset())
            self.events.publish(Event("workspace", row.owner.name, shares, self.to_model(row).model_dump(mode="json")))
