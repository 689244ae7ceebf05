"""Lifecycle: the transitions of a workspace (start, stop, restart, delete) and the one way a state is written.

`transition()` writes a status to the database, the row object and the route table together. An
engine address is kept while a workspace stays running and dropped when it leaves `running`, so
a write of other fields (`save()`) can never lose a running workspace's route. Start, stop and
restart run in the background under the workspace's lock (the API answers 202 at once); delete
waits for the engine to be gone. `reconcile()` and `reload()` bring memory in line with what runs
and with what another replica wrote.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

from devyard.audit import AuditLog
from devyard.backends.base import Backend, RuntimeStatus, Stats, WorkspaceSpec
from devyard.clock import CLOCK
from devyard.config import Settings
from devyard.errors import Conflict, DevyardError, NotOnThisBackend
from devyard.metrics import Metrics
from devyard.paths import child
from devyard.provision import tools as provision_tools
from devyard.provision.devcontainer import Build, DevContainer, image_of
from devyard.reasons import Cause
from devyard.store.tables import WorkspaceRow
from devyard.usersecrets import SecretStore
from devyard.workspaces import quotas, sizes, states
from devyard.workspaces.access import Route
from devyard.workspaces.activity import Activity
from devyard.workspaces.ports import PortTable
from devyard.workspaces.presenter import Presenter
from devyard.workspaces.repository import Repository
from devyard.workspaces.routes import RouteTable
from devyard.workspaces.runner import Runner
from devyard.workspaces.states import Status

log = logging.getLogger("devyard.workspaces")
Op = Callable[[WorkspaceRow], Awaitable[None]]
ASKED = Cause("user", "asked for by a user")
# Causes a user's request already put in the audit log (with the user and their address) are not written twice.
AUDITED_ELSEWHERE = frozenset({"user", "admin", "opened", "restart", "created"})


class Peers(Protocol):
    """The other replicas, as far as a transition cares: who this one is, and whether another still lives."""

    @property
    def replica(self) -> str:
        """This manager's name among replicas."""
        ...

    async def alive(self, replica: str) -> bool:
        """Whether the replica named `replica` still runs."""
        ...


