"""HTTP/1.1 to engines (a unix socket, or host:port in a cluster): pooled keep-alive connections, bodies streamed both ways.

Written by hand, with httptools (uvicorn's C parser, llhttp) reading the engine's answers, because
this runs for every request through the gateway and the general clients spent most of the
gateway's CPU here: py-spy under bench/gateway.py (64 connections) put aiohttp's request and
response machinery at about half of the manager's busy time, more than authentication, routing and
uvicorn together. What the gateway needs is narrow: one request at a time per connection, a path
and headers it already built, the request body from ASGI `receive`, and the answer's head parsed
and its body passed on as it arrives, without decompressing (compressed bytes pass untouched).

Backpressure both ways (flow.py): request bodies wait for the engine's socket to drain, and reading
from the engine pauses while more than HIGH_WATER bytes of its answer wait for the browser.

Connections idle longer than the engine keeps them (Node closes after 5 s) are not reused; a
request without a body that meets a connection the engine had just closed is sent again on a new
one. Every engine start has a new socket, so idle connections of engines that are gone are closed
as new sockets appear.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httptools
from starlette.types import Receive, Scope, Send

from devyard.errors import EngineUnreachable, StreamCut
from devyard.gateway.flow import FlowControl
from devyard.gateway.headers import downstream_headers

CONNECT_TIMEOUT_S = 10.0
IDLE_REUSE_S = 3.0  # under Node's 5 s keep-alive timeout, so a pooled connection is still open
HIGH_WATER, LOW_WATER = 256 * 1024, 64 * 1024
PEERCRED_SIZE = struct.calcsize("3i")  # struct ucred: pid, uid, gid
PRUNE_EVERY = 16  # new sockets between two looks for engines that are gone
log = logging.getLogger("devyard.gateway")


async def open_connection(factory: Callable[[], asyncio.Protocol], address: str) -> tuple[asyncio.Transport, Any]:
    """Connect `factory`'s protocol to an engine address: a unix socket path (starts with /), else host:port."""
    loop = asyncio.get_running_loop()
    if address.startswith("/"):
        return await loop.create_unix_connection(factory, sock=await connect_unix(address))
    host, _, port = address.rpartition(":")
    return await loop.create_connection(factory, host.strip("[]"), int(port))


async def connect_unix(address: str) -> socket.socket:
    """A connected socket to the engine at `address`, checked to be served by the workspace's own account.

    The socket's folder (run/<uid>/) is made by the manager and given to the workspace's account,
    which cannot give it away. The socket in it is the account's to replace, though, even with a
    link to another workspace's socket, and connect() follows links. So the listener's credentials
    (SO_PEERCRED) must be the folder owner's: a link to anyone else's engine reaches nothing.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, address)
        _, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, PEERCRED_SIZE))
        owner = os.stat(os.path.dirname(address)).st_uid
        if uid != owner:
            raise ConnectionRefusedError(
                f"{address} is served by uid {uid}, not by its workspace's account (uid {owner})"
            )
    except BaseException:
        sock.close()
        raise
    return sock


class Answer:
    """One answer of an engine: status, raw headers, and the body as it arrives."""

    def __init__(
        self, connection: _Connection, status: int, headers: list[tuple[bytes, bytes]], content_length: int | None
    ) -> None:
        self.status, self.headers, self.content_length = status, headers, content_length
        self._connection = connection
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self.complete = False
        self.error: Exception | None = None

    def _feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > HIGH_WATER:
            self._connection.flow.pause_reading()
        self._wake()

    def _end(self, error: Exception | None = None) -> None:
        self.complete, self.error = error is None, error
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, chunk by chunk as the engine sends it; StreamCut if the connection ends early."""
        async for chunk, _ in self.parts():
            yield chunk

    async def parts(self) -> AsyncIterator[tuple[bytes, bool]]:
        """The body as (chunk, whether it is the last); StreamCut if the connection ends early."""
        while True:
            while self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._buffered < LOW_WATER:
                    self._connection.flow.resume_reading()
                yield chunk, self.complete and not self._chunks
            if self.complete:
                return
            if self.error is not None:
                raise StreamCut(str(self.error))
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None

    def release(self) -> None:
        """Done with the answer: its connection goes back to the pool if the body was read whole."""
        self._connection.done(reusable=self.complete and not self._chunks)


