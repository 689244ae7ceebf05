"""Locks and background jobs: operations on one workspace run one at a time, and a user's quota checks with them.

The event loop holds tasks weakly, so every background job is kept here until it is done, and
cancelled when the manager stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class Runner:
    """Per-workspace and per-user locks, and the background tasks of one manager."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._user_locks: dict[int, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def lock(self, uid: str) -> asyncio.Lock:
        """The lock that orders operations on one workspace."""
        return self._locks.setdefault(uid, asyncio.Lock())

    def user_lock(self, user_id: int) -> asyncio.Lock:
        """The lock under which a quota check and the change it allows happen together (parallel requests cannot both fit)."""
        return self._user_locks.setdefault(user_id, asyncio.Lock())

    def forget(self, uid: str) -> None:
        """A workspace is gone: its lock too."""
        self._locks.pop(uid, None)

    def spawn(self, job: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `job` in the background, kept until it is done."""
        task = asyncio.get_running_loop().create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Cancel the jobs still running and wait for them to end."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
