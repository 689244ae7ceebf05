"""A sandbox of its own for each local engine: bubblewrap namespaces and slirp4netns user-mode networking.

Per-user accounts keep one tenant out of another's files; they do not keep a terminal off the
host's loopback (another user's dev server, the manager's port, a local PostgreSQL), out of `ps`,
or out of a shared /tmp. So each engine runs in namespaces of its own, set up by bubblewrap (`bwrap`,
Debian's `bubblewrap`, what Flatpak uses) run by root without a user namespace: the namespaces then
belong to the host's, and nothing inside, dropped to the workspace's account with no capabilities
(`setpriv`), can change them.

- **network**: a namespace of its own, reaching out through slirp4netns (Debian's, what rootless
  podman used), which opens connections from the host on its behalf: egress works (git, pip, npm),
  while `--disable-host-loopback` keeps the host's loopback out, and `prohibit` routes inside the
  namespace keep out link-local addresses (cloud metadata), the host's own addresses and any
  `sandbox_deny_networks`. Another workspace has no address at all from here. code-server's own
  `/proxy/<port>/` then reaches only this workspace's ports. pasta (passt) was the other
  candidate: it refuses to run as root without dropping to `nobody`, and slirp4netns set up in
  10 ms here.
- **processes, IPC, host name**: namespaces of their own: `ps` shows the workspace's processes
  only, and when the engine ends, everything it started ends with it.
- **files**: the system read-only; fresh /tmp, /var/tmp, /dev/shm and /run; the data dir hidden,
  but for this workspace's files, home, user-data, extensions and runtime folder (read-write) and
  the shared engine config (read-only).

The manager still reaches the engine on its unix socket: a socket file crosses network namespaces.

Start-up (`launch`), about 25 ms in all: bwrap starts with `--info-fd` (it tells the sandbox's
first pid), `--block-fd` (the engine waits until released) and `--sync-fd` (held open while the
sandbox lives); the caller puts both pids in the engine's control groups; slirp4netns attaches to
the new namespace with `--exit-fd` on the sync fd, so it ends with the sandbox, even after a manager
restart; the routes are added (`nsenter` + `ip`); then the engine is released.

Written by hand because no maintained Python library drives bwrap and slirp4netns; both are
small command-line interfaces, checked by hand on Debian 12 (../shared/sandbox-notes.md).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil

from devyard.config import Settings
from devyard.errors import BackendError
from devyard.osaccounts import Account

log = logging.getLogger("devyard")

TOOLS = ("bwrap", "slirp4netns", "nsenter", "ip", "setpriv")
PACKAGES = "bubblewrap slirp4netns"
INFO_TIMEOUT_S = 10.0
ALWAYS_DENIED = ("169.254.0.0/16",)  # link-local: cloud metadata services
SLIRP_DNS = "10.0.2.3"  # slirp4netns's DNS forwarder inside the namespace
RESOLV_CONF = f"nameserver {SLIRP_DNS}\n"
TMPFS_BYTES = 1 << 30  # each private tmpfs when the workspace has no memory limit (with one, that limit)
# Empty and private in every sandbox: /tmp, /var/tmp and /dev/shm writable by all (sticky), /run and /home empty.
PRIVATE = (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"), Path("/run"), Path("/home"))


@dataclass(frozen=True, slots=True)
class Support:
    """Whether engines here run sandboxed, and the plain sentence saying what is missing when they do not."""

    available: bool
    detail: str


def detect(settings: Settings) -> Support:
    """Whether this host can sandbox engines, trying it once (bwrap making its namespaces) when everything is there."""
    if settings.sandbox == "off":
        return Support(False, "sandbox: off")
    if settings.backend != "local":
        return Support(False, f"the {settings.backend} backend isolates workspaces its own way")
    if os.geteuid() != 0:
        return Support(False, "the manager is not root (the sandbox drops each engine to its user's account)")
    if not settings.isolated:
        return Support(False, "os_accounts is off (the sandbox runs each engine as its user's account)")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return Support(False, f"{', '.join(missing)} not installed (apt-get install -y {PACKAGES})")
    probe = [
        "bwrap",
        "--unshare-net",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--ro-bind",
        "/",
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "true",
    ]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Support(False, f"bwrap could not be run: {exc}")
    if done.returncode != 0:
        return Support(False, f"bwrap cannot make namespaces here: {done.stderr.strip()[-200:] or done.returncode}")
    return Support(
        True, "each engine in its own network, process, IPC and host name namespaces (bubblewrap, slirp4netns)"
    )


def denied_networks(extra: Sequence[str]) -> list[str]:
    """What a sandbox may not reach: link-local, this host's own IPv4 addresses, and `extra` (IPv4 CIDRs; IPv6 has no route out anyway)."""
    found = list(ALWAYS_DENIED)
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not ipaddress.ip_address(address.address).is_loopback:
                found.append(f"{address.address}/32")
    for network in extra:
        parsed = ipaddress.ip_network(network, strict=False)
        if parsed.version == 4:
            found.append(str(parsed))
    return list(dict.fromkeys(found))