class Lifecycle:
    """Transitions of every workspace of one manager, with the engine adapter they use."""

    def __init__(
        self,
        settings: Settings,
        repo: Repository,
        routes: RouteTable,
        runner: Runner,
        backend: Backend,
        activity: Activity,
        ports: PortTable,
        metrics: Metrics,
        presenter: Presenter,
        secrets: SecretStore,
        peers: Peers,
        audit: AuditLog,
    ) -> None:
        self.settings, self.repo, self.routes, self.runner, self.backend = settings, repo, routes, runner, backend
        self.activity, self.ports, self.metrics, self.presenter, self.secrets, self.peers = (
            activity,
            ports,
            metrics,
            presenter,
            secrets,
            peers,
        )
        self.audit = audit

    # -- the engine adapter and reads -----------------------------------------------------
    def spec(self, row: WorkspaceRow) -> WorkspaceSpec:
        """The backend's view of a workspace, with the limits of its size."""
        return dataclasses.replace(
            self.spec_of(row.uid, row.owner.name, row.name), limits=sizes.limits(self.settings, row.size)
        )

    def spec_of(self, uid: str, owner: str, name: str) -> WorkspaceSpec:
        """The backend's view of a workspace, from its route (no database query)."""
        return WorkspaceSpec(uid=uid, owner=owner, name=name, root=child(self.settings.workspaces_dir, owner, name))

    def need_local_files(self, what: str) -> None:
        """NotOnThisBackend when the backend keeps workspaces' files away from this machine (what `what` needs)."""
        if not self.backend.local_files:
            raise NotOnThisBackend(
                f"{what} need the workspace's files on the manager's machine, and the {self.settings.backend} backend keeps "
                "them in the workspace's volume (use the cluster's volume snapshots)",
                code="not_on_this_backend",
            )

    def routes_in(self, status: Status) -> list[Route]:
        """Every workspace in `status`, from memory."""
        return self.routes.in_status(status)

    def shares_of(self, uid: str) -> frozenset[str]:
        """Who a workspace is shared with, from memory."""
        return self.routes.shares_of(uid)

    def lock(self, uid: str) -> asyncio.Lock:
        """The lock that orders operations on one workspace."""
        return self.runner.lock(uid)

    def user_lock(self, user_id: int) -> asyncio.Lock:
        """The lock under which a user's quota is checked together with the change it allows."""
        return self.runner.user_lock(user_id)

    async def row_by_uid(self, uid: str) -> WorkspaceRow | None:
        """The workspace with this uid, fresh from the database."""
        return await self.repo.by_uid(uid)

    async def all_rows(self) -> list[WorkspaceRow]:
        """Every workspace, fresh from the database."""
        return await self.repo.all()

    async def dormancy_due(self, dormant_before: datetime | None, delete_before: datetime | None) -> list[WorkspaceRow]:
        """The workspaces dormancy may have a step for (Repository.dormancy_due)."""
        return await self.repo.dormancy_due(dormant_before, delete_before)

    async def rows_by_uid(self, uids: list[str]) -> list[WorkspaceRow]:
        """The workspaces with these uids, fresh from the database."""
        return await self.repo.by_uids(uids)

    async def timed_rows(self) -> list[WorkspaceRow]:
        """The workspaces with a schedule or running, fresh from the database (for the timers)."""
        return await self.repo.timed()

    async def runtime(self, spec: WorkspaceSpec) -> RuntimeStatus:
        """Whether the workspace's engine runs, asked of the backend."""
        return await self.backend.status(spec)

    async def run_once(self, spec: WorkspaceSpec, command: str, timeout_s: float) -> int:
        """Run a shell command where the workspace's engine runs (the backend's run_once); its exit status."""
        return await self.backend.run_once(spec, command, timeout_s)

    async def build_image(self, spec: WorkspaceSpec, build: Build, say: Callable[[str], None]) -> str:
        """Build a devcontainer.json's `build` for the workspace (the backend's build_image); the image to run."""
        return await self.backend.build_image(spec, build, say)

    async def logs(self, row: WorkspaceRow, lines: int) -> list[str]:
        """The last `lines` lines of the engine log."""
        return await self.backend.logs(self.spec(row), lines)

    async def stats(self, row: WorkspaceRow) -> Stats:
        """Resource use of the workspace."""
        return await self.backend.stats(self.spec(row))

    async def with_secrets(self, row: WorkspaceRow) -> WorkspaceSpec:
        """The spec an engine starts from: the owner's secrets, the manager's tools and the devcontainer.json's part."""
        found = await self.secrets.materials(row.owner_id)
        path = tuple(provision_tools.bin_dirs(self.settings.tools_dir, self.settings.tools))
        spec = dataclasses.replace(
            self.spec(row), env=found.env, files=found.files, path=path, first_start=row.started_at is None
        )
        container = DevContainer.from_json(row.devcontainer)
        if container is None:
            return spec
        return dataclasses.replace(
            spec,
            container_env=container.env,
            post_create=container.post_create,
            post_start=container.post_start,
            image=image_of(container, self.settings),
        )

    # -- writing a state ----------------------------------------------------------------
    async def transition(self, row: WorkspaceRow, status: str, address: str | None = None, **fields: Any) -> None:
        """Write a status (and `fields`) to the database, the row and the route table; a running workspace keeps its address.

        `address` is the engine's new address when entering `running`; any other status drops it.
        """
        if status == Status.running and address is None:
            address = self.routes.address(row.uid) or row.address
        values = states.values_for(status, address, fields)
        values["busy_replica"] = self.peers.replica if status in states.BUSY else None
        await self.repo.write(row, values)
        self.remember(row)
        log.info("workspace %s/%s: %s", row.owner.name, row.name, status)

    async def save(self, row: WorkspaceRow, **fields: Any) -> None:
        """Write fields of a workspace without changing its status (or its engine's address)."""
        await self.transition(row, row.status, **fields)

    async def noted(self, row: WorkspaceRow, cause: Cause, verb: str) -> dict[str, object]:
        """The Because a start or stop for `cause` leaves on the row; what the manager decided by itself is audited here."""
        at = CLOCK.now()
        if cause.reason not in AUDITED_ELSEWHERE:
            await self.audit.record(
                None,
                f"workspace.{verb}",
                f"{row.owner.name}/{row.name}",
                detail={"reason": cause.reason, "detail": cause.detail},
            )
        return cause.stored(at)

    def remember(self, row: WorkspaceRow, address: str | None = None) -> None:
        """Put the row's state in the route table (the engine at `address`, or the row's own) and tell the viewers."""
        self.routes.put(
            row.uid, row.owner.name, row.name, Status(row.status), address or row.address, row.idle_timeout_s
        )
        self.presenter.publish(row)

    def publish(self, row: WorkspaceRow) -> None:
        """Tell live viewers (the dashboard) about the row as it is now."""
        self.presenter.publish(row)

    def forget(self, uid: str) -> None:
        """A workspace is gone (deleted here or by another replica): out of every table, the viewers told."""
        self.routes.forget(uid)
        self.ports.forget(uid)
        self.activity.forget(uid)
        self.runner.forget(uid)

    # -- commands -------------------------------------------------------------------------
    async def start(self, row: WorkspaceRow, cause: Cause = ASKED) -> WorkspaceRow:
        """Mark the workspace starting (for `cause`) and start its engine in the background."""
        if row.status in (Status.running, Status.starting):
            return row
        states.refuse_while(row.name, row.status, *states.CHANGING_FILES)
        if row.provisioned_at is None:
            raise Conflict(
                f"workspace '{row.name}' was never provisioned ({row.error or 'provisioning failed'}); "
                "retry it with retry-provision, or delete it",
                code="not_provisioned",
            )
        await sizes.check_disk(self.settings, row.size, row.name, self.spec(row).root)
        async with self.user_lock(row.owner_id):
            await quotas.check(self.repo.db, self.settings, row.owner, new=False, running=True, exclude=row.id)
            await self.transition(
                row, Status.starting, error=None, dormant_at=None, last_start=await self.noted(row, cause, "start")
            )
        self.background(row, self.do_start)
        return row

    async def stop(self, row: WorkspaceRow, cause: Cause = ASKED, error: str | None = None) -> WorkspaceRow:
        """Mark the workspace stopping (for `cause`) and stop its engine in the background; `error` is left shown on it."""
        if row.status in (Status.stopped, Status.stopping):
            return row
        states.refuse_while(row.name, row.status, *states.CHANGING_FILES)
        await self.transition(row, Status.stopping, last_stop=await self.noted(row, cause, "stop"))
        self.background(row, lambda r: self.do_stop(r, error))
        return row

    async def restart(self, row: WorkspaceRow, cause: Cause = ASKED) -> WorkspaceRow:
        """Stop, then start, in the background."""
        states.refuse_while(row.name, row.status, *states.CHANGING_FILES)
        await self.transition(row, Status.stopping, last_stop=await self.noted(row, cause, "stop"))
        again = Cause("restart", cause.detail, cause.by)

        async def both(r: WorkspaceRow) -> None:
            await self.do_stop(r)
            await self.transition(r, Status.starting, last_start=await self.noted(r, again, "start"))
            await self.do_start(r)

        self.background(row, both)
        return row

    async def delete(self, row: WorkspaceRow, keep_files: bool) -> None:
        """Stop the engine, remove the folders (files/ stays with keep_files) and the record."""
        states.refuse_while(row.name, row.status, Status.deleting)
        await self.transition(row, Status.deleting)
        async with self.lock(row.uid):
            spec = self.spec(row)
            await self.backend.stop(spec, self.settings.engine_stop_timeout_s)
            await self.backend.remove(spec, keep_files)
            shutil.rmtree(self.settings.uploads_dir / row.uid, ignore_errors=True)
            await self.repo.remove(row)
        self.forget(row.uid)

    async def update(self, row: WorkspaceRow, changes: dict[str, Any]) -> WorkspaceRow:
        """Change the workspace's own settings: `idle_timeout_s` any time, `size` while it is stopped or failed.

        Never waits for a change under way (a stop, a start): a size then is a 409 at once.
        """
        if "size" not in changes:
            await self.save(row, **changes)
            return row
        sizes.check(self.settings, changes["size"])
        lock = self.lock(row.uid)
        if lock.locked():
            raise Conflict(
                f"workspace '{row.name}' is {row.status}; change its size once it is stopped", code="workspace_busy"
            )
        async with lock:
            fresh = await self.repo.by_uid(row.uid)
            status = fresh.status if fresh else row.status
            if status not in (Status.stopped, Status.failed):
                raise Conflict(
                    f"workspace '{row.name}' is {status}; stop it before changing its size",
                    code="workspace_not_stopped",
                )
            await self.save(row, **changes)
        return row

    async def stop_all_of(self, user_id: int, cause: Cause) -> None:
        """Stop every running workspace of a user (their account was disabled)."""
        for row in await self.repo.of_owner(user_id, (Status.running, Status.starting)):
            await self.stop(row, cause)

    async def ensure_started(self, route: Route, who: str) -> None:
        """Start a stopped or failed workspace (the gateway calls this for `who`, someone who may open it)."""
        if route.status in (Status.stopped, Status.failed):
            row = await self.repo.by_uid(route.uid)
            if row is not None and row.provisioned_at is not None:
                await self.start(row, Cause("opened", f"opened by {who} while it was {route.status}", by=who))

    def start_in_background(self, row: WorkspaceRow) -> None:
        """Start the engine of a workspace already marked starting."""
        self.background(row, self.do_start)

    async def do_start(self, row: WorkspaceRow, keep_error: bool = False) -> None:
        """Start the engine of a workspace marked starting (under its lock), and record how that went."""
        began = time.perf_counter()
        try:
            endpoint = await self.backend.start(await self.with_secrets(row))
        except DevyardError as exc:
            self.metrics.start_failures.inc()
            await self.transition(row, Status.failed, error=exc.message, reason=exc.code)
            return
        self.metrics.starts.inc()
        self.metrics.start_seconds.observe(time.perf_counter() - began)
        self.activity.seen(row.uid, CLOCK.time())
        await self.transition(
            row,
            Status.running,
            address=endpoint.address,
            started_at=CLOCK.now(),
            error=row.error if keep_error else None,
        )

    async def do_stop(self, row: WorkspaceRow, why: str | None = None) -> None:
        """Stop the engine of a workspace marked stopping, and record how that went; `why` is left as its error."""
        try:
            await self.backend.stop(self.spec(row), self.settings.engine_stop_timeout_s)
        except DevyardError as exc:
            await self.transition(row, Status.failed, error=exc.message, reason=exc.code)
            return
        await self.transition(row, Status.stopped, **({"error": why} if why else {}))

    def background(self, row: WorkspaceRow, op: Op) -> None:
        """Run `op` on the workspace in the background, under its lock, unless it is being deleted by then."""

        async def run() -> None:
            async with self.lock(row.uid):
                fresh = await self.repo.by_uid(row.uid)
                if fresh is None or fresh.status == Status.deleting:
                    return  # deleted while this waited its turn: starting it now would leave an orphan engine
                try:
                    await op(row)
                except Exception as exc:
                    log.exception(
                        "workspace %s/%s: %s failed", row.owner.name, row.name, getattr(op, "__name__", "an operation")
                    )
                    await self.transition(row, Status.failed, error=f"internal error: {exc}")

        self.runner.spawn(run())

    async def secrets_changed(self, user_id: int, removed_file: str | None) -> None:
        """Rewrite the user's secret files in each of their workspaces (variables reach engines at their next start)."""
        for row in await self.repo.of_owner(user_id, provisioned=True):
            await self.backend.write_files(await self.with_secrets(row), [removed_file] if removed_file else [])
