"""Whose X-Forwarded-For and X-Forwarded-Proto the manager believes: a proxy in `trusted_proxies`, or one on its own unix socket.

A reverse proxy on the same host used to reach devyard over loopback, which then had to trust
127.0.0.1 for X-Forwarded-For: any local process (a workspace's terminal, where engines are not
sandboxed) could then claim any client address and walk around the login throttle. With
`devyard up --uds PATH` the proxy connects over a unix socket that only the accounts the admin
allows can open (mode 0660, the group of its folder), and connections on it are the trusted ones:
no address needs trusting. The client is the last address the proxy added (nginx's
`$proxy_add_x_forwarded_for`), skipping any `trusted_proxies` in front of it.

uvicorn's ProxyHeadersMiddleware does the parsing; what it cannot know is that a connection came
over a unix socket (its client is None there), so such a connection is given a peer of its own
name, UNIX_PEER, which is trusted.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

UNIX_PEER = "unix"


def trusted_hosts(trusted_proxies: list[str]) -> list[str]:
    """What uvicorn is told to trust: the configured proxies and, always, the manager's own unix socket."""
    return [*trusted_proxies, UNIX_PEER]


def mark_unix(scope: dict[str, Any]) -> None:
    """Give a connection that came over a unix socket (no client, a server without a port) the peer UNIX_PEER."""
    server = scope.get("server")
    if not scope.get("client") and server and server[1] is None:
        scope["client"] = (UNIX_PEER, 0)


class ForwardedHeaders:
    """ASGI middleware: the client address and scheme from a trusted proxy's headers, nobody else's."""

    def __init__(self, app: ASGIApp, trusted_proxies: list[str]) -> None:
        self.inner = ProxyHeadersMiddleware(app, trusted_hosts=trusted_hosts(trusted_proxies))  # type: ignore[arg-type]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            mark_unix(scope)  # type: ignore[arg-type]
        await self.inner(scope, receive, send)  # type: ignore[arg-type]


def bind_unix(path: Path) -> socket.socket:
    """A listening unix socket at `path` (a stale one replaced), mode 0660 with the group of its folder."""
    path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            path.unlink()
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o117)  # never a moment with wider permissions than 0660
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chown(path, -1, path.parent.stat().st_gid)
    os.chmod(path, 0o660)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
