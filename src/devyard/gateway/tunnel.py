"""WebSockets to engines as a byte tunnel: after the gateway admits the upgrade, bytes are relayed, never re-framed.

Written by hand because no server library hands a WebSocket upgrade over as a raw connection:
ASGI (and so uvicorn, Starlette) only delivers decoded messages, which costs a parse, an unmask,
a re-frame and a mask per message and direction — the gateway's WebSocket throughput was a third
of a direct connection's. uvicorn lets the WebSocket protocol class be chosen; this one takes the
upgrade request uvicorn parsed, asks the Gateway whether it may go on (the same checks as every
request: session or token, owner or share, Origin), sends it on to the engine's socket with the
forwarding headers, and once the engine answers 101 copies bytes both ways. Extensions such as
permessage-deflate are then agreed between the browser and the engine themselves.

The Gateway comes from the lifespan state, which uvicorn hands every protocol it makes
(`app_state`): GatewayMiddleware puts it there once the app has started (gateway/app.py). Relies
on uvicorn internals, hence the version range in pyproject.toml: the protocol class's constructor
(config, server_state, app_state), `server_state.connections` and `.tasks` (how uvicorn's shutdown
finds and ends connections: `shutdown()` below), and its websockets-sansio protocol to hand over to.

Backpressure (flow.py): when one side's socket buffer fills, reading from the other side pauses
until it drains. Activity is noted on every chunk relayed, in memory (the idle policy's input).
Each tunnel registers in the gateway's live connections (devyard/live.py): revoking the credential it
was opened with, or the access it relied on, closes it. Anything that is not for a workspace
(its own host, or /w/) goes to uvicorn's own WebSocket protocol unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast
from urllib.parse import unquote

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from devyard.errors import error_body
from devyard.forwarded import mark_unix
from devyard.gateway import access
from devyard.gateway.app import STATE_KEY, Admitted, Gateway
from devyard.gateway.flow import FlowControl
from devyard.gateway.headers import WEBSOCKET_TUNNEL_DROP, filter_head, upstream_headers
from devyard.gateway.http import open_connection
from devyard.live import Live

log = logging.getLogger("devyard.gateway")
MAX_HEAD = 64 * 1024  # an engine's 101 answer is a few hundred bytes
_REASONS = {
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class TunnelProtocol(asyncio.Protocol):
    """uvicorn's WebSocket protocol class: /w/ upgrades become tunnels, the rest uvicorn's own protocol."""

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any]) -> None:
        self.config, self.server_state, self.app_state = config, server_state, app_state
        self.gateway: Gateway | None = None  # from the lifespan state, when the upgrade is one for a workspace
        self.browser: asyncio.Transport | None = None
        self.flow = FlowControl()  # the browser's side
        self.engine: asyncio.Transport | None = None
        self.engine_flow: FlowControl | None = None
        self.early: list[bytes] = []  # browser bytes that arrived before the engine's connection was up
        self.started = False
        self.task: asyncio.Task[None] | None = None
        self.on_data: Any = None
        self.live: Live | None = None  # registered once open: revoking its credential or access closes it

    # -- the browser's side -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.browser = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio.Transport subclasses
        self.flow.transport = self.browser

    def data_received(self, data: bytes) -> None:
        if not self.started:
            self.started = True
            self._begin(data)
        elif self.engine is not None:
            if self.on_data:
                self.on_data()
            self.engine.write(data)
        else:
            self.early.append(data)

    def eof_received(self) -> bool | None:
        if self.engine is not None and self.engine.can_write_eof():
            self.engine.write_eof()
            return True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        self.flow.end()
        if self.live is not None and self.gateway is not None:
            self.gateway.live.discard(self.live)
        if self.engine is not None:
            self.engine.close()
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def pause_writing(self) -> None:
        # The browser's socket is full: stop reading from the engine until it drains.
        if self.engine_flow is not None:
            self.engine_flow.pause_reading()

    def resume_writing(self) -> None:
        if self.engine_flow is not None:
            self.engine_flow.resume_reading()

    def shutdown(self) -> None:
        """uvicorn stops: end the tunnel (the browser reconnects to the next manager)."""
        assert self.browser is not None
        self.browser.close()

    # -- the upgrade --------------------------------------------------------------------------
    def _begin(self, head: bytes) -> None:
        assert self.browser is not None
        scope = _scope(head, self.browser)
        gateway: Gateway | None = self.app_state.get(STATE_KEY)
        if (
            scope is None
            or gateway is None
            or not gateway.claims(scope)
            or not gateway.origins.host_allowed(access.header(scope, b"host"))
        ):
            self._hand_over(head)
            return
        self.gateway = gateway
        self.server_state.connections.add(self)
        self.flow.pause_reading()  # until the engine's side is up
        self.task = asyncio.get_running_loop().create_task(self._open(scope))
        self.server_state.tasks.add(self.task)
        self.task.add_done_callback(self.server_state.tasks.discard)

    def _hand_over(self, head: bytes) -> None:
        """Not ours: uvicorn's own WebSocket protocol takes the connection, as if it had been chosen."""
        assert self.browser is not None
        protocol = WebSocketsSansIOProtocol(
            config=self.config, server_state=self.server_state, app_state=self.app_state
        )
        protocol.connection_made(self.browser)
        protocol.data_received(head)
        # uvicorn makes this protocol the transport's right after this call returns: swap after that.
        asyncio.get_running_loop().call_soon(self.browser.set_protocol, protocol)

    async def _open(self, scope: dict[str, Any]) -> None:
        assert self.browser is not None and self.gateway is not None
        gateway = self.gateway
        # Behind a trusted proxy (forwarded.py): its client and scheme, as every other request gets them.
        scope = await _behind_proxy(scope, self.config.forwarded_allow_ips)
        admitted = await gateway.admit(scope)
        if not isinstance(admitted, Admitted):
            extra = [("retry-after", "2")] if admitted.starting else []
            self._refuse(admitted.status, admitted.code, admitted.message, extra)
            return
        route = admitted.route
        assert route.address is not None  # admitted: running, with an engine address
        client = scope["client"][0] if scope.get("client") else ""
        headers = upstream_headers(
            scope["headers"],
            drop=WEBSOCKET_TUNNEL_DROP,
            used_bearer=admitted.used_bearer,
            client=client,
            scheme=scope["scheme"],
        )
        query = scope["query_string"]
        path = access.raw_rest(scope, admitted.target).encode("latin-1")
        request = b"".join(
            [
                b"GET ",
                path,
                b"?" + query if query else b"",
                b" HTTP/1.1\r\n",
                b"connection: Upgrade\r\nupgrade: websocket\r\n",
                *(n + b": " + v + b"\r\n" for n, v in headers),
                b"\r\n",
            ]
        )
        engine_side = _EngineSide(self)
        try:
            transport, _ = await asyncio.wait_for(open_connection(lambda: engine_side, route.address), 10)
        except (TimeoutError, OSError) as exc:
            log.warning("workspace %s/%s: engine unreachable for a WebSocket: %s", route.owner, route.name, exc)
            gateway.service.recheck_soon(route)
            self._refuse(
                502,
                "engine_unreachable",
                "the workspace engine is not answering; it is being checked, try again shortly",
                [],
            )
            return
        transport.write(request)
        try:
            head = await asyncio.wait_for(engine_side.head, 10)
        except (TimeoutError, ConnectionError) as exc:
            transport.close()
            self._refuse(
                502,
                "engine_unreachable",
                f"the workspace engine did not answer the WebSocket upgrade: {exc or 'timeout'}",
                [],
            )
            return
        self.browser.write(filter_head(head))
        if not head.startswith((b"HTTP/1.1 101", b"HTTP/1.0 101")):
            # The engine refused (its own Origin check, say): the browser gets that answer; no tunnel.
            transport.close()
            self.browser.close()
            return
        ident = admitted.decision.identity
        self.live = gateway.live.add(
            Live(
                admitted.decision.credential or "",
                ident.user_id if ident else 0,
                ident.name if ident else "",
                self.browser.close,
                route.uid,
                admitted.target.port,
            )
        )
        uid, touch, metrics = route.uid, gateway.service.touch, gateway.service.metrics
        self.on_data = lambda: touch(uid)
        engine_side.on_data = self.on_data
        metrics.websockets.inc()
        engine_side.on_close = metrics.websockets.dec
        self.engine, self.engine_flow = transport, engine_side.flow
        for data in self.early:
            transport.write(data)
        self.early.clear()
        if engine_side.rest:
            self.browser.write(engine_side.rest)
        self.flow.resume_reading()

    def _refuse(self, status: int, code: str, message: str, extra: list[tuple[str, str]]) -> None:
        assert self.browser is not None
        body = error_body(code, message)
        lines = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
            "content-type: application/json",
            f"content-length: {len(body)}",
            "connection: close",
            *(f"{n}: {v}" for n, v in extra),
        ]
        self.browser.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        self.browser.close()


