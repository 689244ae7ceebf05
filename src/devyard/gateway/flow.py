"""Backpressure for the gateway's connections: one helper for the HTTP proxy and the WebSocket tunnel.

Both sit between two sockets, and a fast side must not fill memory with what a slow side has not
taken yet. asyncio tells a protocol when its transport's write buffer passes its high-water mark
and when it drains again (`pause_writing`, `resume_writing`); the answer is the same wherever it
comes: stop reading from the side that feeds this one until the buffer drains, or make a writer
await the drain. FlowControl holds that state for one transport, as uvicorn's
protocols/http/flow_control.py does for uvicorn's own, so http.py (pooled engine connections)
and tunnel.py (browser and engine sockets of a tunnel) do not each keep their own copy.
"""

from __future__ import annotations

import asyncio


class FlowControl:
    """One transport's flow control: reading from it may be paused, writers may wait for it to drain.

    The protocol that owns the transport forwards its own `pause_writing`/`resume_writing` here;
    whoever feeds the transport awaits `drain()` or is paused itself. Pausing and resuming are
    idempotent, and do nothing before the transport is set or once the connection has ended.
    """

    def __init__(self, transport: asyncio.ReadTransport | None = None) -> None:
        self.transport = transport  # set in connection_made when the protocol is made before its transport
        self.reading_paused = False
        self.ended = False
        self._writable = asyncio.Event()
        self._writable.set()

    def pause_reading(self) -> None:
        """Stop reading from the transport (the side it feeds cannot take more)."""
        if not self.reading_paused and self.transport is not None and not self.ended:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        """Read from the transport again."""
        if self.reading_paused and self.transport is not None and not self.ended:
            self.reading_paused = False
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        """The transport's write buffer is full (asyncio's call, forwarded by its protocol): writers wait."""
        self._writable.clear()

    def resume_writing(self) -> None:
        """The transport's write buffer drained: writers go on."""
        self._writable.set()

    async def drain(self) -> None:
        """Wait until the transport's write buffer has room (at once if it has, or if the connection ended)."""
        await self._writable.wait()

    def end(self) -> None:
        """The connection ended: a writer waiting for a drain that will never come goes on (and finds it ended)."""
        self.ended = True
        self._writable.set()
