"""Launching one engine process for the local backend (local.py): its folders, command line, limits and sandbox.

A launch makes (or repairs) the workspace's folders and a fresh private runtime folder, builds the
engine's command line and environment, makes its control groups with its size's limits
(cgroups.py), then starts it detached: in a sandbox of its own as the user's account (sandbox.py)
where the host allows, else as a plain child in a session of its own. Its runtime record
(records.py) is written once it runs. Staying, looking after and ending engines is local.py's.

run/<uid>/ is the engine's private runtime folder, made fresh at each start: its listening socket
(engine.sock, the only place it listens), VS Code's IPC sockets and code-server's session socket,
kept short because a socket path may not pass 107 bytes.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, BinaryIO

import psutil

from devyard import osaccounts
from devyard.backends import cgroups, homefiles, sandbox
from devyard.backends.base import WorkspaceSpec
from devyard.backends.records import Records, identity
from devyard.config import Settings
from devyard.engine import install, publish
from devyard.engine.command import ENGINE_CONFIG, engine_argv, engine_env, policy_flags
from devyard.errors import BackendError, Invalid
from devyard.origins import engine_proxy_uri
from devyard.osaccounts import Account
from devyard.processes import terminate_tree
from devyard.provision import devcontainer
from devyard.ssh import server as ssh_server
from devyard.ssh.keys import Authority, Lazy

log = logging.getLogger("devyard")

NOT_SANDBOXED = (
    "a user's terminal can reach other users' ports and this host's services on localhost, and see other users' "
    "processes and /tmp"
)
# sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH = 107
TIMED_OUT = 124  # run_once's status for a command stopped at its time limit, as timeout(1) says it


class Launcher:
    """How engines are launched on this machine: what the host offers (control groups, a sandbox), found once."""

    def __init__(self, settings: Settings, records: Records) -> None:
        self.settings = settings
        self.run_dir = settings.run_dir
        self.records = records
        self.isolated = settings.isolated
        if self.isolated:
            check_isolation(settings)
        self.cgroups = cgroups.detect()
        self.user = pwd_name(os.geteuid())
        self.proxy_uri = engine_proxy_uri(settings)  # workspaces on origins of their own: ports too, at the root path
        self.sandbox = sandbox.detect(settings)
        if settings.sandbox == "on" and not self.sandbox.available:
            raise Invalid(
                f"sandbox: on, but engines cannot be sandboxed here: {self.sandbox.detail}", code="sandbox_unavailable"
            )
        if self.isolated and not self.sandbox.available:
            log.warning("workspaces are NOT sandboxed (%s): %s", self.sandbox.detail, NOT_SANDBOXED)
        # Read by every engine, changed by none: root's, outside any tenant's folder (written at the first start).
        self.engine_config, self.resolv_conf = self.run_dir / "code-server.yaml", self.run_dir / "resolv.conf"
        self.ssh_missing = self._ssh_missing()
        self.keys = Lazy(settings.secrets_dir)

    @property
    def authority(self) -> Authority | None:
        """Signs the workspaces' SSH host keys (loaded at the first start); None where workspaces take no SSH."""
        if self.ssh_missing is not None:
            return None
        found = self.keys.get()
        self.ssh_missing = self.keys.off
        return found

    def _ssh_missing(self) -> str | None:
        """Why workspaces here cannot serve SSH, in a sentence; None when they can (ssh/server.py)."""
        if not self.isolated or not self.sandbox.available:
            # Unsandboxed, `ssh -L` would reach this host's loopback: the manager, other users' ports.
            return "SSH needs each workspace in a sandbox of its own (run the manager as root with os_accounts and bubblewrap)"
        return ssh_server.available()

    def ssh_dir(self, uid: str) -> Path:
        """The workspace's sshd files: root's, readable by its account, bound read-only into its sandbox."""
        return self.run_dir / f"{uid}.ssh"

    def socket_path(self, uid: str) -> Path:
        """The engine's listening socket."""
        return self.runtime_dir(uid) / "engine.sock"

    def runtime_dir(self, uid: str) -> Path:
        """Private 0700 folder: VS Code's IPC sockets and the engine's session socket."""
        return self.run_dir / uid

    def spawn(
        self, ws: WorkspaceSpec, extra: dict[str, Any] | None = None
    ) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes] | None]:
        """Start the engine of `ws` and write its runtime record (with `extra`); the engine's process and its sandbox's network helper."""
        engine = install.require(self.settings.engine_dir)
        sock = self.socket_path(ws.uid)
        session_sock = self.runtime_dir(ws.uid) / "session.sock"
        if len(str(session_sock)) > MAX_SOCKET_PATH:
            raise BackendError(
                f"socket path {session_sock} is longer than {MAX_SOCKET_PATH} bytes; use a shorter --data-dir",
                code="socket_path_too_long",
            )
        account = osaccounts.ensure(ws.owner) if self.isolated else None
        if account:
            engine = publish.for_accounts(engine)
        runtime = self.prepare(ws, account)
        argv = engine_argv(
            engine,
            socket=sock,
            folder=ws.files_dir,
            user_data=ws.data_dir,
            extensions=ws.extensions_dir,
            config=self.engine_config,
            base_path=ws.base_path if ws.owner and self.proxy_uri is None else "/",
            session_socket=session_sock,
            policies=policy_flags(
                disable_file_downloads=self.settings.disable_file_downloads,
                disable_file_uploads=self.settings.disable_file_uploads,
                reconnection_grace_s=self.settings.reconnection_grace_s,
            ),
        )
        env = self.environment(ws, engine, runtime, account)
        homefiles.write(ws.home_dir, ws.files, [])
        if account is not None and self.authority is not None:
            ssh_server.write(
                self.ssh_dir(ws.uid),
                self.authority,
                uid=ws.uid,
                owner=ws.owner,
                name=ws.name,
                account=account,
                files_dir=ws.files_dir,
                env=env,
                agent_forwarding=self.settings.ssh_agent_forwarding,
            )
        if ws.post_start:
            argv = with_post_start(ws.post_start, argv)
        groups = self.groups(ws)
        net: dict[str, Any] = {}
        helper: subprocess.Popen[bytes] | None = None
        with ws.log_file.open("ab") as log:
            log.write(
                f"--- devyard: starting code-server {engine.version} at {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode()
            )
            if (ws.limits.memory_bytes or ws.limits.cpus) and not self.cgroups.available:
                log.write(
                    f"--- devyard: memory and CPU limits are NOT enforced on this host: {self.cgroups.detail} ---\n".encode()
                )
            if account and not self.sandbox.available:
                log.write(f"--- devyard: NOT sandboxed ({self.sandbox.detail}): {NOT_SANDBOXED} ---\n".encode())
            log.flush()
            try:
                proc, started = self._launch(argv, ws, runtime, account, env, log, groups)
                if started is not None:
                    helper = started.net
                    net = {"net": identity(started.net.pid), "sandbox": identity(started.pids[1])}
            except OSError as exc:
                cgroups.remove(groups)
                raise BackendError(
                    f"could not start the engine in its control groups: {exc}", code="limits_failed"
                ) from exc
            except BackendError:
                cgroups.remove(groups)
                raise
        create_time = psutil.Process(proc.pid).create_time()
        self.records.write(
            ws.uid,
            {
                "pid": proc.pid,
                "create_time": create_time,
                "socket": str(sock),
                "owner": ws.owner,
                "name": ws.name,
                "cgroups": groups,
                "memory_bytes": ws.limits.memory_bytes,
                **net,
                **(extra or {}),
            },
        )
        return proc, helper

    def _launch(
        self,
        argv: list[str],
        ws: WorkspaceSpec,
        runtime: Path,
        account: Account | None,
        env: dict[str, str],
        log: BinaryIO,
        groups: list[str],
    ) -> tuple[subprocess.Popen[bytes], sandbox.Started | None]:
        """Start `argv` as the workspace's account, in a sandbox where one can run, in control `groups`; the process and its sandbox."""
        if account and self.sandbox.available:
            started = sandbox.launch(
                argv,
                account=account,
                layout=self.layout(ws, runtime),
                deny=self.deny,
                env=env,
                output=log,
                before_release=lambda pids: cgroups.enter_all(groups, pids),
            )
            return started.proc, started
        proc = subprocess.Popen(
            argv,
            cwd=ws.files_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            **osaccounts.popen_args(account),
        )
        try:
            # At once, before the engine (still loading node) starts any process of its own.
            cgroups.enter_all(groups, [proc.pid])
        except OSError:
            proc.kill()
            proc.wait()
            raise
        return proc, None

    def environment(
        self, ws: WorkspaceSpec, engine: install.Engine, runtime: Path, account: Account | None
    ) -> dict[str, str]:
        """The variables the engine and its terminals get: the engine's, the devcontainer.json's, the owner's secrets."""
        env = engine_env(engine, home=ws.home_dir, runtime_dir=runtime, extra=self.settings.engine_env)
        if self.proxy_uri is not None:
            env["VSCODE_PROXY_URI"] = self.proxy_uri
        if ws.path:
            env["PATH"] = os.pathsep.join([*ws.path, env["PATH"]])
        given = dict(env)
        env.update({name: devcontainer.expand(value, given) for name, value in ws.container_env.items()})
        env.update(ws.env)
        env.update(USER=account.name if account else self.user, LOGNAME=account.name if account else self.user)
        return env

    def run_once(self, ws: WorkspaceSpec, command: str, timeout_s: float) -> int:
        """Run a shell command as the workspace's account, in a sandbox and limits like its engine's; its exit status (output: the log)."""
        engine = install.require(self.settings.engine_dir)
        account = osaccounts.ensure(ws.owner) if self.isolated else None
        if account:
            engine = publish.for_accounts(engine)
        runtime = self.prepare(ws, account)
        env = self.environment(ws, engine, runtime, account)
        groups = self.groups(ws)  # the engine is not running: its groups hold the command instead
        with ws.log_file.open("ab") as log:
            try:
                proc, started = self._launch(["/bin/sh", "-c", command], ws, runtime, account, env, log, groups)
            except BaseException:
                cgroups.remove(groups)
                raise
            net = started.net if started is not None else None
            try:
                return proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                terminate_tree(psutil.Process(proc.pid), timeout=5)
                proc.wait()
                log.write(f"--- devyard: stopped after {timeout_s:.0f} s ---\n".encode())
                return TIMED_OUT
            finally:
                if net is not None:
                    net.wait(timeout=10)  # slirp4netns ends with the sandbox
                cgroups.remove(groups)

    def layout(self, ws: WorkspaceSpec, runtime: Path) -> sandbox.Layout:
        """What the engine of `ws` sees of this host's files in its sandbox."""
        readonly = [(self.engine_config, self.engine_config), (self.resolv_conf, Path("/etc/resolv.conf"))]
        ssh = self.ssh_dir(ws.uid)
        if self.authority is not None and (ssh / "sshd_config").is_file():
            readonly += [(ssh, ssh), (ssh / "passwd", Path("/etc/passwd")), (ssh / "group", Path("/etc/group"))]
        return sandbox.Layout(
            hidden=self.settings.data_dir,
            writable=[ws.files_dir, ws.home_dir, ws.data_dir, ws.extensions_dir, runtime],
            readonly=readonly,
            hostname=ws.name or "workspace",
            tmpfs_bytes=ws.limits.memory_bytes or sandbox.TMPFS_BYTES,
            chdir=ws.files_dir,
        )

    @property
    def deny(self) -> list[str]:
        """Networks no sandboxed engine may reach (computed at each start: the host's addresses may change)."""
        return sandbox.denied_networks(self.settings.sandbox_deny_networks)

    def groups(self, ws: WorkspaceSpec) -> list[str]:
        """The engine's control groups, made with its limits; none without limits or where the host has none."""
        if not (ws.limits.memory_bytes or ws.limits.cpus or ws.limits.pids_max) or not self.cgroups.available:
            return []
        try:
            return cgroups.create(self.cgroups, ws.uid, ws.limits)
        except OSError as exc:
            raise BackendError(
                f"could not apply the workspace's limits ({self.cgroups.detail}): {exc}", code="limits_failed"
            ) from exc

    def prepare(self, ws: WorkspaceSpec, account: Account | None) -> Path:
        """Make (or repair) the folders an engine needs, owned and protected as its mode requires; the runtime folder."""
        self.protect_run_dir()
        sandbox.write_shared_files(self.run_dir, ENGINE_CONFIG)
        osaccounts.prepare_folders(ws, account, self.settings.workspaces_dir)
        # A fresh runtime folder each start, made by the manager in run/ (root's, 0711): nothing the
        # tenant left in the last one (a planted link) is there to be written through.
        runtime = self.runtime_dir(ws.uid)
        shutil.rmtree(runtime, ignore_errors=True)
        os.mkdir(runtime, 0o700)
        if account is not None:
            os.chown(runtime, account.uid, account.gid, follow_symlinks=False)
        return runtime

    def protect_run_dir(self) -> None:
        """run/ lets engines' accounts through to their own folders (never list it); records stay private."""
        self.records.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.run_dir, 0o711 if self.isolated else 0o700)
        os.chmod(self.records.dir, 0o700)