@dataclass(frozen=True)
class Layout:
    """What one engine's sandbox sees of the host's files besides the read-only system."""

    hidden: Path  # the data dir: covered by an empty tmpfs
    writable: list[Path]  # bound read-write at the same path (they must exist)
    readonly: list[tuple[Path, Path]]  # (host file, where it appears)
    hostname: str
    tmpfs_bytes: int = TMPFS_BYTES
    chdir: Path | None = None


def _ancestors(top: Path, paths: Sequence[Path]) -> list[Path]:
    """The folders strictly between `top` and each of `paths`, outermost first, each once."""
    found: list[Path] = []
    for path in paths:
        for parent in reversed(path.parents):
            if parent != top and parent.is_relative_to(top) and parent not in found:
                found.append(parent)
    return found


def bwrap_argv(
    layout: Layout, account: Account, command: Sequence[str], info_fd: int, block_fd: int, sync_fd: int
) -> list[str]:
    """The bwrap command line that runs `command` as `account` in the sandbox `layout` describes."""
    size = str(layout.tmpfs_bytes)
    argv = [
        # Found on the manager's own PATH: root runs it with the engine's variables, which are the tenant's to shape.
        shutil.which("bwrap") or "bwrap",
        "--unshare-net",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        layout.hostname,
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
    ]
    for private in PRIVATE:
        if private.is_dir():
            sticky = private in (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"))
            argv += [
                "--perms",
                "1777" if sticky else "0755",
                "--size",
                size if sticky else str(16 << 20),
                "--tmpfs",
                str(private),
            ]
    for parent in reversed(layout.hidden.parents):  # a data dir below one of the private folders: its way there
        if any(parent != top and parent.is_relative_to(top) for top in PRIVATE):
            argv += ["--perms", "0711", "--dir", str(parent)]
    argv += ["--perms", "0711", "--size", str(1 << 20), "--tmpfs", str(layout.hidden)]
    targets = [*layout.writable, *(dest for _, dest in layout.readonly)]
    for folder in _ancestors(layout.hidden, targets):
        argv += ["--perms", "0711", "--dir", str(folder)]  # passable, as on the host, not listable
    for path in layout.writable:
        argv += ["--bind", str(path), str(path)]
    for source, dest in layout.readonly:
        argv += ["--ro-bind", str(source), str(dest)]
    if layout.chdir:
        argv += ["--chdir", str(layout.chdir)]
    argv += [
        "--info-fd",
        str(info_fd),
        "--block-fd",
        str(block_fd),
        "--sync-fd",
        str(sync_fd),
        "--",
        *as_account(account, command),
    ]
    return argv


def as_account(account: Account, command: Sequence[str]) -> list[str]:
    """`command` run as `account` with no supplementary groups, no capabilities and no way to gain any (setpriv)."""
    return [
        "setpriv",
        f"--reuid={account.uid}",
        f"--regid={account.gid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
        *command,
    ]


@dataclass
class Started:
    """A sandboxed engine that has been released: bwrap (its outermost process) and the network helper."""

    proc: subprocess.Popen[bytes]
    net: subprocess.Popen[bytes]
    pids: list[int] = field(default_factory=list)  # bwrap's and the sandbox's first process's


def launch(
    command: Sequence[str],
    *,
    account: Account,
    layout: Layout,
    deny: Sequence[str],
    env: dict[str, str],
    output: IO[bytes],
    before_release: Callable[[list[int]], None],
) -> Started:
    """Start `command` in a new sandbox; `before_release(pids)` runs before it may begin (control groups). BackendError on failure."""
    info_r, info_w = os.pipe()
    block_r, block_w = os.pipe()
    sync_r, sync_w = os.pipe()
    fds = [info_r, info_w, block_r, block_w, sync_r, sync_w]
    proc: subprocess.Popen[bytes] | None = None
    net: subprocess.Popen[bytes] | None = None
    try:
        argv = bwrap_argv(layout, account, command, info_w, block_r, sync_w)
        # umask 077 is inherited by the engine: what it makes is private by default.
        proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            start_new_session=True,
            pass_fds=(info_w, block_r, sync_w),
            umask=0o077,
            cwd="/",
        )
        for fd in (info_w, block_r, sync_w):
            os.close(fd)
            fds.remove(fd)
        child = _child_pid(info_r, proc)
        pids = [proc.pid, child]
        before_release(pids)
        net = _network(child, sync_r, output)
        _deny(child, deny)
        os.write(block_w, b"1")  # the engine may begin
        return Started(proc, net, pids)
    except BaseException:
        for started in (net, proc):
            if started is not None and started.poll() is None:
                started.kill()
                started.wait()
        raise
    finally:
        for fd in fds:
            os.close(fd)


