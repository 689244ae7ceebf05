"""Paths built from names: each name must be one plain path component, so the result stays inside its base.

Names are validated where they enter (models.py); this is the second lock, for rows written by an
older version or by hand, so that no name in the database can point a workspace outside the data dir.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from devyard.errors import Invalid

# Run as root, devyard is a system service whose engines run as other accounts: its data must sit
# where those accounts can reach their own folders, which /root (0700) is not.
DEFAULT_DATA_DIR = Path("/var/lib/devyard") if os.geteuid() == 0 else Path("~/.local/share/devyard").expanduser()
DEFAULT_PORT = 8000

# In the run folder (Settings.run_dir): where a running `devyard up` says where it serves ({"url", "pid", "ca"}),
# for the CLI on the same machine and for pods reaching a manager started with --port 0.
MANAGER_FILE = "manager.json"


def manager_record(run_dir: Path) -> Path:
    """The file in `run_dir` where the manager serving from it records its address."""
    return run_dir / MANAGER_FILE


def child(base: Path, *names: str) -> Path:
    """base/name/..., refusing a name that is empty, `.`, `..`, or holds `/` or NUL."""
    for name in names:
        if not name or name in (".", "..") or "/" in name or "\0" in name:
            raise Invalid(f"{name!r} cannot be used as a folder name", code="invalid_path")
    return base.joinpath(*names)


def disk_usage(root: Path) -> int:
    """Bytes in the files below `root` (links counted as themselves, never followed)."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def remove_workspace(root: Path, keep_files: bool) -> None:
    """Delete a workspace's folders; with keep_files only files/ stays."""
    if not root.exists():
        return
    if not keep_files:
        shutil.rmtree(root, ignore_errors=True)
        return
    for item in root.iterdir():
        if item.name != "files":
            shutil.rmtree(item, ignore_errors=True) if item.is_dir() else item.unlink(missing_ok=True)
