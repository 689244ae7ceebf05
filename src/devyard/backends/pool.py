"""The warm pool: engines booted ahead of time and handed to workspaces as they are created.

An engine's boot (Node loading code-server, about 0.8 s) is most of a new workspace's wait. With
`devyard.pool.size: N` the local backend keeps N engines booted on folders of their own under
<data_dir>/pool/<slot>/. Starting a workspace that one of them can serve takes one instead:

1. what provisioning wrote into the workspace's folder (files, settings, home) moves into the
   engine's folder, and its log is appended to the engine's;
2. the engine's folder is renamed to the workspace's (<workspaces>/<owner>/<name>), where the data
   lives from then on, and the old path becomes a symlink to it, because the running engine
   keeps the paths it booted with (its terminals open there until the workspace's next start);
3. the engine's runtime record becomes the workspace's, so status, stop, the supervisor and
   adoption after a manager restart treat it like any other engine; a new one boots in its place.

An engine is taken only for a workspace's first start, where it is exactly what a fresh engine
would give: engines share one system account (os_accounts off; so never sandboxed), the workspace's
size limits are applied as it is handed over (its control groups made and the engine's processes
moved in; memory it used while waiting stays counted where it was), no secret variables (the engine's environment is fixed at boot) and no extensions installed by
provisioning. Later starts use the workspace's own paths, where VS Code keeps its editor state. Anything
else starts its own engine as before. One difference stays: `/absproxy/` URLs of a pooled engine
lack the workspace prefix until its next start (code-server takes that prefix at boot); `/proxy/`
is unaffected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devyard.backends.base import WorkspaceSpec

log = logging.getLogger("devyard")
SUBFOLDERS = ("files", "data", "home")  # what provisioning may have written, merged into the engine's


@dataclass(frozen=True, slots=True)
class Warm:
    """One booted engine waiting in the pool."""

    spec: WorkspaceSpec  # its own folders and uid (the slot)


def slot_spec(pool_dir: Path, path: tuple[str, ...]) -> WorkspaceSpec:
    """The spec a pool engine boots with: a slot of its own, no owner yet."""
    slot = "pool-" + secrets.token_hex(6)
    return WorkspaceSpec(uid=slot, owner="", name="", root=pool_dir / slot, path=path)


def eligible(ws: WorkspaceSpec, path: tuple[str, ...]) -> bool:
    """Whether a pool engine is what starting `ws` would give (see the module docstring)."""
    if not ws.first_start or ws.env or ws.container_env or ws.post_start or ws.path != path:
        return False
    extensions = ws.extensions_dir
    return not (extensions.is_dir() and any(extensions.iterdir()))


def merge_into(source: Path, target: Path) -> None:
    """Move everything under `source` into `target`, replacing what is there; `source` is left empty."""
    if not source.is_dir():
        return
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        dest = target / entry.name
        if entry.is_dir() and not entry.is_symlink() and dest.is_dir():
            merge_into(entry, dest)
        else:
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            os.replace(entry, dest)


def move_in(warm: WorkspaceSpec, ws: WorkspaceSpec) -> None:
    """Make the warm engine's folder the workspace's (steps 1 and 2 of the module docstring)."""
    for sub in SUBFOLDERS:
        merge_into(ws.root / sub, warm.root / sub)
    if ws.log_file.exists():
        with ws.log_file.open("rb") as earlier, warm.log_file.open("ab") as log_file:
            log_file.write(f"--- devyard: engine taken from the warm pool for {ws.owner}/{ws.name} ---\n".encode())
            shutil.copyfileobj(earlier, log_file)
    if ws.root.exists():
        shutil.rmtree(ws.root)
    ws.root.parent.mkdir(parents=True, exist_ok=True)
    os.rename(warm.root, ws.root)
    os.symlink(ws.root, warm.root)


def give_back_paths(link: Path) -> None:
    """A pool-born engine stopped: remove the path it booted with, and stop the workspace pointing at it.

    code-server reopens the folder it served last (user-data's coder.json) in preference to the
    one it is started with; that was the borrowed path, which is gone from now on.
    """
    target = Path(os.readlink(link))
    coder = target / "data" / "coder.json"
    with contextlib.suppress(OSError):
        text = coder.read_text()
        if str(link) in text:
            tmp = coder.with_suffix(".tmp")
            tmp.write_text(text.replace(str(link), str(target)))
            tmp.replace(coder)
    link.unlink()


class WarmPool:
    """Keeps `size` engines booted; `take` hands one out and boots its replacement."""

    def __init__(
        self,
        size: int,
        pool_dir: Path,
        path: tuple[str, ...],
        boot: Callable[[WorkspaceSpec], Awaitable[None]],
        alive: Callable[[str], bool],
        discard: Callable[[WorkspaceSpec], None],
    ) -> None:
        self.size, self.pool_dir, self.path = size, pool_dir, path
        self._boot, self._alive, self._discard = boot, alive, discard
        self._ready: list[Warm] = []
        self._filling: asyncio.Task[None] | None = None
        self._failures = 0

    def adopt(self, uid: str, record: dict[str, Any]) -> None:
        """An engine booted for the pool by an earlier manager, still waiting: back into the pool."""
        self._ready.append(Warm(WorkspaceSpec(uid=uid, owner="", name="", root=Path(record["root"]), path=self.path)))

    @property
    def ready(self) -> int:
        """Engines booted and waiting."""
        return len(self._ready)

    def take(self, ws: WorkspaceSpec) -> Warm | None:
        """A booted engine for `ws`, when one is waiting and may serve it; a replacement starts booting."""
        if not self.size or not eligible(ws, self.path):
            return None
        while self._ready:
            warm = self._ready.pop(0)
            if self._alive(warm.spec.uid):
                self.fill()
                return warm
            self._discard(warm.spec)
        self.fill()
        return None

    def fill(self) -> None:
        """Boot engines in the background until `size` are waiting (one at a time: boots are CPU-heavy)."""
        if self.size and (self._filling is None or self._filling.done()):
            self._filling = asyncio.get_running_loop().create_task(self._fill())

    async def _fill(self) -> None:
        while len(self._ready) < self.size:
            spec = slot_spec(self.pool_dir, self.path)
            try:
                await self._boot(spec)
            except asyncio.CancelledError:
                self._discard(spec)
                raise
            except Exception as exc:  # a failing boot must not spin: back off, and say why
                self._discard(spec)
                self._failures += 1
                log.warning(
                    "warm pool: an engine failed to boot (%s); retrying in %d s", exc, min(60, 2**self._failures)
                )
                await asyncio.sleep(min(60, 2**self._failures))
                continue
            self._failures = 0
            self._ready.append(Warm(spec))
            log.info("warm pool: an engine is ready (%d of %d waiting)", len(self._ready), self.size)

    async def close(self) -> None:
        """Stop booting; waiting engines stay for the next manager, like every engine."""
        if self._filling is not None:
            self._filling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._filling
