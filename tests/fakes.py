"""An in-memory Backend for the fast tier: engines that start, stop, crash and fail on command, as JupyterHub's MockSpawner.

Only the in-process tests of the state machine use it (tests/test_core_fast.py); every test of a
real behaviour runs the real engine through the local or Kubernetes backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from devyard.backends.base import Channel, Endpoint, RuntimeStatus, WorkspaceSpec
from devyard.errors import BackendError, NotOnThisBackend
from devyard.models import Stats
from devyard.provision.devcontainer import Build


class FakeBackend:
    """Engines as records in a dict; `fail_start`/`fail_stop` make the next calls fail with that message."""

    local_files = True
    missing_isolation: str | None = None

    def __init__(self) -> None:
        self.engines: dict[str, RuntimeStatus] = {}
        self.starts = 0
        self.stops: list[str] = []
        self.removed: list[str] = []
        self.fail_start: str | None = None
        self.fail_stop: str | None = None
        self.commands: list[tuple[str, str]] = []

    async def start(self, ws: WorkspaceSpec) -> Endpoint:
        """An engine 'runs' at a socket path of its own for each start."""
        if self.fail_start:
            raise BackendError(self.fail_start, code="engine_failed")
        self.starts += 1
        endpoint = Endpoint(unix_socket=f"/fake/{ws.uid}/{self.starts}.sock")
        self.engines[ws.uid] = RuntimeStatus(ws.uid, "running", pid=1000 + self.starts, endpoint=endpoint)
        return endpoint

    async def stop(self, ws: WorkspaceSpec, timeout: float) -> None:
        """The engine is gone."""
        if self.fail_stop:
            raise BackendError(self.fail_stop, code="stop_failed")
        self.stops.append(ws.uid)
        self.engines.pop(ws.uid, None)

    def crash(self, uid: str, exit_code: int = 1, reason: str | None = None, detail: str | None = None) -> None:
        """The engine exits by itself."""
        self.engines[uid] = RuntimeStatus(uid, "failed", exit_code=exit_code, reason=reason, detail=detail)

    async def status(self, ws: WorkspaceSpec) -> RuntimeStatus:
        """What runs now."""
        return self.engines.get(ws.uid) or RuntimeStatus(ws.uid, "stopped")

    async def stats(self, ws: WorkspaceSpec) -> Stats:
        """Fixed figures for a running engine."""
        return Stats(cpu_percent=1.0, memory_bytes=100 << 20, uptime_s=5.0, disk_bytes=1 << 20)

    async def listening_ports(self, ws: WorkspaceSpec) -> list[int] | None:
        """No ports."""
        return []

    async def run_once(self, ws: WorkspaceSpec, command: str, timeout_s: float) -> int:
        """Record the command; status 0."""
        self.commands.append((ws.uid, command))
        return 0

    async def build_image(self, ws: WorkspaceSpec, build: Build, say: Callable[[str], None]) -> str:
        """No images: nothing runs."""
        raise NotOnThisBackend("the fake backend runs no images", code="not_on_this_backend")

    def ssh_login(self, ws: WorkspaceSpec) -> str:
        """No SSH: nothing runs."""
        raise BackendError("the fake backend runs nothing to log in to", code="ssh_unavailable")

    async def ssh(self, ws: WorkspaceSpec) -> Channel:
        """No SSH."""
        raise BackendError("the fake backend runs nothing to log in to", code="ssh_unavailable")

    async def adopt(self) -> list[RuntimeStatus]:
        """The engines still 'running' (a manager restart finds them)."""
        return [s for s in self.engines.values() if s.state == "running"]

    async def close(self) -> None:
        """Nothing to close."""

    async def write_files(self, ws: WorkspaceSpec, remove: list[str]) -> None:
        """Nothing to write."""

    async def remove(self, ws: WorkspaceSpec, keep_files: bool) -> None:
        """Remember the removal."""
        self.removed.append(ws.uid)

    async def logs(self, ws: WorkspaceSpec, lines: int) -> list[str]:
        """A log of one line."""
        return ["engine log"][-lines:]

    async def follow(self, ws: WorkspaceSpec) -> AsyncIterator[str]:
        """No lines follow."""
        for line in ():
            yield line
