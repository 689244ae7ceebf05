"""The fast tier: the workspace core (lifecycle, supervisor, reconcile, route table) in process, against an in-memory backend.

A real SQLite database and the real wiring (app.build_workspaces) with tests/fakes.FakeBackend in
place of engines, so the state machine's edge cases run in milliseconds. What engines really do
is tested against the real engine elsewhere (test_lifecycle.py, test_local_backend.py, ...).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from devyard.app import build_workspaces
from devyard.audit import AuditLog
from devyard.config import Settings
from devyard.errors import Conflict
from devyard.origins import Origins
from devyard.store.coordination import Coordinator
from devyard.store.db import migrate, open_engine, sessionmaker
from devyard.store.tables import UserRow, WorkspaceRow
from devyard.usersecrets import SecretStore
from devyard.workspaces import states
from devyard.workspaces.access import Route
from devyard.workspaces.reconcile import Reconciler
from devyard.workspaces.routes import RouteTable
from devyard.workspaces.service import WorkspaceService
from devyard.workspaces.states import Status
from tests.fakes import FakeBackend

pytestmark = pytest.mark.fast
T = TypeVar("T")


class Core:
    """One in-process workspace core on a fresh database, with helpers to make rows and wait for states."""

    def __init__(self, data_dir: Path, **overrides: Any) -> None:
        self.settings = Settings(
            data_dir=data_dir, crash_backoff_s=0.01, crash_backoff_max_s=0.01, supervise_interval_s=0.05, **overrides
        )
        data_dir.mkdir(parents=True, exist_ok=True)
        migrate(self.settings.db_url)
        self.engine = open_engine(self.settings.db_url)
        self.db = sessionmaker(self.engine)
        self.backend = FakeBackend()
        self.coordinator = Coordinator()
        self.service: WorkspaceService = build_workspaces(
            self.settings,
            self.db,
            self.backend,
            SecretStore(self.db, b"k" * 32),
            self.coordinator,
            Origins.from_settings(self.settings),
            AuditLog(self.db),
        )
        self.lifecycle = self.service.lifecycle
        self.reconciler = Reconciler(self.lifecycle)

    async def user(self, name: str = "ada") -> UserRow:
        """A user row."""
        async with self.db() as s:
            user = UserRow(name=name, password_hash="x")
            s.add(user)
            await s.commit()
            return user

    async def workspace(
        self, name: str, status: Status = Status.stopped, provisioned: bool = True, **fields: Any
    ) -> WorkspaceRow:
        """A workspace row as provisioning leaves it (or in `status`), in the route table."""
        owner = await self.user(f"u-{name}")
        row = WorkspaceRow(
            uid=f"uid{name}",
            owner_id=owner.id,
            name=name,
            status=status,
            extension_groups=[],
            provisioned_at=datetime.now(UTC) if provisioned else None,
            **fields,
        )
        await self.lifecycle.repo.add(row)
        self.lifecycle.remember(row)
        return row

    async def settled(self, row: WorkspaceRow, *wanted: Status, timeout: float = 5.0) -> WorkspaceRow:
        """The row once its status is one of `wanted` (background work done)."""
        deadline = time.monotonic() + timeout
        while True:
            fresh = await self.lifecycle.repo.by_uid(row.uid)
            if fresh is not None and fresh.status in wanted and not self.lifecycle.lock(row.uid).locked():
                return fresh
            assert time.monotonic() < deadline, f"{row.name} is {fresh.status if fresh else 'gone'}, not {wanted}"
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        """Stop the core's background work and the database."""
        await self.lifecycle.runner.close()
        await self.service.supervisor.stop()
        await self.engine.dispose()


