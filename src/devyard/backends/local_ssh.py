"""One SSH connection into a local workspace: sshd entered into its running sandbox, as its account.

Root enters the namespaces of the sandbox's first process (network, mounts, processes, IPC, host
name: `nsenter`), joins the engine's control groups (its limits count the session too), drops to
the workspace's account with no capabilities and no way to gain any (`setpriv`, as the engine
itself was), and execs `sshd -i` on the files ssh/server.py wrote. Everything the session starts
descends from that process, so ending the connection ends its tree.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import psutil

from devyard import osaccounts
from devyard.backends import sandbox
from devyard.backends.base import Channel, WorkspaceSpec
from devyard.backends.records import Record, alive
from devyard.errors import BackendError
from devyard.processes import terminate_tree
from devyard.ssh import server

END_TIMEOUT_S = 2.0
READ_LIMIT = 1 << 20  # what sshd's output may buffer before it waits: bulk copies (scp) move in large reads
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def argv(sandbox_pid: int, ws: WorkspaceSpec, account: osaccounts.Account, folder: Path) -> list[str]:
    """The command line that runs the workspace's sshd for one connection inside its sandbox."""
    return [
        "nsenter",
        f"--target={sandbox_pid}",
        "--net",
        "--mount",
        "--pid",
        "--ipc",
        "--uts",
        # The target's own root and working folder, opened through /proc/<pid>: both inside the
        # sandbox (a path named here would be opened in the host's tree, outside its root).
        "--root",
        "--wd",
        "--",
        *sandbox.as_account(account, server.argv(folder)),
    ]


def joined(groups: list[str], command: list[str]) -> list[str]:
    """`command` started from inside the engine's control groups: a shell moves itself there, then becomes it.

    (A preexec_fn would do it in the forked child, which CPython calls unsafe in a process with threads.)
    """
    if not groups:
        return command
    script = (
        'for g in "$@"; do [ "$g" = -- ] && break; echo $$ > "$g/cgroup.procs" || exit 1; shift; done; shift; exec "$@"'
    )
    return ["/bin/sh", "-c", script, "devyard-ssh", *groups, "--", *command]


async def connect(ws: WorkspaceSpec, record: Record | None, folder: Path) -> Channel:
    """A new sshd for one connection to the running workspace `ws`; BackendError when it is not running or has no SSH."""
    engine = alive(record)
    sandbox = alive(record.get("sandbox")) if record else None
    if record is None or engine is None:
        raise BackendError(f"workspace {ws.owner}/{ws.name} is not running", code="workspace_not_running")
    if sandbox is None or not (folder / "sshd_config").is_file():
        raise BackendError(
            f"workspace {ws.owner}/{ws.name} was started before SSH was set up here; restart it to connect over SSH",
            code="ssh_unavailable",
        )
    account = osaccounts.ensure(ws.owner)
    log = ws.log_file.open("ab")
    try:
        proc = await asyncio.create_subprocess_exec(
            *joined(list(record.get("cgroups") or []), argv(sandbox.pid, ws, account, folder)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env=ENV,
            cwd="/",
            start_new_session=True,
            limit=READ_LIMIT,
        )
    finally:
        log.close()
    assert proc.stdin is not None and proc.stdout is not None

    async def end() -> None:
        if proc.returncode is None:
            try:
                await asyncio.to_thread(terminate_tree, psutil.Process(proc.pid), END_TIMEOUT_S)
            except psutil.NoSuchProcess:
                pass
        await proc.wait()

    return Channel(proc.stdout, proc.stdin, end)
