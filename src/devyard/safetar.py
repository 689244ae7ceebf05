"""A tenant's folder into a tar stream, as root, without following a single link the tenant planted.

Used for backups (workspaces/backups.py) and for a devcontainer build's context (backends/kubernetes/build.py).
The folder is walked through folder descriptors (os.fwalk, which never enters a link) and each file
is opened relative to its folder with O_NOFOLLOW and checked to be a regular file of the folder's
owner. A file swapped for a link, or a hard link to someone else's file, is never read: not a byte
of anything the tenant could not read itself reaches the archive. Each file is a version that was
on disk whole: read, then looked at again, and read once more if it changed meanwhile.
tarfile's own `add` opens paths and would follow a link swapped in under it, so this is by hand.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import tarfile
import tempfile
import time
from pathlib import Path
from typing import IO

from devyard import safefs
from devyard.errors import Invalid

log = logging.getLogger("devyard.safetar")
READ_TRIES = 5
SPOOL_BYTES = 8 << 20  # a file read while it may change is held in memory up to this, then in a temporary file


class Budget:
    """How many bytes of files an archive may still take; Invalid once they are spent."""

    def __init__(self, max_bytes: int | None, what: str) -> None:
        self.left, self.what = max_bytes, what

    def spend(self, size: int) -> None:
        """Count `size` bytes; Invalid (413-like, `too_large`) past the limit."""
        if self.left is None:
            return
        self.left -= size
        if self.left < 0:
            raise Invalid(f"{self.what} is too large", code="too_large")


def add_tree(tar: tarfile.TarFile, root: Path, top: str, skip: frozenset[str] = frozenset()) -> int:
    """Add everything below `root` (a folder of the manager's, not a path the tenant can change) as `top/...`; the number of files added."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return 0
        raise
    try:
        return add_tree_at(tar, fd, top, skip)
    finally:
        os.close(fd)


def add_tree_at(
    tar: tarfile.TarFile, dir_fd: int, top: str, skip: frozenset[str] = frozenset(), budget: Budget | None = None
) -> int:
    """Add everything below the open folder `dir_fd` as `top/...` (`skip`: names left out at its top); the number of files added."""
    owner = os.fstat(dir_fd)
    count = 0
    for dirpath, dirnames, filenames, folder in os.fwalk(".", follow_symlinks=False, dir_fd=dir_fd):
        rel_dir = os.path.relpath(dirpath, ".")
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in skip]
        dirnames.sort()
        for name in [*dirnames, *sorted(filenames)]:
            arcname = f"{top}/{name}" if rel_dir == "." else f"{top}/{rel_dir}/{name}"
            count += add_entry(tar, folder, name, arcname, owner, budget)
    return count


def add_file(tar: tarfile.TarFile, dir_fd: int, name: str, arcname: str, budget: Budget | None = None) -> int:
    """Add one file of the open folder `dir_fd` under `arcname`; 1 when added, 0 when it is not a regular file."""
    return add_entry(tar, dir_fd, name, arcname, os.fstat(dir_fd), budget, files_only=True)


def _entry(arcname: str, kind: bytes, mode: int, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(arcname)
    info.type, info.mode, info.mtime = kind, mode & 0o777, int(mtime)
    return info


def add_entry(
    tar: tarfile.TarFile,
    dir_fd: int,
    name: str,
    arcname: str,
    owner: os.stat_result,
    budget: Budget | None = None,
    files_only: bool = False,
) -> int:
    """Add one entry of the folder `dir_fd`; a regular file as a version read whole. 1 for a file added, else 0."""
    for _ in range(READ_TRIES):
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return 0  # deleted meanwhile: it was not there when the walk reached it
        if stat.S_ISDIR(st.st_mode) and not files_only:
            tar.addfile(_entry(arcname, tarfile.DIRTYPE, st.st_mode, st.st_mtime))
            return 0
        if stat.S_ISLNK(st.st_mode) and not files_only:
            try:
                info = _entry(arcname, tarfile.SYMTYPE, 0o777, st.st_mtime)
                info.linkname = os.readlink(name, dir_fd=dir_fd)
            except (FileNotFoundError, OSError):
                continue  # changed again: look once more
            tar.addfile(info)
            return 0
        if not stat.S_ISREG(st.st_mode):
            return 0  # sockets, pipes: nothing to keep
        try:
            fd = os.open(name, safefs.READ_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                continue  # swapped for a link since the look: it is a link now
            raise
        with os.fdopen(fd, "rb") as f:
            before = os.fstat(fd)
            try:
                safefs.check_owned(before, owner, arcname)
            except OSError as exc:
                log.warning("%s skipped: %s", arcname, exc.strerror)
                return 0
            if budget is not None:
                budget.spend(before.st_size)
            with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as copy:
                size = _copy(f, copy)
                try:
                    after = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                except FileNotFoundError:
                    return 0
                if (before.st_mtime_ns, before.st_size, before.st_ino) == (
                    after.st_mtime_ns,
                    after.st_size,
                    after.st_ino,
                ) and size == after.st_size:
                    info = _entry(arcname, tarfile.REGTYPE, after.st_mode, after.st_mtime)
                    info.size = size
                    copy.seek(0)
                    tar.addfile(info, copy)
                    return 1
            if budget is not None:
                budget.spend(-before.st_size)  # read again below
        time.sleep(0.05)  # it is being written: let the write finish
    raise Invalid(f"{arcname} kept changing while it was read ({READ_TRIES} tries); try again", code="backup_busy")


def _copy(src: IO[bytes], dst: IO[bytes]) -> int:
    size = 0
    while chunk := src.read(1 << 20):
        dst.write(chunk)
        size += len(chunk)
    return size
