"""Background loops of the manager: one round every few seconds until stopped; a failed round is logged, not fatal."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("devyard")


class Loop:
    """Runs `tick()` every `every_s` seconds in the background between start() and stop()."""

    every_s: float = 1.0

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    async def tick(self) -> None:
        """One round of the loop's work."""
        raise NotImplementedError

    def start(self) -> None:
        """Begin the rounds (once: a loop already running goes on)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """End the rounds (a round in progress is cancelled)."""
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # one bad round must not end the loop
                log.exception("%s: a round failed", type(self).__name__)
            await asyncio.sleep(self.every_s)
