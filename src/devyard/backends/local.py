"""The local backend: one engine process per workspace on this machine.

Engines start in their own session (process group) with stdout/stderr going to a log file, never
a pipe into the manager, so they outlive a manager crash or restart and are adopted by the next
one. What the manager must know to find them again is on disk, not in memory (records.py).
run/<uid>/ is the engine's private runtime folder, made fresh at each start: its listening socket
(engine.sock, the only place it listens), VS Code's IPC sockets and code-server's session socket,
kept short because a socket path may not pass 107 bytes. The gateway checks who listens there
(gateway/http.py): the folder is its tenant's.

Every engine runs in control groups of its own with its size's limits (cgroups.py); where the host
has none to give, the engine runs unlimited and its log and `devyard doctor` say so.

Run as root (os_accounts: auto), each user's engines run as that user's system account (see
accounts.py), each in a sandbox of its own (sandbox.py): their files, home, settings, extensions
and runtime folder belong to it with mode 0700, the folders above them let it pass but not look,
and the manager's own state stays 0700.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil

from devyard.backends import accounts, cgroups, homefiles, sandbox
from devyard.backends.accounts import Account
from devyard.backends.base import Endpoint, RuntimeStatus, Stats, WorkspaceSpec
from devyard.backends.pool import WarmPool, give_back_paths, move_in
from devyard.backends.records import Records, alive, identity
from devyard.config import Settings
from devyard.engine import install, publish
from devyard.engine.command import ENGINE_CONFIG, engine_argv, engine_env, policy_flags
from devyard.errors import BackendError, DevyardError, Invalid
from devyard.paths import disk_usage, remove_workspace
from devyard.logfiles import follow, tail
from devyard.origins import engine_proxy_uri
from devyard.processes import listening_ports, process_tree, sample_tree, terminate_tree
from devyard.provision import tools as provision_tools

log = logging.getLogger("devyard")

NOT_SANDBOXED = ("a user's terminal can reach other users' ports and this host's services on localhost, and see other users' "
                 "processes and /tmp")
# sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH = 107
READY_POLL_S = 0.02
LOG_TAIL_LINES = 20


class LocalBackend:
    """Engines as detached child processes listening on unix sockets under <data_dir>/run."""

    local_files = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.run_dir = settings.run_dir
        self.records = Records(self.run_dir)
        self.isolated = settings.isolated
        if self.isolated:
            check_isolation(settings)
        # Popen objects of engines (and their sandboxes' network helpers) this manager started, kept to reap them (no zombies).
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._helpers: dict[str, subprocess.Popen[bytes]] = {}
        self.cgroups = cgroups.detect()
        self.user = pwd_name(os.geteuid())
        self.proxy_uri = engine_proxy_uri(settings)  # workspaces on origins of their own: ports too, at the root path
        self.sandbox = sandbox.detect(settings)
        if settings.sandbox == "on" and not self.sandbox.available:
            raise Invalid(f"sandbox: on, but engines cannot be sandboxed here: {self.sandbox.detail}", code="sandbox_unavailable")
        if self.isolated and not self.sandbox.available:
            log.warning("workspaces are NOT sandboxed (%s): %s", self.sandbox.detail, NOT_SANDBOXED)
        # Read by every engine, changed by none: root's, outside any tenant's folder (written at the first start).
        self.engine_config, self.resolv_conf = self.run_dir / "code-server.yaml", self.run_dir / "resolv.conf"
        size = settings.pool.size
        if size and self.isolated:
            log.warning("the warm pool is off: engines run as each user's own account here (os_accounts), unknown before a workspace exists")
            size = 0
        self.pool = WarmPool(size, settings.data_dir / "pool", tuple(provision_tools.bin_dirs(settings.tools_dir, settings.tools)),
                             boot=self._boot_warm, alive=lambda uid: alive(self.records.read(uid)) is not None, discard=self._discard_warm)

    @property
    def missing_isolation(self) -> str | None:
        """What keeps workspaces from being kept apart here, in one plain sentence; None when nothing does."""
        if not self.isolated:
            return (f"All users share one OS account ({self.user}): a user's terminal can read and stop other users' workspaces. "
                    "Run the manager as root, with os_accounts on, for an account and a sandbox per user.")
        if not self.sandbox.available:
            return f"Workspaces are not sandboxed ({self.sandbox.detail}): {NOT_SANDBOXED}"
        return None

    # -- paths and records ------------------------------------------------------------------
    def socket_path(self, uid: str) -> Path:
        """The engine's listening socket."""
        return self._runtime_dir(uid) / "engine.sock"

    @property
    def records_dir(self) -> Path:
        """Folder of the engines' runtime records (records.py)."""
        return self.records.dir

    def _runtime_dir(self, uid: str) -> Path:
        """Private 0700 folder: VS Code's IPC sockets and the engine's session socket."""
        return self.run_dir / uid

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
        shutil.rmtree(record.get("runtime") or self._runtime_dir(uid), ignore_errors=True)
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
                log.warning("workspace %s/%s: could not take an engine from the warm pool (%s); starting one", ws.owner, ws.name, exc)
                self._discard_warm(warm.spec)
        try:
            proc = self._spawn(ws)
        except DevyardError:
            raise
        except OSError as exc:
            raise BackendError(f"could not start the engine: {exc}", code="engine_start_failed") from exc
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
        groups = self._groups(ws)
        try:
            cgroups.enter_all(groups, [p.pid for p in process_tree(proc)])
        except OSError:
            cgroups.remove(groups)
            raise
        move_in(warm, ws)
        homefiles.write(ws.home_dir, ws.files, [])
        record = {k: v for k, v in record.items() if k not in ("pool", "root")}
        self.records.write(ws.uid, {**record, "owner": ws.owner, "name": ws.name, "runtime": str(self._runtime_dir(warm.uid)),
                                    "links": [str(warm.root)], "cgroups": groups, "memory_bytes": ws.limits.memory_bytes})
        self.records.path(warm.uid).unlink(missing_ok=True)
        child = self._children.pop(warm.uid, None)
        if child is not None:
            self._children[ws.uid] = child
        return Endpoint(unix_socket=record["socket"])

    async def close(self) -> None:
        """Stop booting pool engines (every engine keeps running for the next manager)."""
        await self.pool.close()

    def _spawn(self, ws: WorkspaceSpec, extra: dict[str, Any] | None = None) -> subprocess.Popen[bytes]:
        engine = install.require(self.settings.engine_dir)
        sock = self.socket_path(ws.uid)
        session_sock = self._runtime_dir(ws.uid) / "session.sock"
        if len(str(session_sock)) > MAX_SOCKET_PATH:
            raise BackendError(
                f"socket path {session_sock} is longer than {MAX_SOCKET_PATH} bytes; use a shorter --data-dir",
                code="socket_path_too_long",
            )
        account = accounts.ensure(ws.owner) if self.isolated else None
        if account:
            engine = publish.for_accounts(engine)
        runtime = self._prepare(ws, account)
        argv = engine_argv(
            engine, socket=sock, folder=ws.files_dir, user_data=ws.data_dir, extensions=ws.extensions_dir,
            config=self.engine_config, base_path=ws.base_path if ws.owner and self.proxy_uri is None else "/", session_socket=session_sock,
            policies=policy_flags(disable_file_downloads=self.settings.disable_file_downloads, disable_file_uploads=self.settings.disable_file_uploads,
                                  reconnection_grace_s=self.settings.reconnection_grace_s),
        )
        env = engine_env(engine, home=ws.home_dir, runtime_dir=runtime, extra=self.settings.engine_env)
        if self.proxy_uri is not None:
            env["VSCODE_PROXY_URI"] = self.proxy_uri
        env.update(ws.env)
        if ws.path:
            env["PATH"] = os.pathsep.join([*ws.path, env["PATH"]])
        homefiles.write(ws.home_dir, ws.files, [])
        env.update(USER=account.name if account else self.user, LOGNAME=account.name if account else self.user)
        groups = self._groups(ws)
        net: dict[str, Any] = {}
        with ws.log_file.open("ab") as log:
            log.write(f"--- devyard: starting code-server {engine.version} at {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
            if (ws.limits.memory_bytes or ws.limits.cpus) and not self.cgroups.available:
                log.write(f"--- devyard: memory and CPU limits are NOT enforced on this host: {self.cgroups.detail} ---\n".encode())
            if account and not self.sandbox.available:
                log.write(f"--- devyard: NOT sandboxed ({self.sandbox.detail}): {NOT_SANDBOXED} ---\n".encode())
            log.flush()
            try:
                if account and self.sandbox.available:
                    started = sandbox.launch(argv, account=account, layout=self._layout(ws, runtime), deny=self.deny, env=env, output=log,
                                             before_release=lambda pids: cgroups.enter_all(groups, pids))
                    proc = started.proc
                    self._helpers[ws.uid] = started.net
                    net = {"net": identity(started.net.pid), "sandbox": identity(started.pids[1])}
                else:
                    proc = subprocess.Popen(argv, cwd=ws.files_dir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True, close_fds=True, **accounts.popen_args(account))
                    try:
                        # At once, before the engine (still loading node) starts any process of its own.
                        cgroups.enter_all(groups, [proc.pid])
                    except OSError:
                        proc.kill()
                        proc.wait()
                        raise
            except OSError as exc:
                cgroups.remove(groups)
                raise BackendError(f"could not start the engine in its control groups: {exc}", code="limits_failed") from exc
            except BackendError:
                cgroups.remove(groups)
                raise
        self._children[ws.uid] = proc
        create_time = psutil.Process(proc.pid).create_time()
        self.records.write(ws.uid, {"pid": proc.pid, "create_time": create_time, "socket": str(sock), "owner": ws.owner, "name": ws.name,
                                    "cgroups": groups, "memory_bytes": ws.limits.memory_bytes, **net, **(extra or {})})
        return proc

    def _layout(self, ws: WorkspaceSpec, runtime: Path) -> sandbox.Layout:
        """What the engine of `ws` sees of this host's files in its sandbox."""
        return sandbox.Layout(
            hidden=self.settings.data_dir, writable=[ws.files_dir, ws.home_dir, ws.data_dir, ws.extensions_dir, runtime],
            readonly=[(self.engine_config, self.engine_config), (self.resolv_conf, Path("/etc/resolv.conf"))],
            hostname=ws.name or "workspace", tmpfs_bytes=ws.limits.memory_bytes or sandbox.TMPFS_BYTES, chdir=ws.files_dir)

    @property
    def deny(self) -> list[str]:
        """Networks no sandboxed engine may reach (computed at each start: the host's addresses may change)."""
        return sandbox.denied_networks(self.settings.sandbox_deny_networks)

    def _groups(self, ws: WorkspaceSpec) -> list[str]:
        """The engine's control groups, made with its limits; none without limits or where the host has none."""
        if not (ws.limits.memory_bytes or ws.limits.cpus or ws.limits.pids_max) or not self.cgroups.available:
            return []
        try:
            return cgroups.create(self.cgroups, ws.uid, ws.limits)
        except OSError as exc:
            raise BackendError(f"could not apply the workspace's limits ({self.cgroups.detail}): {exc}", code="limits_failed") from exc

    def _out_of_memory(self, record: dict[str, Any] | None) -> str | None:
        """Why the engine must end, when its group saw an OOM kill: the sentence for `detail`."""
        if not record or not record.get("cgroups") or not cgroups.oom_kills(record["cgroups"]):
            return None
        limit = record.get("memory_bytes")
        return "the engine ran out of memory" + (f" (its limit is {limit // (1 << 20)} MB)" if limit else "") + " and was killed"

    def _prepare(self, ws: WorkspaceSpec, account: Account | None) -> Path:
        """Make (or repair) the folders an engine needs, owned and protected as its mode requires; the runtime folder."""
        self._protect_run_dir()
        sandbox.write_shared_files(self.run_dir, ENGINE_CONFIG)
        accounts.prepare_folders(ws, account, self.settings.workspaces_dir)
        # A fresh runtime folder each start, made by the manager in run/ (root's, 0711): nothing the
        # tenant left in the last one (a planted link) is there to be written through.
        runtime = self._runtime_dir(ws.uid)
        shutil.rmtree(runtime, ignore_errors=True)
        os.mkdir(runtime, 0o700)
        if account is not None:
            os.chown(runtime, account.uid, account.gid, follow_symlinks=False)
        return runtime

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
                raise BackendError(f"engine exited with code {code} while starting: " + " | ".join(lines[-5:]), code="engine_start_failed")
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
        try:
            await asyncio.to_thread(homefiles.write, ws.home_dir, ws.files, remove)
        except OSError as exc:
            raise BackendError(f"could not write secret files into {ws.home_dir}: {exc.strerror}", code="secret_files_failed") from exc

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
            account = accounts.lookup(owner)
        except BackendError:
            return
        if account and accounts.kill_processes(account, self.settings.workspaces_dir):
            log.info("ended processes left running by %s after its last workspace stopped", account.name)

    def _protect_run_dir(self) -> None:
        """run/ lets engines' accounts through to their own folders (never list it); records stay private."""
        self.records_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.run_dir, 0o711 if self.isolated else 0o700)
        os.chmod(self.records_dir, 0o700)

    async def status(self, ws: WorkspaceSpec) -> RuntimeStatus:
        """running, stopped (no record) or failed (record left by an engine that exited by itself)."""
        record = self.records.read(ws.uid)
        if record is None:
            return RuntimeStatus(uid=ws.uid, state="stopped")
        proc = alive(record)
        oom = self._out_of_memory(record)
        if proc is not None and oom is None:
            return RuntimeStatus(
                uid=ws.uid, state="running", pid=proc.pid, started_at=record["create_time"],
                endpoint=Endpoint(unix_socket=record["socket"]),
            )
        if proc is not None:  # cgroup v1 killed one process; the workspace ends as a whole, as under v2
            await asyncio.to_thread(terminate_tree, proc, 2.0)
            if self.records.read(ws.uid) != record:  # started again meanwhile: the new engine's record is not ours to remove
                return await self.status(ws)
        code = self._forget(ws.uid)
        if oom:
            return RuntimeStatus(uid=ws.uid, state="failed", exit_code=code, detail=oom, reason="out_of_memory")
        return RuntimeStatus(uid=ws.uid, state="failed", exit_code=code, detail="the engine exited by itself")

    async def stats(self, ws: WorkspaceSpec) -> Stats:
        """CPU over a short sample, RSS and uptime of the engine tree; disk use of the workspace."""
        proc = alive(self.records.read(ws.uid))
        cpu, rss, uptime = await asyncio.to_thread(sample_tree, proc)
        disk = await asyncio.to_thread(disk_usage, ws.root)
        return Stats(cpu_percent=cpu, memory_bytes=rss, uptime_s=uptime, disk_bytes=disk)

    async def listening_ports(self, ws: WorkspaceSpec) -> list[int] | None:
        """What the engine's process tree listens on, read from /proc in its own network namespace."""
        return await asyncio.to_thread(listening_ports, alive(self.records.read(ws.uid)))

    async def adopt(self) -> list[RuntimeStatus]:
        """Engines left running by an earlier manager, found from run/*.json; stale records are removed."""
        self._protect_run_dir()
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
            found.append(RuntimeStatus(uid=uid, state="running", pid=proc.pid, started_at=record["create_time"],
                                       endpoint=Endpoint(unix_socket=record["socket"])))
        self.pool.fill()
        return found


def check_isolation(settings: Settings) -> None:
    """Refuse to run isolated engines where they cannot be: without root, or below a private folder."""
    if os.geteuid() != 0:
        raise Invalid("os_accounts: on needs the manager to run as root (engines switch to per-user accounts); "
                      "run as root or set os_accounts: off", code="os_accounts_need_root")
    blocker = accounts.traversal_blocker(settings.data_dir)
    if blocker is not None:
        raise Invalid(
            f"engines run as per-user accounts cannot reach {settings.data_dir}: {blocker} is closed to other accounts "
            f"(mode {blocker.stat().st_mode & 0o777:o}); use a data dir such as /var/lib/devyard, or set os_accounts: off",
            code="data_dir_not_reachable",
        )


def pwd_name(uid: int) -> str:
    """The user name of `uid` (the number when it has none)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


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
    except (OSError, asyncio.TimeoutError):
        return False
    finally:
        writer.close()
