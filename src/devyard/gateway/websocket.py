"""WebSocket relay between a browser (ASGI side) and an engine (unix socket or host:port, `websockets` client).

Each direction is one task that awaits the other side's send before reading the next message,
so a slow reader holds back the writer (backpressure) instead of queueing without bound. The
engine leg runs without compression (it is a local socket) and without a message size limit
(VS Code sends large messages); the browser leg keeps uvicorn's permessage-deflate.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from devyard.gateway.http import connect_unix

OPEN_TIMEOUT_S = 10.0
# code-server never answers the close of its editor socket: without a short wait each closed tab
# held its relay (and the open-WebSockets gauge) for websockets' default 10 s.
CLOSE_TIMEOUT_S = 1.0


def _sendable(code: int | None) -> int:
    """A close code that may go on the wire (1005/1006 are reserved for 'none' and 'abnormal')."""
    if code is None or code in (1005, 1006, 1015) or not (1000 <= code <= 4999):
        return 1000 if code in (None, 1005) else 1011
    return code


async def relay(
    scope: Scope, receive: Receive, send: Send, address: str, path: str, headers: list[tuple[bytes, bytes]], host: str,
    on_message: Callable[[], None],
) -> None:
    """Open the engine's WebSocket for this request and relay messages both ways until one side closes.

    `on_message` is called for every message relayed (activity tracking; it must be cheap).
    """
    query = scope.get("query_string", b"").decode("latin-1")
    uri = f"ws://{host or 'localhost'}{path}" + (f"?{query}" if query else "")
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    try:
        options: dict[str, Any] = dict(
            additional_headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers],
            subprotocols=scope.get("subprotocols") or None, compression=None, max_size=None, ping_interval=None,
            open_timeout=OPEN_TIMEOUT_S, close_timeout=CLOSE_TIMEOUT_S, user_agent_header=None, proxy=None,
        )
        if address.startswith("/"):  # connected here, its listener checked to be the workspace's own (http.py)
            upstream = await connect(uri, sock=await connect_unix(address), **options)
        else:  # host:port; the URI keeps the browser's host for the engine's Origin check
            host, _, port = address.rpartition(":")
            upstream = await connect(uri, host=host.strip("[]"), port=int(port), **options)
    except InvalidStatus:
        # The engine refused the upgrade (e.g. its own origin check): refuse the browser's too.
        await send({"type": "websocket.close", "code": 1008})
        return
    except (OSError, InvalidHandshake, asyncio.TimeoutError):
        await send({"type": "websocket.close", "code": 1011})
        return
    async with _closing(upstream):
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
        await _pump(receive, send, upstream, on_message)


@contextlib.asynccontextmanager
async def _closing(upstream: ClientConnection) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await upstream.close()


async def _pump(receive: Receive, send: Send, upstream: ClientConnection, on_message: Callable[[], None]) -> None:
    async def browser_to_engine() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close(code=_sendable(message.get("code")))
                return
            on_message()
            data = message.get("bytes")
            await upstream.send(data if data is not None else message.get("text", ""))

    async def engine_to_browser() -> None:
        try:
            async for data in upstream:
                on_message()
                if isinstance(data, bytes):
                    await send({"type": "websocket.send", "bytes": data})
                else:
                    await send({"type": "websocket.send", "text": data})
        except ConnectionClosed:
            pass
        code = upstream.close_code
        await send({"type": "websocket.close", "code": _sendable(code), "reason": upstream.close_reason or ""})

    tasks = [asyncio.create_task(browser_to_engine()), asyncio.create_task(engine_to_browser())]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for t in done:
        exc = t.exception()
        if exc and not isinstance(exc, (ConnectionClosed, OSError, RuntimeError)):
            raise exc
