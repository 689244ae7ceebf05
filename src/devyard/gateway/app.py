"""The gateway as a plain ASGI app in front of FastAPI's routing (it is on every keystroke's path).

GatewayMiddleware hands /w/... to Gateway and everything else to the API and dashboard.
"""

from __future__ import annotations

import json
import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from devyard.auth.csrf import origin_matches
from devyard.auth.identity import Authenticator
from devyard.gateway import access
from devyard.gateway.headers import WEBSOCKET_HANDSHAKE, upstream_headers
from devyard.gateway.http import EngineUnreachable, HttpProxy
from devyard.gateway.websocket import relay
from devyard.models import Status
from devyard.errors import DevyardError
from devyard.web.render import render
from devyard.workspaces.access import Route
from devyard.workspaces.service import WorkspaceService

log = logging.getLogger("devyard.gateway")


class Gateway:
    """Authenticates, authorizes and proxies requests under /w/."""

    def __init__(self, auth: Authenticator, service: WorkspaceService) -> None:
        self.auth = auth
        self.service = service
        self.http = HttpProxy()

    async def close(self) -> None:
        """Close engine connection pools."""
        await self.http.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._handle(scope, receive, send)
            return
        began, code = time.perf_counter(), 500

        async def sending(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self._handle(scope, receive, sending)
        finally:
            self.service.metrics.request(code, time.perf_counter() - began)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = access.parse_target(scope["path"])
        if target is None:
            await _respond(scope, send, 404, "not_found", "no such workspace")
            return
        decision = await access.check(scope, target, self.auth, self.service)
        if decision.identity is None:
            if scope["type"] == "http" and access.wants_html(scope):
                await _redirect(send, access.login_location(scope))
            else:
                await _respond(scope, send, 401, "not_authenticated", "log in or send an API token")
            return
        route = decision.route
        if route is None:
            await _respond(scope, send, 404, "workspace_not_found", f"no workspace '{target.owner}/{target.name}'")
            return
        if scope["type"] == "websocket" and not self._origin_ok(scope, decision):
            await _respond(scope, send, 403, "origin_refused", "WebSocket from another origin refused")
            return
        if not target.rest:
            query = scope.get("query_string", b"").decode("latin-1")
            await _redirect(send, target.prefix + "/" + (f"?{query}" if query else ""))
            return
        if route.status != Status.running or not route.socket:
            await self._not_running(scope, send, route)
            return
        self.service.touch(route.uid)
        await self._proxy(scope, receive, send, route, target, decision.used_bearer)

    @staticmethod
    def _origin_ok(scope: Scope, decision: access.Decision) -> bool:
        """Cookie-carried WebSockets must come from our own pages; token clients may omit Origin."""
        origin = access.header(scope, b"origin")
        if origin is None and decision.identity is not None and decision.identity.via == "token":
            return True
        return origin_matches(origin, access.header(scope, b"host"))

    async def _proxy(self, scope: Scope, receive: Receive, send: Send, route: Route, target: access.Target, used_bearer: bool) -> None:
        assert route.socket is not None
        client = scope["client"][0] if scope.get("client") else ""
        scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
        path = target.rest
        if scope["type"] == "websocket":
            headers = upstream_headers(scope["headers"], drop=WEBSOCKET_HANDSHAKE, used_bearer=used_bearer, client=client, scheme=scheme)
            uid, touch = route.uid, self.service.touch
            self.service.metrics.websockets.inc()
            try:
                await relay(scope, receive, send, route.socket, path, headers, access.header(scope, b"host") or "", lambda: touch(uid))
            finally:
                self.service.metrics.websockets.dec()
            return
        headers = upstream_headers(scope["headers"], drop=frozenset(), used_bearer=used_bearer, client=client, scheme=scheme)
        try:
            await self.http.forward(scope, receive, send, route.socket, path, headers)
        except EngineUnreachable as exc:
            log.warning("workspace %s/%s: engine unreachable: %s", route.owner, route.name, exc)
            await self.http.forget(route.socket)
            self.service.recheck_soon(route)
            await _respond(scope, send, 502, "engine_unreachable", "the workspace engine is not answering; it is being checked, try again shortly")

    async def _not_running(self, scope: Scope, send: Send, route: Route) -> None:
        """Start a stopped workspace for its owner; show a page that follows on when it is ready."""
        try:
            await self.service.ensure_started(route)
        except DevyardError as exc:  # over a quota: say so instead of a starting page that never ends
            if scope["type"] == "http" and access.wants_html(scope):
                page = render("error.html", me=None, title="Cannot start this workspace", message=exc.message)
                await _send(send, exc.status, page.encode(), b"text/html; charset=utf-8", extra=[(b"cache-control", b"no-store")])
            else:
                await _respond(scope, send, exc.status, exc.code, exc.message)
            return
        if scope["type"] == "http" and access.wants_html(scope):
            page = render("starting.html", owner=route.owner, name=route.name)
            await _send(send, 503, page.encode(), b"text/html; charset=utf-8", extra=[(b"retry-after", b"2"), (b"cache-control", b"no-store")])
        else:
            await _respond(scope, send, 503, "workspace_starting", f"workspace '{route.name}' is starting; retry shortly", extra=[(b"retry-after", b"2")])


class GatewayMiddleware:
    """Sends /w/... to the app's Gateway (scope["app"].state.gateway), everything else on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope["path"].startswith("/w/"):
            await scope["app"].state.gateway(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def _send(send: Send, status: int, body: bytes, content_type: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _respond(scope: Scope, send: Send, status: int, code: str, message: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    """A JSON error for HTTP; for a WebSocket, refuse the upgrade (the browser sees the status)."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await _send(send, status, body, b"application/json", extra)


async def _redirect(send: Send, location: str) -> None:
    await send({"type": "http.response.start", "status": 302, "headers": [(b"location", location.encode("latin-1")), (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})
