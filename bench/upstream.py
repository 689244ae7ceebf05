"""The benchmarks' upstream: a small, fast HTTP and WebSocket server standing in for an engine.

    GET /small   200, 100 bytes            GET /big   200, 10 MiB (sent in 1 MiB writes)
    WS  /ws      every message echoed      WS  /sink  counts bytes; answers the total to a text "done"

uvicorn with uvloop and httptools (the fastest server in the venv), listening on a unix socket and a
TCP port at once, so every proxy gets the same upstream. Usage: python bench/upstream.py SOCKET PORT;
prints "ready" once both listen.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import uvicorn

SMALL = b"x" * 100
BIG = b"y" * (10 << 20)
CHUNK = 1 << 20


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI app: two GET routes and two WebSocket routes."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] == "websocket":
        await _websocket(scope, receive, send)
        return
    body = BIG if scope["path"].endswith("/big") else SMALL
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/octet-stream"), (b"content-length", str(len(body)).encode())],
        }
    )
    for start in range(0, len(body), CHUNK):
        await send(
            {"type": "http.response.body", "body": body[start : start + CHUNK], "more_body": start + CHUNK < len(body)}
        )


async def _websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    sink = scope["path"].endswith("/sink")
    total = 0
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes") or (message.get("text") or "").encode()
        if not sink:
            await send(
                {"type": "websocket.send", "bytes": message["bytes"]}
                if message.get("bytes") is not None
                else {"type": "websocket.send", "text": message["text"]}
            )
        elif message.get("text") == "done":
            await send({"type": "websocket.send", "text": str(total)})
            total = 0
        else:
            total += len(data)


async def main(socket: str, port: int) -> None:
    """Serve on both addresses until killed."""
    common: dict[str, Any] = {
        "loop": "none",
        "http": "httptools",
        "ws": "websockets",
        "log_level": "warning",
        "lifespan": "off",
        "ws_max_size": 1 << 26,
        "ws_per_message_deflate": False,
    }
    servers = [
        uvicorn.Server(uvicorn.Config(app, uds=socket, **common)),
        uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **common)),
    ]
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    while not all(s.started for s in servers):
        await asyncio.sleep(0.02)
    print("ready", flush=True)
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(sys.argv[1], int(sys.argv[2])))
