"""Streaming HTTP proxy to engines over unix sockets.

aiohttp (one pooled ClientSession per engine socket) carries requests: of the well-kept async
clients it spends the least CPU per request (C-accelerated parser, no per-request transport
layers), which bench/gateway.py measured at several times fewer CPU-seconds than httpx on this
path. Bodies stream both ways in chunks as they arrive (request body from ASGI receive, response
as read), without decompressing, so compressed bytes pass through untouched and nothing is
buffered whole. Backpressure comes from awaiting the ASGI send, which uvicorn holds while the
client's socket is not draining.

Every engine start has a new socket, so pools of engines that are gone are closed as new ones
open (the soak benchmark found them piling up).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator

import aiohttp
from multidict import CIMultiDict
from starlette.types import Receive, Scope, Send
from yarl import URL

from devyard.gateway.headers import downstream_headers

CONNECT_TIMEOUT_S = 10.0
PRUNE_EVERY = 16  # new pools between two looks for pools of engines that are gone
KEEPALIVE_S = 60.0
log = logging.getLogger("devyard.gateway")
# aiohttp adds these unless told not to; the browser's own, when it sent them, pass through.
_NO_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


class EngineUnreachable(Exception):
    """The engine did not accept the connection."""


class HttpProxy:
    """Forwards HTTP requests to engines; keeps a connection pool per socket."""

    def __init__(self) -> None:
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._opened = 0
        self._closing: set[asyncio.Task[None]] = set()

    def _session(self, socket: str) -> aiohttp.ClientSession:
        session = self._sessions.get(socket)
        if session is None:
            self._opened += 1
            if self._opened % PRUNE_EVERY == 0:
                self._prune()
            connector = aiohttp.UnixConnector(path=socket, limit=0, keepalive_timeout=KEEPALIVE_S)
            session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(), skip_auto_headers=_NO_AUTO_HEADERS,
                timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_S, sock_connect=CONNECT_TIMEOUT_S),
            )
            self._sessions[socket] = session
        return session

    def _prune(self) -> None:
        """Close, in the background, the pools whose socket is gone (the engine stopped)."""
        for socket in [s for s in self._sessions if not os.path.exists(s)]:
            session = self._sessions.pop(socket)
            task = asyncio.get_running_loop().create_task(session.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def forget(self, socket: str) -> None:
        """Close the pool of an engine that stopped."""
        session = self._sessions.pop(socket, None)
        if session:
            await session.close()

    async def close(self) -> None:
        """Close every pool."""
        for socket in list(self._sessions):
            await self.forget(socket)

    async def forward(self, scope: Scope, receive: Receive, send: Send, socket: str, path: str, headers: list[tuple[bytes, bytes]]) -> None:
        """Send the request to the engine at `socket` and stream its answer back."""
        await self.relay(await self.open(scope, receive, socket, path, headers), send)

    async def open(self, scope: Scope, receive: Receive, socket: str, path: str, headers: list[tuple[bytes, bytes]]) -> aiohttp.ClientResponse:
        """Send the request to the engine at `socket`; its answer, with the body still to read."""
        query = scope.get("query_string", b"")
        # encoded=True: the path and query go to the engine byte for byte, as the browser sent them.
        url = URL("http://engine" + path + ("?" + query.decode("latin-1") if query else ""), encoded=True)
        has_body = any(n in (b"content-length", b"transfer-encoding") for n, _ in scope["headers"])
        outgoing = CIMultiDict((n.decode("latin-1"), v.decode("latin-1")) for n, v in headers)
        try:
            return await self._session(socket).request(
                scope["method"], url, headers=outgoing, data=_body(receive) if has_body else None, allow_redirects=False,
                compress=None, auto_decompress=False)
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
            raise EngineUnreachable(f"{type(exc).__name__}: {exc}") from exc

    @staticmethod
    async def relay(response: aiohttp.ClientResponse, send: Send, head: bytes = b"") -> None:
        """Stream an engine's answer to the browser: headers, `head` (body bytes already read), the rest as it comes."""
        try:
            await send({"type": "http.response.start", "status": response.status, "headers": downstream_headers(list(response.raw_headers))})
            if head:
                await send({"type": "http.response.body", "body": head, "more_body": True})
            async for chunk in response.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            # Headers are gone already: all we can do is cut the response short, which the client sees.
            log.info("engine stream ended early: %s: %s", type(exc).__name__, exc)
        finally:
            response.release()


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body = message.get("body", b"")
        if body:
            yield body
        if not message.get("more_body", False):
            return