@pytest.fixture
def core(tmp_path: Path) -> Iterator[Callable[[Callable[[Core], Awaitable[T]]], T]]:
    """Run an async test body against a fresh core, closed afterwards."""

    def run(body: Callable[[Core], Awaitable[T]], **overrides: Any) -> T:
        async def main() -> T:
            c = Core(tmp_path / "data", **overrides)
            try:
                return await body(c)
            finally:
                await c.close()

        return asyncio.run(main())

    yield run


# -- the rules, without I/O ----------------------------------------------------------------
def test_a_status_keeps_an_address_only_while_running_and_a_reason_only_while_failed() -> None:
    assert states.values_for(Status.running, "/s", {})["address"] == "/s"
    assert states.values_for(Status.stopping, "/s", {})["address"] is None
    assert states.values_for(Status.stopped, None, {"reason": "crash_loop"})["reason"] is None
    assert states.values_for(Status.failed, None, {"reason": "x" * 50})["reason"] == "x" * states.REASON_CHARS


@pytest.mark.parametrize(
    ("before", "running", "after", "error"),
    [
        (Status.running, True, Status.running, None),
        (Status.stopped, True, Status.running, None),
        (Status.running, False, Status.stopped, "the engine was not running when the manager started"),
        (Status.starting, False, Status.stopped, None),
        (Status.provisioning, False, Status.failed, "interrupted while provisioning by a manager restart"),
        (Status.deleting, False, Status.failed, "interrupted while deleting by a manager restart"),
        (Status.failed, False, Status.failed, None),
    ],
)
def test_what_a_restarted_manager_makes_of_each_status(
    before: Status, running: bool, after: Status, error: str | None
) -> None:
    status, fields = states.after_restart(before, running)
    assert status == after and fields.get("error") == error


def test_backoff_doubles_up_to_its_limit() -> None:
    assert [states.backoff_s(n, 1, 5) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 5, 5]


def test_busy_states_refuse_with_a_code() -> None:
    with pytest.raises(Conflict) as refused:
        states.refuse_while("w", Status.provisioning, *states.CHANGING_FILES)
    assert refused.value.code == "workspace_busy"
    states.refuse_while("w", Status.stopped, *states.CHANGING_FILES)


# -- the route table -----------------------------------------------------------------------
def test_the_route_table_is_indexed_by_uid_and_name_and_tells_its_watchers() -> None:
    table, told = RouteTable(), []
    table.watchers.append(lambda route, gone: told.append((route.name, route.shared_with, gone)))
    table.put("u1", "ada", "one", Status.running, "/s1", None)
    table.put("u2", "ada", "two", Status.stopped, "/ignored", 60)
    assert table.by_uid("u1") == table.get("ada", "one") and table.address("u1") == "/s1"
    assert table.address("u2") is None, "an address only while running"
    assert [r.name for r in table.in_status(Status.running)] == ["one"]
    table.share("u1", ["bob"])
    assert table.get("ada", "one").may_open("bob") and table.shares_of("u1") == {"bob"}  # type: ignore[union-attr]
    table.set_shares([("u2", "cy")])
    assert not table.get("ada", "one").may_open("bob") and table.get("ada", "two").may_open("cy")  # type: ignore[union-attr]
    gone = table.forget("u1")
    assert gone is not None and table.by_uid("u1") is None and table.get("ada", "one") is None
    assert told[-1] == ("one", frozenset(), True)
    assert table.forget("u1") is None


# -- the lifecycle -------------------------------------------------------------------------
def test_start_then_stop_writes_the_address_and_drops_it(core: Any) -> None:
    async def body(c: Core) -> None:
        row = await c.workspace("w")
        await c.lifecycle.start(row)
        row = await c.settled(row, Status.running)
        route = c.service.route(row.owner.name, "w")
        assert route is not None and route.address == row.address == "/fake/uidw/1.sock"
        await c.lifecycle.stop(row)
        row = await c.settled(row, Status.stopped)
        assert row.address is None and c.service.route(row.owner.name, "w").address is None  # type: ignore[union-attr]
        assert c.backend.stops == ["uidw"]

    core(body)


