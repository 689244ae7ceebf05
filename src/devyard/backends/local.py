"""The local backend: one engine process per workspace on this machine.

Engines start in their own session (process group) with stdout/stderr going to a log file, never
a pipe into the manager, so they outlive a manager crash or restart and are adopted by the next
one. What the manager must know to find them again is on disk, not in memory (records.py).
How an engine is launched (its folders, command line, limits and sandbox) is launch.py's;
this module keeps engines running, reports on them and ends them. The gateway checks who listens
on an engine's socket (gateway/http.py): its runtime folder is its tenant's.

Every engine runs in control groups of its own with its size's limits (cgroups.py); where the host
has none to give, the engine runs unlimited and its log and `devyard doctor` say so.

Run as root (os_accounts: auto), each user's engines run as that user's system account (see
osaccounts.py), each in a sandbox of its own (sandbox.py): their files, home, settings, extensions
and runtime folder belong to it with mode 0700, the folders above them let it pass but not look,
and the manager's own state stays 0700.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil

from devyard import osaccounts
from devyard.backends import cgroups, homefiles, local_ssh
from devyard.backends.base import Channel, Endpoint, RuntimeStatus, Stats, WorkspaceSpec, os_errors_translated
from devyard.backends.launch import NOT_SANDBOXED, Launcher
from devyard.backends.pool import WarmPool, give_back_paths, move_in
from devyard.backends.records import Records, alive
from devyard.config import Settings
from devyard.errors import BackendError, NotOnThisBackend
from devyard.logfiles import follow, tail
from devyard.paths import disk_usage, remove_workspace
from devyard.processes import listening_ports, process_tree, sample_tree, terminate_tree
from devyard.provision import tools as provision_tools
from devyard.provision.devcontainer import Build

log = logging.getLogger("devyard")

READY_POLL_S = 0.02
LOG_TAIL_LINES = 20


@os_errors_translated
class LocalBackend:
    """Engines as detached child processes listening on unix sockets under <data_dir>/run."""

    local_files = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.run_dir = settings.run_dir
        self.records = Records(self.run_dir)
        self.isolated = settings.isolated
        self.launcher = Launcher(settings, self.records)  # checks the host: isolation, control groups, a sandbox
        # Popen objects of engines (and their sandboxes' network helpers) this manager started, kept to reap them (no zombies).
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._helpers: dict[str, subprocess.Popen[bytes]] = {}
        size = settings.pool.size
        if size and self.isolated:
            log.warning(
                "the warm pool is off: engines run as each user's own account here (os_accounts), unknown before a workspace exists"
            )
            size = 0
        self.pool = WarmPool(
            size,
            settings.data_dir / "pool",
            tuple(provision_tools.bin_dirs(settings.tools_dir, settings.tools)),
            boot=self._boot_warm,
            alive=lambda uid: alive(self.records.read(uid)) is not None,
            discard=self._discard_warm,
        )

    @property
    def missing_isolation(self) -> str | None:
        """What keeps workspaces from being kept apart here, in one plain sentence; None when nothing does."""
        if not self.isolated:
            return (
                f"All users share one OS account ({self.launcher.user}): a user's terminal can read and stop other users' workspaces. "
                "Run the manager as root, with os_accounts on, for an account and a sandbox per user."
            )
        if not self.launcher.sandbox.available:
            return f"Workspaces are not sandboxed ({self.launcher.sandbox.detail}): {NOT_SANDBOXED}"
        return None

    # -- paths and records ------------------------------------------------------------------
    def socket_path(self, uid: str) -> Path:
        """The engine's listening socket."""
        return self.launcher.socket_path(uid)

    @property
    def records_dir(self) -> Path:
        """Folder of the engines' runtime records (records.py)."""
        return self.records.dir

    def _forget(self, uid: str) -> int | None:
        """Remove a stopped engine's socket, record, runtime dir and groups; reap it; return its exit code."""
        record = self.records.read(uid) or {}
        child = self._children.pop(uid, None)
        code = child.poll() if child else None  # reaped first: a zombie still counts as the group's
        # A sandbox outlives its outermost bwrap (the pid recorded) when that alone was killed: its
        # first process (pid 1 of its namespace) is ended here, and everything in the namespace with it.
        for helper_record in (record.get("sandbox"), record.get("net")):
            left = alive(helper_record)
            if left is not None:
                with contextlib.suppress(psutil.Error):
                    left.kill()
        helper = self._helpers.pop(uid, None)
        if helper is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                helper.wait(timeout=2)
        if record.get("cgroups"):
            cgroups.remove(record["cgroups"])
        # run/<uid>.sock: where engines of earlier versions listened.
        for path in (self.run_dir / f"{uid}.sock", self.records.path(uid)):
            path.unlink(missing_ok=True)
        for link in map(Path, record.get("links", [])):  # the paths a pool engine booted with
            if link.is_symlink():
                give_back_paths(link)
        shutil.rmtree(record.get("runtime") or self.launcher.runtime_dir(uid), ignore_errors=True)
        shutil.rmtree(self.launcher.ssh_dir(uid), ignore_errors=True)
        return code

    # -- Backend protocol -------------------------------------------------------------------
    async def start(self, ws: WorkspaceSpec) -> Endpoint:
        """Start the engine and wait until it answers on its socket."""
        current = await self.status(ws)
        if current.state == "running" and current.endpoint:
            return current.endpoint
        self._forget(ws.uid)
        warm = self.pool.take(ws)
        if warm is not None:
            try:
                return self._hand_over(warm.spec, ws)
            except OSError as exc:
                log.warning(
                    "workspace %s/%s: could not take an engine from the warm pool (%s); starting one",
                    ws.owner,
                    ws.name,
                    exc,
                )
                self._discard_warm(warm.spec)
        proc = self._spawn(ws)  # an OSError becomes engine_start_failed (os_errors_translated)
        await self._wait_ready(ws, proc)
        return Endpoint(unix_socket=str(self.socket_path(ws.uid)))

    # -- the warm pool (pool.py) -------------------------------------------------------------
    async def _boot_warm(self, spec: WorkspaceSpec) -> None:
        proc = self._spawn(spec, {"pool": True, "root": str(spec.root)})
        await self._wait_ready(spec, proc)
        # The workbench page's first answer is slow too; the user's is not (coder.json names the pool path, see pool.py).
        await _answers(str(self.socket_path(spec.uid)), "/?folder=" + quote(str(spec.files_dir)))

    def _discard_warm(self, spec: WorkspaceSpec) -> None:
        proc = alive(self.records.read(spec.uid))
        if proc is not None:
            terminate_tree(proc, 2.0)
        self._forget(spec.uid)
        if not spec.root.is_symlink():
            shutil.rmtree(spec.root, ignore_errors=True)

    def _hand_over(self, warm: WorkspaceSpec, ws: WorkspaceSpec) -> Endpoint:
        """The warm engine becomes `ws`'s: its folder, its home files, its runtime record."""
        record = self.records.read(warm.uid)
        if record is None:
            raise OSError(f"the pool engine {warm.uid} has no record")
        proc = alive(record)
        if proc is None:
            raise OSError(f"the pool engine {warm.uid} is gone")
        # The workspace's limits, for the engine and all it started while it waited (charges made before stay where they were).
        groups = self.launcher.groups(ws)
        try:
            cgroups.enter_all(groups, [p.pid for p in process_tree(proc)])
        except OSError:
            cgroups.remove(groups)
            raise
        move_in(warm, ws)
        homefiles.write(ws.home_dir, ws.files, [])
        record = {k: v for k, v in record.items() if k not in ("pool", "root")}
        self.records.write(
            ws.uid,
            {
                **record,
                "owner": ws.owner,
                "name": ws.name,
                "runtime": str(self.launcher.runtime_dir(warm.uid)),
                "links": [str(warm.root)],
                "cgroups": groups,
                "memory_bytes": ws.limits.memory_bytes,
            },
        )
        self.records.path(warm.uid).unlink(missing_ok=True)
        child = self._children.pop(warm.uid, None)
        if child is not None:
            self._children[ws.uid] = child
        return Endpoint(unix_socket=record["socket"])

    async def close(self) -> None:
        """Stop booting pool engines (every engine keeps running for the next manager)."""
        await self.pool.close()

    def _spawn(self, ws: WorkspaceSpec, extra: dict[str, Any] | None = None) -> subprocess.Popen[bytes]:
        """Launch the engine of `ws` (launch.py), kept to be reaped."""
        proc, helper = self.launcher.spawn(ws, extra)
        self._children[ws.uid] = proc
        if helper is not None:
            self._helpers[ws.uid] = helper
        return proc

    def _out_of_memory(self, record: dict[str, Any] | None) -> str | None:
        """Why the engine must end, when its group saw an OOM kill: the sentence for `detail`."""
        if not record or not record.get("cgroups") or not cgroups.oom_kills(record["cgroups"]):
            return None
        limit = record.get("memory_bytes")
        return (
            "the engine ran out of memory"
            + (f" (its limit is {limit // (1 << 20)} MB)" if limit else "")
            + " and was killed"
        )

    async def _wait_ready(self, ws: WorkspaceSpec, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.settings.engine_start_timeout_s
        sock = str(self.socket_path(ws.uid))
        while True:
            code = proc.poll()
            if code is not None:
                oom = self._out_of_memory(self.records.read(ws.uid))
                self._forget(ws.uid)
                if oom:
                    raise BackendError(f"{oom} while starting; choose a larger size", code="out_of_memory")
                lines = tail(ws.log_file, LOG_TAIL_LINES)
                raise BackendError(
                    f"engine exited with code {code} while starting: " + " | ".join(lines[-5:]),
                    code="engine_start_failed",
                )
            # Ready means its workbench redirect answers, not just /healthz: a fresh engine's first such
            # answer takes a few hundred ms (cold code paths), paid here while starting, not by the user.
            if await _answers(sock, "/", b"302"):
                return
            if time.monotonic() > deadline:
                await self.stop(ws, timeout=2)
                raise BackendError(
                    f"engine did not answer within {self.settings.engine_start_timeout_s:.0f} s: "
                    + " | ".join(tail(ws.log_file, 5)),
                    code="engine_start_timeout",
                )
            await asyncio.sleep(READY_POLL_S)

    async def stop(self, ws: WorkspaceSpec, timeout: float) -> None:
        """Stop the engine's whole process tree: SIGINT, then SIGTERM, then SIGKILL."""
        record = self.records.read(ws.uid)
        proc = alive(record)
        if proc is not None:
            await asyncio.to_thread(terminate_tree, proc, timeout)
        self._forget(ws.uid)
        if self.isolated and record and record.get("owner"):
            await asyncio.to_thread(self._end_strays, record["owner"])

    async def write_files(self, ws: WorkspaceSpec, remove: list[str]) -> None:
        """Write the secret files into the home folder as its owner's, and delete the ones no longer wanted."""
        await asyncio.to_thread(homefiles.write, ws.home_dir, ws.files, remove)  # an OSError: secret_files_failed

    async def remove(self, ws: WorkspaceSpec, keep_files: bool) -> None:
        """Delete the workspace's folders; with keep_files its files/ stays."""
        await asyncio.to_thread(remove_workspace, ws.root, keep_files)

    async def logs(self, ws: WorkspaceSpec, lines: int) -> list[str]:
        """The tail of the engine's log file (devyard's own notes are in it too)."""
        return await asyncio.to_thread(tail, ws.log_file, lines)

    def follow(self, ws: WorkspaceSpec) -> AsyncIterator[str]:
        """What is written to the engine's log file from now on."""
        return follow(ws.log_file)

    def _end_strays(self, owner: str) -> None:
        """With the owner's last engine stopped, end what its terminals left behind (daemons escape the tree)."""
        if any(r and r.get("owner") == owner and alive(r) for r in map(self.records.read, self.records.uids())):
            return
        try:
            account = osaccounts.lookup(owner)
        except BackendError:
            return
        if account and osaccounts.kill_processes(account, self.settings.workspaces_dir):
            log.info("ended processes left running by %s after its last workspace stopped", account.name)

    async def status(self, ws: WorkspaceSpec) -> RuntimeStatus:
        """running, stopped (no record) or failed (record left by an engine that exited by itself)."""
        record = self.records.read(ws.uid)
        if record is None:
            return RuntimeStatus(uid=ws.uid, state="stopped")
        proc = alive(record)
        oom = self._out_of_memory(record)
        if proc is not None and oom is None:
            return RuntimeStatus(
                uid=ws.uid,
                state="running",
                pid=proc.pid,
                started_at=record["create_time"],
                endpoint=Endpoint(unix_socket=record["socket"]),
            )
        if proc is not None:  # cgroup v1 killed one process; the workspace ends as a whole, as under v2
            await asyncio.to_thread(terminate_tree, proc, 2.0)
            if (
                self.records.read(ws.uid) != record
            ):  # started again meanwhile: the new engine's record is not ours to remove
                return await self.status(ws)
        code = self._forget(ws.uid)
        if oom:
            return RuntimeStatus(uid=ws.uid, state="failed", exit_code=code, detail=oom, reason="out_of_memory")
        return RuntimeStatus(uid=ws.uid, state="failed", exit_code=code, detail="the engine exited by itself")

    async def stats(self, ws: WorkspaceSpec) -> Stats:
        """CPU over a short sample, RSS and uptime of the engine tree; disk use of the workspace."""
        proc = alive(self.records.read(ws.uid))
        cpu, rss, uptime, cpu_seconds = await asyncio.to_thread(sample_tree, proc)
        disk = await asyncio.to_thread(disk_usage, ws.root)
        return Stats(cpu_percent=cpu, memory_bytes=rss, uptime_s=uptime, disk_bytes=disk, cpu_seconds=cpu_seconds)

    async def listening_ports(self, ws: WorkspaceSpec) -> list[int] | None:
        """What the engine's process tree listens on, read from /proc in its own network namespace."""
        return await asyncio.to_thread(listening_ports, alive(self.records.read(ws.uid)))

    async def run_once(self, ws: WorkspaceSpec, command: str, timeout_s: float) -> int:
        """Run `command` as the workspace's account, in a sandbox like its engine's; output to its log."""
        return await asyncio.to_thread(self.launcher.run_once, ws, command, timeout_s)

    async def build_image(self, ws: WorkspaceSpec, build: Build, say: Callable[[str], None]) -> str:
        """Not here: engines run on this host's own system, where no image applies."""
        raise NotOnThisBackend("the local backend runs no images, so it builds none", code="not_on_this_backend")

    def ssh_login(self, ws: WorkspaceSpec) -> str:
        """The workspace's account, when workspaces here serve SSH."""
        if self.launcher.ssh_missing is not None:
            raise BackendError(self.launcher.ssh_missing, code="ssh_unavailable")
        return osaccounts.account_name(ws.owner)

    async def ssh(self, ws: WorkspaceSpec) -> Channel:
        """sshd for one connection, entered into the running engine's sandbox as its account (local_ssh.py)."""
        self.ssh_login(ws)
        return await local_ssh.connect(ws, self.records.read(ws.uid), self.launcher.ssh_dir(ws.uid))

    async def adopt(self) -> list[RuntimeStatus]:
        """Engines left running by an earlier manager, found from run/*.json; stale records are removed."""
        self.launcher.protect_run_dir()
        found: list[RuntimeStatus] = []
        for uid in self.records.uids():
            record = self.records.read(uid)
            proc = alive(record)
            if record and record.get("pool"):
                if proc is None or not self.pool.size:
                    self._discard_warm(WorkspaceSpec(uid=uid, owner="", name="", root=Path(record["root"])))
                else:
                    self.pool.adopt(uid, record)
                continue
            if proc is None or record is None:
                self._forget(uid)
                continue
            found.append(
                RuntimeStatus(
                    uid=uid,
                    state="running",
                    pid=proc.pid,
                    started_at=record["create_time"],
                    endpoint=Endpoint(unix_socket=record["socket"]),
                )
            )
        self.pool.fill()
        return found


async def _answers(sock: str, path: str = "/healthz", status: bytes = b"200") -> bool:
    """Whether an HTTP server answers GET `path` on the unix socket `sock` with `status`."""
    try:
        reader, writer = await asyncio.open_unix_connection(sock)
    except OSError:
        return False
    try:
        writer.write(b"GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % path.encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout=5)
        return line.startswith(b"HTTP/1.1 " + status)
    except (TimeoutError, OSError):
        return False
    finally:
        writer.close()
