"""What a later manager needs to find a local engine again: run/engines/<uid>.json, one per running engine.

Not memory, because an engine outlives the manager that started it: the record holds the pid and
the process start time (a pid alone can be reused), the socket, the control groups, and for a
sandboxed engine its sandbox's first process and network helper, so that a stop, a crash or a
manager restart can end all of them. The folder is the manager's alone (0700).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psutil

Record = dict[str, Any]
START_TIME_SLACK_S = 0.05


class Records:
    """The runtime records below `run_dir`/engines."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir / "engines"

    def path(self, uid: str) -> Path:
        """Where the record of `uid` is."""
        return self.dir / f"{uid}.json"

    def read(self, uid: str) -> Record | None:
        """The record of `uid`, or None when there is none (or it is unreadable)."""
        try:
            data: Record = json.loads(self.path(uid).read_text())
            return data
        except (OSError, ValueError):
            return None

    def write(self, uid: str, record: Record) -> None:
        """Replace the record of `uid` atomically."""
        tmp = self.path(uid).with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        tmp.replace(self.path(uid))

    def uids(self) -> list[str]:
        """Every engine that has a record, sorted."""
        return [p.stem for p in sorted(self.dir.glob("*.json"))] if self.dir.exists() else []


def identity(pid: int) -> Record:
    """What a record keeps of a process to find it again: its pid and start time."""
    return {"pid": pid, "create_time": psutil.Process(pid).create_time()}


def alive(found: Record | None) -> psutil.Process | None:
    """The live process a record (or its `identity`) names, checking the start time so a reused pid is not mistaken."""
    if not found:
        return None
    try:
        proc = psutil.Process(found["pid"])
        if abs(proc.create_time() - found["create_time"]) > START_TIME_SLACK_S or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.Error, KeyError, TypeError):
        return None
