"""Merging extension groups' user_settings into a workspace's User/settings.json.

VS Code's settings file is JSON with comments and trailing commas (JSONC), read here with json5.
Settings the user already has are never overwritten: a group only adds the keys that are missing.
A file that cannot be read is kept aside (settings.json.unreadable-<time>), never silently lost.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import json5


def read(path: Path) -> dict[str, Any]:
    """The settings in `path` ({} when it does not exist); ValueError when it is not a JSON(C) object."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    if not text.strip():
        return {}
    data = json5.loads(text)
    if not isinstance(data, dict):
        raise ValueError("settings.json does not hold an object")
    return data


def merge(path: Path, defaults: dict[str, Any]) -> list[str]:
    """Add each key of `defaults` that `path` lacks; the keys added. The file is replaced atomically."""
    try:
        current = read(path)
    except ValueError:
        path.rename(path.with_name(f"{path.name}.unreadable-{int(time.time())}"))
        current = {}
    added = [k for k in defaults if k not in current]
    if not added and path.exists():
        return []
    merged = {**current, **{k: defaults[k] for k in added}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return added
