"""Live connections by credential, user and workspace, so that taking access away ends them at once.

Every proxied HTTP request is authenticated on its own, but a WebSocket tunnel or an event stream
is authenticated once, when it opens, and may then run for days. Each one registers here with the
credential it was opened with (a session's or token's digest), its user and its workspace (and
port); revoking a credential, ending a user's sessions, taking back a share or narrowing a port's
visibility closes the matching ones. Other replicas hear of changes through the database's notices
and do the same with their own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

log = logging.getLogger("devyard.gateway")


@dataclass(eq=False, slots=True)
class Live:
    """One open connection and how to end it."""

    credential: str  # "s:<session digest>" or "t:<token digest>"
    user_id: int
    user: str
    close: Callable[[], None]
    uid: str | None = None  # the workspace it reaches (None: a dashboard stream)
    port: int | None = None
    tags: frozenset[str] = field(default_factory=frozenset)


class LiveConnections:
    """The registry: add on open, discard on close, close_* when access ends."""

    def __init__(self) -> None:
        self._all: set[Live] = set()

    def add(self, live: Live) -> Live:
        """Register an open connection; returns it, for discard()."""
        self._all.add(live)
        return live

    def discard(self, live: Live) -> None:
        """The connection ended by itself."""
        self._all.discard(live)

    def __len__(self) -> int:
        return len(self._all)

    def close_credential(self, credential: str) -> int:
        """End everything opened with one session or token (logout, token revoked); returns how many."""
        return self._close(lambda c: c.credential == credential, "credential revoked")

    def close_user(self, user_id: int) -> int:
        """End everything a user opened (password changed, account disabled)."""
        return self._close(lambda c: c.user_id == user_id, "user's sessions ended")

    def close_sessions_of(self, user_id: int) -> int:
        """End what a user opened with browser sessions, not tokens (a password change ends sessions only)."""
        return self._close(lambda c: c.user_id == user_id and c.credential.startswith("s:"), "user's sessions ended")

    def recheck(self, uid: str, allowed: Callable[[Live], bool]) -> int:
        """End the connections to a workspace that `allowed` no longer lets through (share taken back, port narrowed)."""
        return self._close(lambda c: c.uid == uid and not allowed(c), "access to the workspace changed")

    def _close(self, match: Callable[[Live], bool], why: str) -> int:
        found = [c for c in self._all if match(c)]
        for live in found:
            self._all.discard(live)
            try:
                live.close()
            except Exception:  # one connection that fails to close must not keep the others open
                log.exception("could not close a live connection")
        if found:
            log.info("closed %d live connection(s): %s", len(found), why)
        return len(found)


async def until_closed(registry: LiveConnections, live: Live, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`stream` (an event stream's body) registered as `live` (its close() is replaced): it ends when its access does."""
    ended = asyncio.Event()
    added = registry.add(dataclasses.replace(live, close=ended.set))
    items = stream.__aiter__()
    stop = asyncio.ensure_future(ended.wait())
    try:
        while True:
            item = asyncio.ensure_future(items.__anext__())
            await asyncio.wait({item, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not item.done():  # closed: the stream ends here (the browser's EventSource then meets a 401)
                item.cancel()
                await asyncio.gather(item, return_exceptions=True)
                return
            try:
                yield item.result()
            except StopAsyncIteration:
                return
    finally:
        stop.cancel()
        registry.discard(added)