def _child_pid(info_r: int, proc: subprocess.Popen[bytes]) -> int:
    """The sandbox's first process, from bwrap's --info-fd JSON."""
    deadline = time.monotonic() + INFO_TIMEOUT_S
    data = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([info_r], [], [], 0.1)
        if ready:
            chunk = os.read(info_r, 4096)
            data += chunk
            try:
                return int(json.loads(data)["child-pid"])
            except (ValueError, KeyError):
                if not chunk:
                    break
        elif proc.poll() is not None:
            break
    code = proc.poll()
    raise BackendError(
        f"the sandbox did not start (bwrap {'exited with ' + str(code) if code is not None else 'did not answer'}); "
        "see the workspace's log",
        code="sandbox_failed",
    )


def _network(child: int, exit_r: int, output: IO[bytes]) -> subprocess.Popen[bytes]:
    """slirp4netns attached to the sandbox's network namespace, ready; it ends when `exit_r` closes (the sandbox ended)."""
    ready_r, ready_w = os.pipe()
    try:
        net = subprocess.Popen(
            [
                "slirp4netns",
                "--configure",
                "--mtu=65520",
                "--disable-host-loopback",
                "--enable-sandbox",
                "--enable-seccomp",
                "--ready-fd",
                str(ready_w),
                "--exit-fd",
                str(exit_r),
                str(child),
                "tap0",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=output,
            pass_fds=(ready_w, exit_r),
            start_new_session=True,
        )
        os.close(ready_w)
        ready_w = -1
        ready, _, _ = select.select([ready_r], [], [], INFO_TIMEOUT_S)
        if not ready or os.read(ready_r, 1) != b"1":
            net.kill()
            net.wait()
            raise BackendError(
                "the sandbox's network (slirp4netns) did not start; see the workspace's log", code="sandbox_failed"
            )
        return net
    finally:
        os.close(ready_r)
        if ready_w >= 0:
            os.close(ready_w)


def _deny(child: int, networks: Sequence[str]) -> None:
    """`prohibit` routes for `networks` in the sandbox's network namespace (the engine's account cannot remove them)."""
    if not networks:
        return
    script = "".join(f"route add prohibit {n}\n" for n in networks)
    done = subprocess.run(
        ["nsenter", f"--net=/proc/{child}/ns/net", "ip", "-batch", "-"],
        input=script,
        capture_output=True,
        text=True,
        timeout=INFO_TIMEOUT_S,
    )
    if done.returncode != 0:
        raise BackendError(
            f"could not close the sandbox's network to {', '.join(networks)}: {done.stderr.strip()[-200:]}",
            code="sandbox_failed",
        )


def write_shared_files(run_dir: Path, engine_config: str) -> None:
    """Write the files every engine reads and none may change, where they differ: code-server.yaml and the sandbox's resolv.conf (0644)."""
    for name, text in (("code-server.yaml", engine_config), ("resolv.conf", RESOLV_CONF)):
        path = run_dir / name
        try:
            if path.read_text() == text and path.stat().st_mode & 0o777 == 0o644:
                continue
        except OSError:
            pass
        tmp = run_dir / f".{name}.tmp"
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        tmp.replace(path)
