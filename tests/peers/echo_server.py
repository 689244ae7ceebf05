"""A peer that runs inside a workspace: HTTP GET answers with the request's headers as JSON,
a WebSocket on /ws echoes every message back. Usage: python echo_server.py PORT"""

from __future__ import annotations

import asyncio
import json
import sys

from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


def process_request(connection: ServerConnection, request: Request) -> Response | None:
    if request.path.startswith("/ws"):
        return None
    body = json.dumps({"path": request.path, "headers": {k.lower(): v for k, v in request.headers.raw_items()}})
    return connection.respond(200, body)


async def main(port: int) -> None:
    async with serve(
        echo, "127.0.0.1", port, process_request=process_request, max_size=None, compression=None
    ) as server:
        print("ready", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
