"""Per-user system accounts: with a root manager, each devyard user's engines run as `dy-<user>`.

code-server has no notion of users, so isolation has to come from the operating system, the way
JupyterHub's LocalProcessSpawner runs each notebook server as the user's own Unix account. devyard
creates the accounts itself (system accounts, no home, no password: nobody logs in as them) and
marks them with the comment `devyard user <user>` so it never takes over an account it did not make.

It also owns what those accounts need of the file system: a workspace's folders made private to
its account (prepare_folders, give, chown_tree) and the check that the data dir is passable
(traversal_blocker). A bottom module: used by engine/, provision/ and backends/ alike.
"""

from __future__ import annotations

import errno
import hashlib
import os
import pwd
import re
import signal
import stat
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psutil

from devyard.errors import BackendError
from devyard.processes import signal_and_wait

PREFIX = "dy-"
MAX_NAME = 32  # useradd's limit on Debian
COMMENT = "devyard user {user}"  # GECOS: no colons
_SAFE = re.compile(r"^[a-z0-9_.-]+$")
_lock = threading.Lock()  # two starts of one user's workspaces must not race to create its account


@dataclass(frozen=True, slots=True)
class Account:
    """A system account engines run as."""

    name: str
    uid: int
    gid: int


def account_name(user: str) -> str:
    """The account of devyard user `user`: dy-<user>, shortened with a hash when too long."""
    name = PREFIX + user
    if len(name) <= MAX_NAME and _SAFE.match(user):
        return name
    safe = re.sub(r"[^a-z0-9_-]", "-", user.lower())[:20]
    return f"{PREFIX}{safe}-{hashlib.sha256(user.encode()).hexdigest()[:8]}"


def lookup(user: str) -> Account | None:
    """The account of `user` when it exists and devyard made it; BackendError when someone else did."""
    name = account_name(user)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    if entry.pw_gecos != COMMENT.format(user=user) or entry.pw_uid == 0:
        raise BackendError(
            f"the system account {name} exists but was not created by devyard for user {user!r} "
            f"(comment {entry.pw_gecos!r}); rename or remove it, or set os_accounts: off",
            code="os_account_conflict",
        )
    return Account(name, entry.pw_uid, entry.pw_gid)


def ensure(user: str) -> Account:
    """The account of `user`, created (useradd --system) on first use."""
    with _lock:
        found = lookup(user)
        if found:
            return found
        name = account_name(user)
        argv = [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/bin/bash",
            "--comment",
            COMMENT.format(user=user),
            name,
        ]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackendError(f"could not create the system account {name}: {exc}", code="os_account_failed") from exc
        found = lookup(user)
        if found is None:
            raise BackendError(
                f"could not create the system account {name}: {done.stderr.strip() or done.returncode}",
                code="os_account_failed",
            )
        return found


def popen_args(account: Account | None) -> dict[str, Any]:
    """subprocess.Popen arguments that run the child as `account`: no supplementary groups of root's, files private (umask 077)."""
    if account is None:
        return {}
    return {"user": account.uid, "group": account.gid, "extra_groups": [], "umask": 0o077}


def chown_tree(top: Path, account: Account) -> None:
    """Give `top` and everything under it to `account`, never following a symbolic link.

    Works through directory file descriptors (os.fwalk), so a link swapped in while the walk runs
    cannot redirect a chown outside the tree.
    """
    for _dirpath, dirnames, filenames, dirfd in os.fwalk(top, topdown=False, follow_symlinks=False):
        for name in (*filenames, *dirnames):
            try:
                os.chown(name, account.uid, account.gid, dir_fd=dirfd, follow_symlinks=False)
            except FileNotFoundError:
                pass
    os.chown(top, account.uid, account.gid, follow_symlinks=False)


def workspace_account(isolated: bool, owner: str) -> Account | None:
    """The account `owner`'s workspaces run as (created on first use), or None when engines share the manager's."""
    return ensure(owner) if isolated else None


class WorkspaceFolders(Protocol):
    """Where a workspace's folders are (backends.base.WorkspaceSpec is one): all prepare_folders needs to know."""

    @property
    def root(self) -> Path: ...
    @property
    def files_dir(self) -> Path: ...
    @property
    def home_dir(self) -> Path: ...
    @property
    def data_dir(self) -> Path: ...
    @property
    def extensions_dir(self) -> Path: ...
    @property
    def log_file(self) -> Path: ...


def _made(path: Path, mode: int) -> None:
    """`path` made as a folder, or OSError when something else (a file, a link) stands there."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a folder (a file or a link stands there)", str(path)) from None


def _folder(path: Path, mode: int, uid: int, gid: int) -> None:
    _made(path, mode)
    os.chown(path, uid, gid, follow_symlinks=False)
    os.chmod(path, mode, follow_symlinks=False)


def prepare_folders(ws: WorkspaceFolders, account: Account | None, workspaces_dir: Path) -> None:
    """Make (or repair) a workspace's folders, private from the moment they exist.

    With an account: workspaces/ 0711; <owner>/ and <owner>/<name>/ root's with the account's
    group, 0710 (it passes, nobody lists them); files/, home/, data/ and extensions/ the account's,
    0700 (handed over the first time, see give); logs/ root's, 0700: only the manager writes it.
    Without one, every folder is the manager's, 0700.
    """
    me, my_group = os.geteuid(), os.getegid()
    _folder(workspaces_dir, 0o711 if account else 0o700, me, my_group)
    for d in (ws.root.parent, ws.root):
        _folder(d, 0o710 if account else 0o700, me, account.gid if account else my_group)
    for d in (ws.files_dir, ws.home_dir, ws.data_dir, ws.extensions_dir):
        if account is None:
            _folder(d, 0o700, me, my_group)
        else:
            give(d, account)
    _folder(ws.log_file.parent, 0o700, me, my_group)


def give(path: Path, account: Account, mode: int = 0o700) -> None:
    """Make the folder `path` the account's own (mode `mode`), handing over its contents the first time."""
    _made(path, 0o700)
    if path.lstat().st_uid != account.uid:
        chown_tree(path, account)
    os.chmod(path, mode, follow_symlinks=False)


def kill_processes(account: Account, under: Path, timeout: float = 2.0) -> int:
    """SIGTERM, then SIGKILL, every process running as `account` started from a workspace below `under`; how many.

    The HOME an engine gives its terminals tells whose they are: another manager on this host may
    run engines as the same account (same user name), and those are not this manager's to end.
    """
    procs = []
    for proc in psutil.process_iter(["uids"]):
        uids = proc.info["uids"]
        if uids and account.uid in (uids.real, uids.effective) and _home_below(proc, under):
            procs.append(proc)
    count = len(procs)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        procs = signal_and_wait(procs, sig, timeout)
        if not procs:
            break
    return count


def _home_below(proc: psutil.Process, root: Path) -> bool:
    try:
        home = proc.environ().get("HOME", "")
    except psutil.Error:
        return False
    return bool(home) and Path(home).is_relative_to(root)


def traversal_blocker(path: Path) -> Path | None:
    """The first folder above `path` (from / down) that other accounts cannot pass through, or None."""
    for current in reversed(path.resolve().parents):
        try:
            mode = current.stat().st_mode
        except FileNotFoundError:
            return None  # it will be created by devyard, with the right mode
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            return current
    return None
