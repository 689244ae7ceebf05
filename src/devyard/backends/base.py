"""The Backend protocol and the value types that cross it (design.md §7).

A backend runs engines somewhere; the manager asks it to start, stop, report on and adopt them
and never learns more. Implement the twelve methods, `missing_isolation` and `local_files`; decorate the class with
`os_errors_translated` (no OSError leaves a backend); register it under the `devyard.backends` entry point group
(the built-in `local` and `kubernetes` backends are registered the same way).

    backend = LocalBackend(settings)
    endpoint = await backend.start(spec)      # engine ready: the gateway may connect
    (await backend.status(spec)).state        # "running"
    await backend.stop(spec, timeout=10)
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from devyard.errors import BackendError
from devyard.models import Stats as Stats  # the value Backend.stats returns, the same one the API shows

if TYPE_CHECKING:
    from devyard.provision.devcontainer import Build

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
    files: Mapping[str, str] = field(
        default_factory=dict, repr=False
    )  # the owner's secret files: path in home → content
    path: tuple[str, ...] = ()  # folders of tools' commands, put first on the engine's PATH
    limits: Limits = field(default_factory=Limits)
    first_start: bool = False  # never started before: no editor state yet (a warm pool engine may serve it)
    # From the files' devcontainer.json: variables (`${containerEnv:NAME}` references allowed; the
    # owner's secrets win), shell commands run once at the first start and at every start (the local
    # backend runs post_create while provisioning instead), and the image (Kubernetes only).
    container_env: Mapping[str, str] = field(default_factory=dict)
    post_create: str | None = None
    post_start: str | None = None
    image: str | None = None

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
class Channel:
    """A byte stream to one SSH server connection in a workspace (ssh/server.py), and how to end it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter | Any  # a subprocess's stdin, or a socket's writer: write, drain, close
    end: Callable[[], Awaitable[None]]


class Backend(Protocol):
    """Runs engines. Every method raises only devyard.errors.BackendError (never OSError: see os_errors_translated)."""

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

    async def run_once(self, ws: WorkspaceSpec, command: str, timeout_s: float) -> int:
        """Run a shell command where the engine of `ws` runs (its account, its sandbox), output to its log; the exit status.

        NotOnThisBackend where commands run in the workspace's pod instead (`ws.post_create`).
        """
        ...

    async def build_image(self, ws: WorkspaceSpec, build: Build, say: Callable[[str], None]) -> str:
        """Build a devcontainer.json's `build` for `ws` and return the image to run it in (pinned by digest).

        `say` gets the build's output line by line. NotOnThisBackend where images cannot apply (local).
        """
        ...

    def ssh_login(self, ws: WorkspaceSpec) -> str:
        """The account an SSH session of `ws` logs in as (its certificates' principal); BackendError ssh_unavailable where none can."""
        ...

    async def ssh(self, ws: WorkspaceSpec) -> Channel:
        """A new connection to an SSH server of the running workspace `ws`, as its account, where its engine runs."""
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


def ssh_login(backend: Backend, owner: str) -> str | None:
    """The account `owner`'s workspaces take SSH sessions as; None where the backend serves no SSH."""
    try:
        return backend.ssh_login(WorkspaceSpec(uid="", owner=owner, name="", root=Path("/")))
    except BackendError:
        return None


# What each Backend method does to a workspace, for the message of an OSError translated at the boundary;
# and the error code where the method has one of its own (a failed start is engine_start_failed, whatever the cause).
OPERATIONS: dict[str, str] = {
    "start": "start the engine of",
    "stop": "stop the engine of",
    "status": "read the status of",
    "stats": "measure",
    "listening_ports": "read the ports of",
    "run_once": "run a command in",
    "ssh": "open an SSH connection to",
    "adopt": "adopt the engines left running",
    "close": "close the backend",
    "write_files": "write the secret files of",
    "remove": "remove",
    "logs": "read the log of",
    "follow": "follow the log of",
}
CODES: dict[str, str] = {"start": "engine_start_failed", "write_files": "secret_files_failed"}

B = TypeVar("B", bound=type)


def os_errors_translated(cls: B) -> B:
    """Class decorator for a Backend: an OSError out of any of its protocol methods reaches the caller as a BackendError.

    As httpx maps transport errors to its own at the boundary, once, rather than in every method:

        @os_errors_translated
        class LocalBackend: ...

    The BackendError names the operation and the workspace (`could not start the engine of workspace ann/proj: Not a
    directory: /srv/devyard/workspaces/ann/proj/data`) and is raised from the OSError, so that what looks
    at the cause (errors.is_storage_full) still sees it. Errors devyard raised on purpose pass unchanged.
    """
    for name in OPERATIONS:
        method = getattr(cls, name)
        setattr(cls, name, _translating(name, method))
    return cls


def _translating(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(method):

        @functools.wraps(method)
        async def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return await method(self, *args, **kwargs)
            except OSError as exc:
                raise _translated(name, args, kwargs, exc) from exc

        return call

    @functools.wraps(method)
    async def stream(
        self: Any, *args: Any, **kwargs: Any
    ) -> AsyncIterator[Any]:  # follow: an async iterator, not a coroutine
        lines = method(self, *args, **kwargs)
        try:
            async for line in lines:
                yield line
        except OSError as exc:
            raise _translated(name, args, kwargs, exc) from exc
        finally:
            close = getattr(lines, "aclose", None)
            if close is not None:
                await close()

    return stream


def _translated(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], exc: OSError) -> BackendError:
    """The BackendError for `exc`, met by Backend method `name` called with `args`."""
    ws = args[0] if args else kwargs.get("ws")
    what = OPERATIONS[name] + (f" workspace {ws.owner}/{ws.name}" if isinstance(ws, WorkspaceSpec) else "")
    reason = (
        f"{exc.strerror}: {exc.filename}"
        if exc.strerror and exc.filename
        else (exc.strerror or str(exc) or type(exc).__name__)
    )
    return BackendError(f"could not {what}: {reason}", code=CODES.get(name, "backend_error"))
