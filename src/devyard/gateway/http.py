"""Streaming HTTP proxy to engines over unix sockets.

httpx (one pooled AsyncClient per engine socket) carries requests; bodies stream both ways in
chunks as they arrive (request body from ASGI receive, response via aiter_raw, so compressed
bytes pass through untouched and nothing is buffered whole). Backpressure comes from awaiting
the ASGI send, which uvicorn holds while the client's socket is not draining.

Every engine start has a new socket, so pools of engines that are gone are closed as new ones
open (the soak benchmark found them piling up: a pool holds buffers and, unless given one, its
own TLS context with the whole CA bundle loaded — none is needed on a unix socket).
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import AsyncIterator

import httpx
from starlette.types import Receive, Scope, Send

from devyard.gateway.headers import downstream_headers

CONNECT_TIMEOUT_S = 10.0
PRUNE_EVERY = 16  # new pools between two looks for pools of engines that are gone
log = logging.getLogger("devyard.gateway")
_NO_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # shared by every pool: engine sockets speak plain HTTP


class EngineUnreachable(Exception):
    """The engine did not accept the connection."""


class HttpProxy:
    """Forwards HTTP requests to engines; keeps a connection pool per socket."""

    def __init__(self) -> None:
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._opened = 0
        self._closing: set[asyncio.Task[None]] = set()

    def _client(self, socket: str) -> httpx.AsyncClient:
        client = self._clients.get(socket)
        if client is None:
            self._opened += 1
            if self._opened % PRUNE_EVERY == 0:
                self._prune()
            transport = httpx.AsyncHTTPTransport(uds=socket, retries=1, verify=_NO_TLS)
            timeout = httpx.Timeout(connect=CONNECT_TIMEOUT_S, read=None, write=None, pool=CONNECT_TIMEOUT_S)
            client = httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False)
            self._clients[socket] = client
        return client

    def _prune(self) -> None:
        """Close, in the background, the pools whose socket is gone (the engine stopped)."""
        for socket in [s for s in self._clients if not os.path.exists(s)]:
            client = self._clients.pop(socket)
            task = asyncio.get_running_loop().create_task(client.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def forget(self, socket: str) -> None:
        """Close the pool of an engine that stopped."""
        client = self._clients.pop(socket, None)
        if client:
            await client.aclose()

    async def close(self) -> None:
        """Close every pool."""
        for socket in list(self._clients):
            await self.forget(socket)

    async def forward(self, scope: Scope, receive: Receive, send: Send, socket: str, path: str, headers: list[tuple[bytes, bytes]]) -> None:
        """Send the request to the engine at `socket` and stream its answer back."""
        query = scope.get("query_string", b"")
        url = "http://engine" + path + ("?" + query.decode("latin-1") if query else "")
        has_body = any(n in (b"content-length", b"transfer-encoding") for n, _ in scope["headers"])
        client = self._client(socket)
        request = client.build_request(scope["method"], url, headers=headers, content=_body(receive) if has_body else None)
        try:
            response = await client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise EngineUnreachable(f"{type(exc).__name__}: {exc}") from exc
        try:
            await send({"type": "http.response.start", "status": response.status_code, "headers": downstream_headers(response.headers.raw)})
            async for chunk in response.aiter_raw():
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except httpx.TransportError as exc:
            # Headers are gone already: all we can do is cut the response short, which the client sees.
            log.info("engine stream ended early: %s: %s", type(exc).__name__, exc)
        finally:
            await response.aclose()


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
