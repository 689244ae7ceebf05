"""File work in folders a tenant controls, done by root without ever following the tenant's links.

A workspace's files, home, user-data and extensions belong to its engine's account, whose terminal
may at any moment replace a folder with a symbolic link (to /etc, say), swap a file for a link
between a check and an open, or hard-link a file of its own under a name the manager writes. So
every step goes through an already-open folder descriptor: each folder is opened with O_NOFOLLOW |
O_DIRECTORY relative to the one above, files are opened with O_NOFOLLOW and checked with fstat
(a regular file of the folder's owner), and writes go to a new file (O_EXCL) renamed over the old
name, so no existing inode is ever written into. Python's os module has every call this needs; no
library wraps them for this use.

Errors are OSError, as from os: ELOOP when a link stands where a folder or file must be.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@contextmanager
def opened_dir(top: Path, rel: str = "", *, create: bool = False, mode: int = 0o700) -> Iterator[int]:
    """A descriptor of folder `top`/`rel`, reached without following a link below `top`.

    With `create`, missing folders are made with `mode` and given to `top`'s owner. `top` itself is
    a path the manager controls (its parent is root's); only what lies below it is the tenant's.
    """
    fd = os.open(top, DIR_FLAGS)
    try:
        owner = os.fstat(fd)
        for part in (p for p in rel.split("/") if p):
            if part in (".", ".."):
                raise OSError(errno.EINVAL, f"{part!r} in a path below {top}")
            if create:
                try:
                    os.mkdir(part, mode, dir_fd=fd)
                    os.chown(part, owner.st_uid, owner.st_gid, dir_fd=fd, follow_symlinks=False)
                except FileExistsError:
                    pass
            next_fd = os.open(part, DIR_FLAGS, dir_fd=fd)  # ELOOP when it is a link
            os.close(fd)
            fd = next_fd
        yield fd
    finally:
        os.close(fd)


def check_owned(st: os.stat_result, owner: os.stat_result, what: str) -> None:
    """OSError unless `st` is a regular file of `owner`'s (the folder's owner).

    A file of someone else's in a tenant's folder can only be a hard link to it (root's /etc/shadow,
    say, where the kernel allows such links): never read through.
    """
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, f"{what} is not a regular file")
    if st.st_uid != owner.st_uid:
        raise OSError(errno.EPERM, f"{what} belongs to uid {st.st_uid}, not to the folder's owner")


def read_file(dir_fd: int, name: str, max_bytes: int = 64 << 20) -> bytes | None:
    """The content of file `name` in the folder `dir_fd` (None when there is none), checked with check_owned."""
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    try:
        check_owned(os.fstat(fd), os.fstat(dir_fd), name)
        chunks, size = [], 0
        while chunk := os.read(fd, 1 << 20):
            size += len(chunk)
            if size > max_bytes:
                raise OSError(errno.EFBIG, f"{name} is larger than {max_bytes >> 20} MB")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_file(dir_fd: int, name: str, data: bytes, mode: int = 0o600) -> None:
    """Put `data` at `name` in the folder `dir_fd` as a new file of the folder's owner (mode `mode`), replacing what was there."""
    owner = os.fstat(dir_fd)
    tmp = f".{name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    try:
        try:
            os.fchown(fd, owner.st_uid, owner.st_gid)
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)  # replaces the name, never writes into its inode
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        raise


def unlink(dir_fd: int, name: str) -> None:
    """Remove `name` (a file or link, never followed) from the folder `dir_fd`, if it is there."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
