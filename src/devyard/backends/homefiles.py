"""Writing secret files into a workspace's home without ever following a link the user planted.

The home folder belongs to the engine's account, which may replace any folder in it with a
symbolic link (to /etc, say) at any moment; the manager writes as root. So every step goes through
safefs: folders opened relative to the one above with O_NOFOLLOW, each file written new and
renamed into place, given to the home folder's owner with mode 0600.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from pathlib import Path

from devyard import safefs


def write(home: Path, files: Mapping[str, str], remove: list[str]) -> None:
    """Write each `files` path (relative to `home`) with its content, mode 0600; unlink each `remove` path."""
    if not files and not remove:
        return
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    for rel, content in files.items():
        folder, name = posixpath.split(rel)
        with safefs.opened_dir(home, folder, create=True) as fd:
            safefs.write_file(fd, name, content.encode())
    for rel in remove:
        folder, name = posixpath.split(rel)
        try:
            with safefs.opened_dir(home, folder) as fd:
                safefs.unlink(fd, name)
        except FileNotFoundError:
            continue