def test_saving_fields_of_a_running_workspace_keeps_its_route(core: Any) -> None:
    async def body(c: Core) -> None:
        row = await c.workspace("w")
        await c.lifecycle.start(row)
        row = await c.settled(row, Status.running)
        await c.lifecycle.update(row, {"idle_timeout_s": 600})
        await c.lifecycle.save(row, error="a warning")
        fresh = await c.settled(row, Status.running)
        assert fresh.address == "/fake/uidw/1.sock" and fresh.idle_timeout_s == 600 and fresh.error == "a warning"
        assert c.service.route(row.owner.name, "w").address == "/fake/uidw/1.sock"  # type: ignore[union-attr]

    core(body)


def test_a_start_that_fails_is_failed_with_the_backends_message_and_code(core: Any) -> None:
    async def body(c: Core) -> None:
        row = await c.workspace("w")
        c.backend.fail_start = "no room for the engine"
        await c.lifecycle.start(row)
        row = await c.settled(row, Status.failed)
        assert row.error == "no room for the engine" and row.reason == "engine_failed" and row.address is None
        c.backend.fail_start = None
        await c.lifecycle.start(row)
        row = await c.settled(row, Status.running)
        assert row.reason is None and row.error is None, "a reason only while failed"

    core(body)


def test_commands_are_refused_while_files_change_and_for_unprovisioned_workspaces(core: Any) -> None:
    async def body(c: Core) -> None:
        busy = await c.workspace("busy", Status.provisioning, provisioned=False)
        for command in (c.lifecycle.start, c.lifecycle.stop, c.lifecycle.restart):
            with pytest.raises(Conflict) as refused:
                await command(busy)
            assert refused.value.code == "workspace_busy"
        never = await c.workspace("never", Status.failed, provisioned=False)
        with pytest.raises(Conflict) as refused:
            await c.lifecycle.start(never)
        assert refused.value.code == "not_provisioned"

    core(body)


def test_the_size_changes_only_while_stopped(core: Any) -> None:
    async def body(c: Core) -> None:
        row = await c.workspace("w")
        await c.lifecycle.start(row)
        row = await c.settled(row, Status.running)
        with pytest.raises(Conflict) as refused:
            await c.lifecycle.update(row, {"size": None})
        assert refused.value.code == "workspace_not_stopped"

    core(body)


def test_a_start_queued_behind_a_delete_starts_no_orphan_engine(core: Any) -> None:
    async def body(c: Core) -> None:
        row = await c.workspace("w")
        async with c.lifecycle.lock(row.uid):  # something else holds the workspace: the start waits its turn
            await c.lifecycle.start(row)
            await c.lifecycle.transition(row, Status.deleting)
        await asyncio.sleep(0.05)
        await c.lifecycle.runner.close()
        assert c.backend.starts == 0 and not c.backend.engines

    core(body)


def test_restart_gives_a_new_engine_and_delete_forgets_everything(core: Any) -> None:
    async def body(c: Core) -> None:
        row = await c.workspace("w")
        await c.lifecycle.start(row)
        row = await c.settled(row, Status.running)
        await c.lifecycle.restart(row)
        await asyncio.sleep(0)
        row = await c.settled(row, Status.running)
        assert row.address == "/fake/uidw/2.sock"
        await c.lifecycle.delete(row, keep_files=False)
        assert await c.lifecycle.repo.by_uid(row.uid) is None and c.service.route_by_uid(row.uid) is None
        assert c.backend.removed == ["uidw"] and not c.backend.engines
        with pytest.raises(Conflict):
            await c.lifecycle.delete(row, keep_files=False)  # the row object says deleting: refused, not run twice

    core(body)


