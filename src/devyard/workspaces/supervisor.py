"""Watching running engines: a crash is restarted with backoff (a crash loop ends in `failed`), an idle one stopped.

One loop per manager looks at every running workspace each `supervise_interval_s` (a record
read and a pid check per engine, no database query), so an engine that exits by itself is
noticed within about a second, not when a user next opens it. Idle stop runs in the same loop;
activity is what the gateway notes in memory on each request and WebSocket message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from datetime import UTC, datetime
from typing import Protocol

from devyard.backends.base import RuntimeStatus, WorkspaceSpec
from devyard.clock import CLOCK
from devyard.config import Settings
from devyard.loops import Loop
from devyard.metrics import Metrics
from devyard.provision.report import ProgressLog
from devyard.reasons import Cause, spoken
from devyard.store.tables import WorkspaceRow
from devyard.workspaces.access import Route
from devyard.workspaces.activity import Activity
from devyard.workspaces.states import Status, backoff_s


class Workspaces(Protocol):
    """What the supervisor needs of the lifecycle (and nothing more)."""

    def routes_in(self, status: Status) -> list[Route]: ...
    def spec(self, row: WorkspaceRow) -> WorkspaceSpec: ...
    def spec_of(self, uid: str, owner: str, name: str) -> WorkspaceSpec: ...
    def lock(self, uid: str) -> asyncio.Lock: ...
    async def row_by_uid(self, uid: str) -> WorkspaceRow | None: ...
    async def runtime(self, spec: WorkspaceSpec) -> RuntimeStatus: ...
    async def logs(self, row: WorkspaceRow, lines: int) -> list[str]: ...
    async def transition(
        self, row: WorkspaceRow, status: str, address: str | None = None, **fields: object
    ) -> None: ...
    def start_in_background(self, row: WorkspaceRow) -> None: ...
    async def stop(self, row: WorkspaceRow, cause: Cause, error: str | None = None) -> WorkspaceRow: ...
    async def noted(self, row: WorkspaceRow, cause: Cause, verb: str) -> dict[str, object]: ...


log = logging.getLogger("devyard.supervisor")
ERROR_TAIL_LINES = 5


class Supervisor(Loop):
    """The loop, and what a crash or idleness leads to; the lifecycle makes the changes."""

    def __init__(self, settings: Settings, service: Workspaces, activity: Activity, metrics: Metrics) -> None:
        super().__init__()
        self.service, self.settings, self.activity, self.metrics = service, settings, activity, metrics
        self.every_s = settings.supervise_interval_s
        self._crashes: dict[str, deque[float]] = {}
        self._later: set[asyncio.Task[None]] = set()  # restarts waiting out their backoff

    async def stop(self) -> None:
        """End the loop and the restarts still waiting."""
        for task in self._later:
            task.cancel()
        await asyncio.gather(*self._later, return_exceptions=True)
        await super().stop()

    async def tick(self) -> None:
        """One round over the running workspaces."""
        await self.check_once(CLOCK.time())

    async def check_once(self, now: float) -> None:
        """Look at every running workspace once: engines that exited, workspaces idle too long."""
        service = self.service
        for route in service.routes_in(Status.running):
            if not await self.check(route):
                continue
            timeout = route.idle_timeout_s if route.idle_timeout_s is not None else self.settings.idle_timeout_s
            last = self.activity.last_seen(route.uid)
            if timeout and last is not None and now - last > timeout:
                log.info(
                    "workspace %s/%s: idle for %.0f s (limit %d s): stopping",
                    route.owner,
                    route.name,
                    now - last,
                    timeout,
                )
                await self.stop_idle(route.uid, timeout)

    async def check(self, route: Route) -> bool:
        """Whether the workspace's engine still runs; when not, handle it as a crash."""
        status = await self.service.runtime(self.service.spec_of(route.uid, route.owner, route.name))
        if status.state != "running":
            await self.exited(route.uid, status)
        return status.state == "running"

    async def exited(self, uid: str, status: RuntimeStatus) -> None:
        """An engine is gone though its workspace should run: restart it after a backoff, or fail it in a crash loop.

        The supervisor and the gateway may both report one crash: only the first, under the
        workspace's lock while it still says running, counts.
        """
        service = self.service
        async with service.lock(uid):
            row = await service.row_by_uid(uid)
            if row is None or row.status != Status.running:
                return  # handled already, or stopped on purpose meanwhile
            if (await service.runtime(service.spec(row))).state == "running":
                return  # started again while this waited for the lock: the engine that ended is not this one
            self.metrics.crashes.inc()
            if status.reason == "out_of_memory":  # restarting would only run out again: the owner decides
                error = f"{status.detail}; start it again, or choose a larger size"
                ProgressLog(service.spec(row).log_file).line(error)
                crashed = await service.noted(row, Cause("crash", status.detail or "out of memory"), "stop")
                await service.transition(row, Status.failed, error=error, reason=status.reason, last_stop=crashed)
                return
            now = time.monotonic()
            times = self._crashes.setdefault(uid, deque())
            times.append(now)
            while times and times[0] < now - self.settings.crash_window_s:
                times.popleft()
            crashes = len(times)
            what = f"{status.detail or 'the engine is gone'} (exit code {status.exit_code})"
            if crashes > self.settings.crash_restarts:
                self._crashes.pop(uid, None)
                error = (
                    f"{what}; it crashed {crashes} times within {self.settings.crash_window_s:.0f} s, so it is not restarted again. "
                    "Last log lines:"
                )
                ProgressLog(service.spec(row).log_file).line(error)
                lines = await service.logs(row, ERROR_TAIL_LINES + 1)
                await service.transition(
                    row,
                    Status.failed,
                    error=f"{error} " + " | ".join(lines[:-1]),
                    reason="crash_loop",
                    last_stop=await service.noted(row, Cause("crash", f"{what}, {crashes} times in a row"), "stop"),
                )
                return
            delay = backoff_s(crashes, self.settings.crash_backoff_s, self.settings.crash_backoff_max_s)
            error = f"{what}; restarting in {delay:.0f} s (crash {crashes} of at most {self.settings.crash_restarts} within {self.settings.crash_window_s:.0f} s)"
            ProgressLog(service.spec(row).log_file).line(error)
            await service.transition(
                row,
                Status.starting,
                error=error,
                last_stop=await service.noted(row, Cause("crash", what), "stop"),
                last_start=await service.noted(row, Cause("crash_restart", f"restarted after {what}"), "start"),
            )

        async def restart_later() -> None:
            await asyncio.sleep(delay)
            fresh = await service.row_by_uid(uid)
            if fresh is not None and fresh.status == Status.starting:  # not stopped or deleted meanwhile
                service.start_in_background(fresh)

        self._later.add(task := asyncio.get_running_loop().create_task(restart_later()))
        task.add_done_callback(self._later.discard)

    async def stop_idle(self, uid: str, timeout_s: int) -> None:
        """Stop a workspace nobody used for `timeout_s`; opening it again starts it."""
        row = await self.service.row_by_uid(uid)
        now = CLOCK.time()
        if row is not None and row.last_activity_at is not None and now - row.last_activity_at.timestamp() < timeout_s:
            self.activity.seen(
                uid, row.last_activity_at.timestamp()
            )  # used through another replica's gateway meanwhile
            return
        if row is not None and row.status == Status.running:
            last = self.activity.last_seen(uid)
            ProgressLog(self.service.spec(row).log_file).line(f"stopping: not used for {timeout_s} s (idle timeout)")
            self.activity.forget(uid)
            await self.service.stop(row, idle_cause(timeout_s, last))


def idle_cause(timeout_s: int, last_seen: float | None) -> Cause:
    """Why an idle workspace stopped: its timeout and the last activity the manager saw."""
    when = datetime.fromtimestamp(last_seen, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if last_seen else "never"
    return Cause("idle", f"not used for {spoken(timeout_s)} (its idle timeout); last activity seen: {when}")
