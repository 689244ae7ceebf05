"""The Backend protocol and the value types that cross it (design.md §7).

A backend runs engines somewhere; the manager asks it to start, stop, report on and adopt them
and never learns more. Implement the ten methods, `missing_isolation` and `local_files`; register the class under the
`devyard.backends` entry point group (the built-in `local` backend is registered the same way).

    backend = LocalBackend(settings)
    endpoint = await backend.start(spec)      # engine ready: the gateway may connect
    (await backend.status(spec)).state        # "running"
    await backend.stop(spec, timeout=10)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

State = Literal["running", "stopped", "failed"]


@dataclass(frozen=True, slots=True)
class Limits:
    """What one workspace's engine may use (from its size preset); None: no limit."""

    memory_bytes: int | None = None
    cpus: float | None = None
    disk_bytes: int | None = None  # checked while it runs (local) or the volume's size (kubernetes)
    pids_max: int | None = None  # processes and threads at once


@dataclass(frozen=True, slots=True)
class WorkspaceSpec:
    """What a backend needs to know about one workspace."""

    uid: str
    owner: str
    name: str
    root: Path  # holds files/, home/, data/, extensions/, logs/
    env: Mapping[str, str] = field(default_factory=dict)  # the owner's secrets, as variables
    files: Mapping[str, str] = field(default_factory=dict, repr=False)  # the owner's secret files: path in home → content
    path: tuple[str, ...] = ()  # folders of tools' commands, put first on the engine's PATH
    limits: Limits = field(default_factory=Limits)
    first_start: bool = False  # never started before: no editor state yet (a warm pool engine may serve it)

    @property
    def base_path(self) -> str:
        """The gateway path the workspace is served under."""
        return f"/w/{self.owner}/{self.name}/"

    @property
    def files_dir(self) -> Path:
        """The folder the user works in."""
        return self.root / "files"

    @property
    def home_dir(self) -> Path:
        """HOME of the engine and its terminals, kept out of the user's folder."""
        return self.root / "home"

    @property
    def data_dir(self) -> Path:
        """VS Code user-data (settings, state)."""
        return self.root / "data"

    @property
    def extensions_dir(self) -> Path:
        """Installed extensions."""
        return self.root / "extensions"

    @property
    def log_file(self) -> Path:
        """The engine's stdout and stderr."""
        return self.root / "logs" / "engine.log"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the gateway connects: a unix socket path, or host and port."""

    unix_socket: str | None = None
    host: str | None = None
    port: int | None = None

    @property
    def address(self) -> str:
        """One string for the gateway: the socket path (it starts with /), else host:port."""
        if self.unix_socket:
            return self.unix_socket
        return f"[{self.host}]:{self.port}" if self.host and ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class RuntimeStatus:
    """What a backend knows of one workspace's engine right now."""

    uid: str
    state: State
    pid: int | None = None
    started_at: float | None = None  # unix time
    exit_code: int | None = None
    endpoint: Endpoint | None = None
    detail: str | None = None
    reason: str | None = None  # why it failed, as a code: out_of_memory


@dataclass(frozen=True, slots=True)
class Stats:
    """Resource use of one engine and its workspace folder."""

    cpu_percent: float
    memory_bytes: int
    uptime_s: float
    disk_bytes: int


class Backend(Protocol):
    """Runs engines. Every method raises only devyard.errors.BackendError (never OSError)."""

    # Whether a workspace's files are the ones under its folder on the manager's machine (local), or
    # live elsewhere (a volume in a cluster): backups and adding extension groups need them here.
    local_files: bool

    @property
    def missing_isolation(self) -> str | None:
        """What keeps users' workspaces from being kept apart here, in one plain sentence (shown as a warning); None when nothing does."""
        ...

    async def start(self, ws: WorkspaceSpec) -> Endpoint:
        """Start the engine and return once it answers; an engine already running is returned as is.

        Raises BackendError (with the log tail) when the engine exits or does not answer in time.
        """
        ...

    async def stop(self, ws: WorkspaceSpec, timeout: float) -> None:
        """Stop the engine, escalating signals each `timeout` seconds; a stopped engine is a no-op."""
        ...

    async def status(self, ws: WorkspaceSpec) -> RuntimeStatus:
        """running (with endpoint and pid), stopped (never started or stopped cleanly) or failed (exited by itself)."""
        ...

    async def stats(self, ws: WorkspaceSpec) -> Stats:
        """CPU, memory and uptime of the engine (zeros when stopped) and disk use of the folder."""
        ...

    async def listening_ports(self, ws: WorkspaceSpec) -> list[int] | None:
        """TCP ports the workspace's processes listen on, seen from outside the engine; None where this backend cannot see them."""
        ...

    async def adopt(self) -> list[RuntimeStatus]:
        """After a manager restart: the engines still running, found without any manager state."""
        ...

    async def close(self) -> None:
        """The manager is stopping: end the backend's background work (engines keep running)."""
        ...

    async def write_files(self, ws: WorkspaceSpec, remove: list[str]) -> None:
        """Write `ws.files` into the workspace's home (mode 0600) and delete the `remove` paths, engine running or not."""
        ...

    async def remove(self, ws: WorkspaceSpec, keep_files: bool) -> None:
        """Delete everything of a stopped workspace (its files too, unless `keep_files`)."""
        ...

    async def logs(self, ws: WorkspaceSpec, lines: int) -> list[str]:
        """The last `lines` lines of what the engine (and devyard about it) wrote."""
        ...

    def follow(self, ws: WorkspaceSpec) -> AsyncIterator[str]:
        """Each line the engine writes from now on, as it comes, until the caller stops reading (across restarts)."""
        ...
