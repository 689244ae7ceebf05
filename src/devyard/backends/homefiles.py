"""Writing secret files into a workspace's home without ever following a link the user planted.

The home folder belongs to the engine's account, which may replace any folder in it with a
symbolic link (to /etc, say) at any moment; the manager writes as root. So every step is made
relative to an already-open folder descriptor with O_NOFOLLOW, and what is written is given to
the home folder's owner with mode 0600.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def write(home: Path, files: Mapping[str, str], remove: list[str]) -> None:
    """Write each `files` path (relative to `home`) with its content, mode 0600; unlink each `remove` path."""
    if not files and not remove:
        return
    home.mkdir(parents=True, exist_ok=True)
    top = os.open(home, _DIR)
    try:
        owner = os.fstat(top)
        for rel, content in files.items():
            parent, name = _walk(top, rel, owner, create=True)
            try:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600, dir_fd=parent)
                try:
                    os.fchmod(fd, 0o600)
                    os.fchown(fd, owner.st_uid, owner.st_gid)
                    os.write(fd, content.encode())
                finally:
                    os.close(fd)
            finally:
                _close(parent, top)
        for rel in remove:
            try:
                parent, name = _walk(top, rel, owner, create=False)
            except FileNotFoundError:
                continue
            try:
                os.unlink(name, dir_fd=parent)
            except FileNotFoundError:
                pass
            finally:
                _close(parent, top)
    finally:
        os.close(top)


def _walk(top: int, rel: str, owner: os.stat_result, create: bool) -> tuple[int, str]:
    """(descriptor of the folder holding `rel`, its last name), making missing folders (0700, the owner's)."""
    *folders, name = rel.split("/")
    fd = top
    for part in folders:
        if create:
            try:
                os.mkdir(part, 0o700, dir_fd=fd)
                os.chown(part, owner.st_uid, owner.st_gid, dir_fd=fd, follow_symlinks=False)
            except FileExistsError:
                pass
        next_fd = os.open(part, _DIR, dir_fd=fd)  # ELOOP when it is a link
        _close(fd, top)
        fd = next_fd
    return fd, name


def _close(fd: int, top: int) -> None:
    if fd != top:
        os.close(fd)
