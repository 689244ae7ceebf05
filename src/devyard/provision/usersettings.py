"""Merging extension groups' user_settings into a workspace's User/settings.json.

VS Code's settings file is JSON with comments and trailing commas (JSONC), read here with json5.
Settings the user already has are never overwritten: a group only adds the keys that are missing.
A file that cannot be read is kept aside (settings.json.unreadable-<time>), never silently lost.
The user-data folder is the tenant's: it is read and written through safefs, never through a link.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import json5

from devyard import safefs

FOLDER, NAME = "User", "settings.json"


def parse(text: str) -> dict[str, Any]:
    """The settings in a settings.json text ({} when blank); ValueError when it is not a JSON(C) object."""
    if not text.strip():
        return {}
    data = json5.loads(text)
    if not isinstance(data, dict):
        raise ValueError("settings.json does not hold an object")
    return data


def merge(data_dir: Path, defaults: dict[str, Any]) -> list[str]:
    """Add each key of `defaults` that `data_dir`/User/settings.json lacks; the keys added. The file is replaced atomically."""
    with safefs.opened_dir(data_dir, FOLDER, create=True) as folder:
        try:
            raw = safefs.read_file(folder, NAME)
            current = parse(raw.decode("utf-8")) if raw is not None else {}
        except (
            ValueError,
            UnicodeDecodeError,
            OSError,
        ):  # not JSON, or a link or someone else's file where the file should be
            os.rename(NAME, f"{NAME}.unreadable-{int(time.time())}", src_dir_fd=folder, dst_dir_fd=folder)
            current, raw = {}, None
        added = [k for k in defaults if k not in current]
        if not added and raw is not None:
            return []
        merged = {**current, **{k: defaults[k] for k in added}}
        safefs.write_file(folder, NAME, (json.dumps(merged, indent=2) + "\n").encode())
    return added