class _Connection(asyncio.Protocol):
    """One keep-alive connection to an engine, one exchange at a time."""

    def __init__(self, pool: HttpProxy, socket: str) -> None:
        self.pool, self.socket = pool, socket
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.lost = False
        self.reused = False
        self.heard = False  # bytes of the current answer arrived
        self.idle_since = 0.0
        self.keep_alive = True
        self._until_close = False
        self._head: asyncio.Future[Answer] | None = None
        self._answer: Answer | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self.flow = FlowControl()  # the request body waits for a drain; an answer nobody reads pauses reading

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio.Transport subclasses
        self.flow.transport = self.transport

    def data_received(self, data: bytes) -> None:
        self.heard = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(EngineUnreachable(f"malformed answer from the engine: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.flow.end()
        if self._answer is not None and not self._answer.complete and self._until_close and exc is None:
            self._answer._end()
            return
        self._fail(exc or ConnectionResetError("the engine closed the connection"))

    def pause_writing(self) -> None:
        self.flow.pause_writing()

    def resume_writing(self) -> None:
        self.flow.resume_writing()

    # -- httptools callbacks --------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        length = next((v for n, v in self._headers if n.lower() == b"content-length"), None)
        self._answer = Answer(
            self, self.parser.get_status_code(), self._headers, int(length) if length and length.isdigit() else None
        )
        self.keep_alive = self.parser.should_keep_alive()
        # No length and not chunked: the body ends when the engine closes the connection.
        self._until_close = length is None and not any(n.lower() == b"transfer-encoding" for n, _ in self._headers)
        if self._head is not None and not self._head.done():
            self._head.set_result(self._answer)

    def on_body(self, body: bytes) -> None:
        if self._answer is not None:
            self._answer._feed(body)

    def on_message_complete(self) -> None:
        if self._answer is not None:
            self._answer._end()

    # -- one exchange ----------------------------------------------------------------------------
    def _fail(self, exc: Exception) -> None:
        if self._head is not None and not self._head.done():
            self._head.set_exception(exc)
        elif self._answer is not None and not self._answer.complete:
            self._answer._end(exc)

    async def exchange(self, head: bytes, body: AsyncIterator[bytes] | None, chunked: bool, method: bytes) -> Answer:
        """Send one request and wait for the head of its answer."""
        assert self.transport is not None
        self._head = asyncio.get_running_loop().create_future()
        self._answer, self._headers, self.heard = None, [], False
        self.transport.write(head)
        if body is not None:
            async for chunk in body:
                if self.lost:
                    break
                self.transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                await self.flow.drain()
            if chunked and not self.lost:
                self.transport.write(b"0\r\n\r\n")
        answer = await self._head
        if method == b"HEAD":  # no body follows, whatever the length says; the parser can't know: not reused
            self.keep_alive = False
            answer._end()
        return answer

    def done(self, reusable: bool) -> None:
        """The exchange is over: back to the pool, or closed."""
        self._head = None
        if reusable and self.keep_alive and not self.lost:
            self._answer = None
            self.idle_since = time.monotonic()
            self.reused = True
            self.pool._idle.setdefault(self.socket, []).append(self)
        else:
            self.close()

    def close(self) -> None:
        """Close the connection."""
        if self.transport is not None and not self.lost:
            self.transport.close()
        self.lost = True
        self.flow.end()


class HttpProxy:
    """Forwards HTTP requests to engines; keeps idle connections per engine socket."""

    def __init__(self) -> None:
        self._idle: dict[str, list[_Connection]] = {}
        self._sockets = 0

    async def _connect(self, socket: str) -> _Connection:
        idle = self._idle.get(socket)
        if idle is None:
            self._sockets += 1
            if self._sockets % PRUNE_EVERY == 0:
                self._prune()
            idle = self._idle[socket] = []
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.lost and now - conn.idle_since < IDLE_REUSE_S:
                return conn
            conn.close()
        try:
            _, conn = await asyncio.wait_for(
                open_connection(lambda: _Connection(self, socket), socket), CONNECT_TIMEOUT_S
            )
        except (TimeoutError, OSError) as exc:
            raise EngineUnreachable(f"{type(exc).__name__}: {exc}") from exc
        return conn

    def _prune(self) -> None:
        """Close the idle connections of engines whose socket is gone (the engine stopped)."""
        for address in [s for s in self._idle if s.startswith("/") and not os.path.exists(s)]:
            for conn in self._idle.pop(address):
                conn.close()

    async def forget(self, socket: str) -> None:
        """Close the idle connections of an engine that stopped."""
        for conn in self._idle.pop(socket, []):
            conn.close()

    async def close(self) -> None:
        """Close every idle connection."""
        for address in list(self._idle):
            await self.forget(address)

    async def forward(
        self, scope: Scope, receive: Receive, send: Send, socket: str, path: str, headers: list[tuple[bytes, bytes]]
    ) -> None:
        """Send the request to the engine at `socket` and stream its answer back."""
        await self.relay(await self.open(scope, receive, socket, path, headers), send)

    async def open(
        self, scope: Scope, receive: Receive, socket: str, path: str, headers: list[tuple[bytes, bytes]]
    ) -> Answer:
        """Send the request to the engine at `socket`; its answer, with the body still to read."""
        query = scope.get("query_string", b"")
        method = scope["method"].encode("latin-1")
        has_length = any(n == b"content-length" for n, _ in scope["headers"])
        chunked = not has_length and any(
            n == b"transfer-encoding" for n, _ in scope["headers"]
        )  # uvicorn de-chunked it
        lines = [b"%s %s%s HTTP/1.1\r\n" % (method, path.encode("latin-1"), b"?" + query if query else b"")]
        lines += [n + b": " + v + b"\r\n" for n, v in headers if n != b"expect"]  # uvicorn answered any 100-continue
        if chunked:
            lines.append(b"transfer-encoding: chunked\r\n")
        head = b"".join(lines) + b"\r\n"
        body = _body(receive) if has_length or chunked else None
        for attempt in (1, 2):
            conn = await self._connect(socket)
            try:
                return await conn.exchange(head, body, chunked, method)
            except (OSError, EngineUnreachable) as exc:
                conn.close()
                # A pooled connection the engine had just closed: nothing was taken, so sending again is safe.
                if attempt == 1 and conn.reused and not conn.heard and body is None:
                    continue
                raise EngineUnreachable(f"{type(exc).__name__}: {exc}") from exc
            except BaseException:
                conn.close()
                raise
        raise AssertionError("unreachable")

    @staticmethod
    async def relay(answer: Answer, send: Send, head: bytes = b"") -> None:
        """Stream an engine's answer to the browser: headers, `head` (body bytes already read), the rest as it comes."""
        try:
            await send(
                {"type": "http.response.start", "status": answer.status, "headers": downstream_headers(answer.headers)}
            )
            if head:
                await send({"type": "http.response.body", "body": head, "more_body": True})
            last = False
            async for chunk, last in answer.parts():  # the last chunk ends the response in the same write
                await send({"type": "http.response.body", "body": chunk, "more_body": not last})
            if not last:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except StreamCut as exc:
            # Headers are gone already: all we can do is cut the response short, which the client sees.
            log.info("engine stream ended early: %s", exc)
        finally:
            answer.release()


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