def check_isolation(settings: Settings) -> None:
    """Refuse to run isolated engines where they cannot be: without root, or below a private folder."""
    if os.geteuid() != 0:
        raise Invalid(
            "os_accounts: on needs the manager to run as root (engines switch to per-user accounts); "
            "run as root or set os_accounts: off",
            code="os_accounts_need_root",
        )
    blocker = osaccounts.traversal_blocker(settings.data_dir)
    if blocker is not None:
        raise Invalid(
            f"engines run as per-user accounts cannot reach {settings.data_dir}: {blocker} is closed to other accounts "
            f"(mode {blocker.stat().st_mode & 0o777:o}); use a data dir such as /var/lib/devyard, or set os_accounts: off",
            code="data_dir_not_reachable",
        )


def with_post_start(command: str, argv: list[str]) -> list[str]:
    """`argv` started by a shell that first runs `command` beside it (devcontainer.json's postStartCommand).

    The shell then becomes the engine (exec): the engine keeps its pid, and the command runs in the
    same sandbox, as the same account, with its output and exit status in the engine's log.
    """
    script = (
        'echo "--- devyard: postStartCommand ---"; '
        '( /bin/sh -c "$0"; echo "--- devyard: postStartCommand exited with status $? ---" ) & exec "$@"'
    )
    return ["/bin/sh", "-c", script, command, *argv]


def pwd_name(uid: int) -> str:
    """The user name of `uid` (the number when it has none)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
