"""Live connections by credential, user and workspace, so that taking access away ends them at once.

Every proxied HTTP request is authenticated on its own, but a WebSocket tunnel or an event stream
is authenticated once, when it opens, and may then run for days; a keep-alive connection, or a
response still streaming, outlives the check of its last request. Each one registers here with the
credential it was opened with (a session's or token's digest), its user and its workspace (and
port), and each keep-alive connection to a workspace by its peer address with what it last carried; revoking a credential, ending a user's sessions, taking back a share or narrowing a port's
visibility closes the matching ones. Other replicas hear of changes through the database's notices
and do the same with their own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("devyard.gateway")
MAX_PEERS = 4096  # keep-alive connections remembered before the closed ones are swept out


def _peer_of(transport: Any) -> tuple[Any, ...] | None:
    peer = transport.get_extra_info("peername")
    return tuple(peer[:2]) if isinstance(peer, (tuple, list)) else None


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
        # Keep-alive HTTP connections to workspaces, by peer address: what each was last used with.
        self._peers: dict[tuple[Any, ...], Live] = {}
        # The server's open connections (uvicorn's protocol objects), set once it serves: how one is hung up.
        self.connections: set[Any] = set()

    def used(self, peer: tuple[Any, ...], credential: str, user_id: int, user: str, uid: str, port: int | None) -> None:
        """A keep-alive connection from `peer` carried a request with these credentials (the gateway's hot path: cheap when unchanged)."""
        known = self._peers.get(peer)
        if known is not None:
            if known.credential == credential and known.uid == uid and known.port == port:
                return
            self._all.discard(known)
        if len(self._peers) > MAX_PEERS:
            self._forget_closed()
        live = self._peers[peer] = Live(credential, user_id, user, lambda: self._hang_up(peer), uid, port)
        self._all.add(live)

    def _hang_up(self, peer: tuple[Any, ...]) -> None:
        self._peers.pop(peer, None)
        for protocol in list(self.connections):
            transport = getattr(protocol, "transport", None)
            if transport is not None and _peer_of(transport) == peer:
                transport.close()

    def _forget_closed(self) -> None:
        open_peers = {_peer_of(t) for p in list(self.connections) if (t := getattr(p, "transport", None)) is not None}
        for peer in [p for p in self._peers if p not in open_peers]:
            self._all.discard(self._peers.pop(peer))

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
