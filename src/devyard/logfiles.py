"""Reading log files that another process writes: the last lines, and the lines appended from now on.

Engines write their own log files (the manager never pipes them), so following one is polling its
size; a file that shrinks was rotated or truncated and is read again from its start.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

POLL_S = 0.25


def tail(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a text file (an empty list when it does not exist)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            block = min(size, max(4096, lines * 200))
            while True:
                f.seek(size - block)
                data = f.read(block)
                if data.count(b"\n") > lines or block == size:
                    break
                block = min(size, block * 2)
    except FileNotFoundError:
        return []
    return data.decode("utf-8", "replace").splitlines()[-lines:]


async def follow(path: Path) -> AsyncIterator[str]:
    """Each line appended to `path` from now on, as it is completed (the file may not exist yet)."""
    pos = path.stat().st_size if path.exists() else 0
    pending = b""
    while True:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < pos:
            pos = 0
        if size > pos:
            with path.open("rb") as f:
                f.seek(pos)
                chunk = f.read(size - pos)
            pos = size
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                yield raw.rstrip(b"\r").decode("utf-8", "replace")
        await asyncio.sleep(POLL_S)