class _EngineSide(asyncio.Protocol):
    """The engine's side of a tunnel: its 101 answer first, then bytes for the browser."""

    def __init__(self, tunnel: TunnelProtocol) -> None:
        self.tunnel = tunnel
        self.head: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.buffer = b""
        self.rest = b""  # bytes that came right behind the 101 answer
        self.transport: asyncio.Transport | None = None
        self.flow = FlowControl()  # the engine's side
        self.on_data: Any = None
        self.on_close: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.flow.transport = self.transport

    def data_received(self, data: bytes) -> None:
        if not self.head.done():
            self.buffer += data
            end = self.buffer.find(b"\r\n\r\n")
            if end >= 0:
                self.head.set_result(self.buffer[: end + 4])
                self.rest, self.buffer = self.buffer[end + 4 :], b""
            elif len(self.buffer) > MAX_HEAD:
                self.head.set_exception(ConnectionError("the engine's answer to the upgrade is too long"))
            return
        if (
            self.tunnel.engine is None
        ):  # the 101 answer is not passed on yet (the upgrade's task resumes later): keep the order
            self.rest += data
            return
        if self.on_data:
            self.on_data()
        assert self.tunnel.browser is not None
        self.tunnel.browser.write(data)

    def eof_received(self) -> bool | None:
        browser = self.tunnel.browser
        if browser is not None and browser.can_write_eof() and self.head.done():
            browser.write_eof()
            return True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.flow.end()
        if not self.head.done():
            self.head.set_exception(ConnectionError("the engine closed the connection"))
        if self.tunnel.browser is not None and self.tunnel.engine is not None:
            self.tunnel.browser.close()
        if self.on_close:
            self.on_close()
            self.on_close = None

    def pause_writing(self) -> None:
        # The engine's socket is full: stop reading from the browser until it drains.
        self.tunnel.flow.pause_reading()

    def resume_writing(self) -> None:
        self.tunnel.flow.resume_reading()