# -- supervision ---------------------------------------------------------------------------
def test_a_crash_restarts_the_engine_and_a_crash_loop_fails_it(core: Any) -> None:
    async def body(c: Core) -> None:
        row = await c.workspace("w")
        await c.lifecycle.start(row)
        row = await c.settled(row, Status.running)
        route = c.service.route_by_uid(row.uid)
        c.backend.crash(row.uid, exit_code=3)
        assert not await c.service.supervisor.check(route)  # type: ignore[arg-type]
        row = await c.settled(row, Status.running)
        assert row.address == "/fake/uidw/2.sock" and row.error is None, (
            "restarted after its backoff, the crash note cleared"
        )
        for _ in range(c.settings.crash_restarts):
            c.backend.crash(row.uid, exit_code=3)
            await c.service.supervisor.check(c.service.route_by_uid(row.uid))  # type: ignore[arg-type]
            row = await c.settled(row, Status.running, Status.failed)
        assert row.status == Status.failed and row.reason == "crash_loop" and "crashed" in (row.error or "")

    core(body)


def test_running_out_of_memory_fails_without_a_restart(core: Any) -> None:
    async def body(c: Core) -> None:
        row = await c.workspace("w")
        await c.lifecycle.start(row)
        row = await c.settled(row, Status.running)
        c.backend.crash(row.uid, exit_code=137, reason="out_of_memory", detail="the engine ran out of memory")
        await c.service.supervisor.check(c.service.route_by_uid(row.uid))  # type: ignore[arg-type]
        row = await c.settled(row, Status.failed)
        assert row.reason == "out_of_memory" and c.backend.starts == 1

    core(body)


def test_an_idle_workspace_is_stopped(core: Any) -> None:
    async def body(c: Core) -> None:
        row = await c.workspace("w", idle_timeout_s=60)
        await c.lifecycle.start(row)
        row = await c.settled(row, Status.running)
        await c.service.supervisor.check_once(time.time() + 30)
        assert (await c.settled(row, Status.running)).status == Status.running, "not idle for long enough yet"
        await c.service.supervisor.check_once(time.time() + 61)
        assert (await c.settled(row, Status.stopped)).status == Status.stopped

    core(body)


# -- a manager that starts again -----------------------------------------------------------
def test_reconcile_adopts_what_runs_fails_the_interrupted_and_stops_orphans(core: Any) -> None:
    async def body(c: Core) -> None:
        gone = await c.workspace("gone", Status.running, address="/old.sock")
        adopted = await c.workspace("adopted", Status.stopped)
        halfway = await c.workspace("halfway", Status.provisioning, provisioned=False)
        c.backend.engines.clear()
        await c.backend.start(c.lifecycle.spec(adopted))
        await c.backend.start(c.lifecycle.spec_of("orphan", "?", "?"))
        await c.reconciler.reconcile(leading=True)
        stopped = await c.lifecycle.repo.by_uid(gone.uid)
        assert stopped is not None and stopped.status == Status.stopped
        assert stopped.last_stop is not None and stopped.last_stop["reason"] == "failover"
        fresh = await c.lifecycle.repo.by_uid(adopted.uid)
        assert fresh is not None and fresh.status == Status.running and fresh.address == "/fake/uidadopted/1.sock"
        assert c.service.route_by_uid(adopted.uid).address == fresh.address  # type: ignore[union-attr]
        assert (await c.lifecycle.repo.by_uid(halfway.uid)).status == Status.failed  # type: ignore[union-attr]
        assert "orphan" not in c.backend.engines

    core(body)


def test_a_follower_only_fills_its_routes(core: Any) -> None:
    async def body(c: Core) -> None:
        row = await c.workspace("w", Status.running, address="/old.sock")
        c.backend.engines.clear()
        await c.reconciler.reconcile(leading=False)
        assert (await c.lifecycle.repo.by_uid(row.uid)).status == Status.running  # type: ignore[union-attr]
        assert c.service.route_by_uid(row.uid) == Route(row.uid, row.owner.name, "w", Status.running, "/old.sock")

    core(body)