def _scope(head: bytes, transport: asyncio.Transport) -> dict[str, Any] | None:
    """The ASGI-like scope of the upgrade request uvicorn already parsed and handed over as bytes."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        return None
    target = parts[1]
    path, _, query = target.partition(b"?")
    headers = []
    for line in lines[1:]:
        if not line:
            break
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    peer, own = transport.get_extra_info("peername"), transport.get_extra_info("sockname")
    tls = transport.get_extra_info("sslcontext") is not None
    scope = {
        "type": "websocket",
        "path": unquote(path.decode("latin-1")),
        "raw_path": path,
        "query_string": query,
        "headers": headers,
        "client": peer if isinstance(peer, tuple) else None,
        "server": (own, None) if isinstance(own, str) else own,
        "scheme": "wss" if tls else "ws",
    }
    mark_unix(scope)
    return scope


async def _behind_proxy(scope: dict[str, Any], trusted: Any) -> dict[str, Any]:
    """The scope as uvicorn's ProxyHeadersMiddleware makes it: client and scheme from a trusted proxy's headers."""
    seen: dict[str, Any] = {}

    async def keep(inner: Any, _receive: Any, _send: Any) -> None:
        seen.update(inner)

    await ProxyHeadersMiddleware(keep, trusted_hosts=trusted)(scope, None, None)  # type: ignore[arg-type]
    return seen or scope
