"""The gateway as a plain ASGI app in front of FastAPI's routing (it is on every keystroke's path).

GatewayMiddleware hands /w/... to Gateway and everything else to the API and dashboard.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass

from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from devyard.auth.csrf import origin_matches
from devyard.auth.identity import Authenticator
from devyard.gateway import access
from devyard.gateway.headers import WEBSOCKET_HANDSHAKE, upstream_headers
from devyard.gateway.assets import Asset, NotInInstall, StaticAssets
from devyard.gateway.http import EngineUnreachable, HttpProxy
from devyard.gateway.websocket import relay
from devyard.models import Status
from devyard.errors import DevyardError
from devyard.web.render import render
from devyard.workspaces.access import Route
from devyard.workspaces.service import WorkspaceService

log = logging.getLogger("devyard.gateway")


@dataclass(frozen=True, slots=True)
class Admitted:
    """A request that may reach its workspace's engine."""

    route: Route
    target: access.Target
    used_bearer: bool


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a request does not reach an engine, and how to say so."""

    status: int
    code: str
    message: str
    location: str | None = None  # a redirect
    login: bool = False  # a browser goes to the login page
    starting: Route | None = None  # the workspace is starting: a browser gets the starting page
    title: str | None = None  # a browser gets an error page with this title


class Gateway:
    """Authenticates, authorizes and proxies requests under /w/."""

    def __init__(self, auth: Authenticator, service: WorkspaceService, assets: StaticAssets) -> None:
        self.auth = auth
        self.service = service
        self.http = HttpProxy()
        self.assets = assets

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

    async def admit(self, scope: Scope) -> Admitted | Refused:
        """Who is asking for which workspace, and whether the request may go on to its engine.

        A stopped workspace is started here for someone who may open it (the refusal says so).
        """
        target = access.parse_target(scope["path"])
        if target is None:
            return Refused(404, "not_found", "no such workspace")
        decision = await access.check(scope, target, self.auth, self.service)
        if decision.identity is None:
            return Refused(401, "not_authenticated", "log in or send an API token", login=True)
        route = decision.route
        if route is None:
            return Refused(404, "workspace_not_found", f"no workspace '{target.owner}/{target.name}'")
        if scope["type"] == "websocket" and not self._origin_ok(scope, decision):
            return Refused(403, "origin_refused", "WebSocket from another origin refused")
        if not target.rest:
            query = scope.get("query_string", b"").decode("latin-1")
            return Refused(302, "redirect", "", location=target.prefix + "/" + (f"?{query}" if query else ""))
        if route.status != Status.running or not route.address:
            try:
                await self.service.ensure_started(route)
            except DevyardError as exc:  # over a quota: say so instead of a starting page that never ends
                return Refused(exc.status, exc.code, exc.message, title="Cannot start this workspace")
            return Refused(503, "workspace_starting", f"workspace '{route.name}' is starting; retry shortly", starting=route)
        self.service.touch(route.uid)
        return Admitted(route, target, decision.used_bearer)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        admitted = await self.admit(scope)
        if isinstance(admitted, Admitted):
            await self._proxy(scope, receive, send, admitted.route, admitted.target, admitted.used_bearer)
            return
        refused = admitted
        page = scope["type"] == "http" and access.wants_html(scope)
        if refused.location:
            await _redirect(send, refused.location)
        elif refused.login and page:
            await _redirect(send, access.login_location(scope))
        elif refused.starting and page:
            html = render("starting.html", owner=refused.starting.owner, name=refused.starting.name)
            await _send(send, 503, html.encode(), b"text/html; charset=utf-8", extra=[(b"retry-after", b"2"), (b"cache-control", b"no-store")])
        elif refused.title and page:
            html = render("error.html", me=None, title=refused.title, message=refused.message)
            await _send(send, refused.status, html.encode(), b"text/html; charset=utf-8", extra=[(b"cache-control", b"no-store")])
        else:
            await _respond(scope, send, refused.status, refused.code, refused.message,
                           extra=[(b"retry-after", b"2")] if refused.starting else None)

    @staticmethod
    def _origin_ok(scope: Scope, decision: access.Decision) -> bool:
        """Cookie-carried WebSockets must come from our own pages; token clients may omit Origin."""
        origin = access.header(scope, b"origin")
        if origin is None and decision.identity is not None and decision.identity.via == "token":
            return True
        return origin_matches(origin, access.header(scope, b"host"))

    async def _proxy(self, scope: Scope, receive: Receive, send: Send, route: Route, target: access.Target, used_bearer: bool) -> None:
        assert route.address is not None
        client = scope["client"][0] if scope.get("client") else ""
        scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
        path = access.raw_rest(scope, target)  # the engine gets the path byte for byte as the browser sent it
        if scope["type"] == "websocket":
            headers = upstream_headers(scope["headers"], drop=WEBSOCKET_HANDSHAKE, used_bearer=used_bearer, client=client, scheme=scheme)
            uid, touch = route.uid, self.service.touch
            self.service.metrics.websockets.inc()
            try:
                await relay(scope, receive, send, route.address, path, headers, access.header(scope, b"host") or "", lambda: touch(uid))
            finally:
                self.service.metrics.websockets.dec()
            return
        key = self.assets.key(scope, path)
        if key is not None:  # the installed engine's own static files: from disk, never from this engine
            await self._static(scope, send, key)
            return
        headers = upstream_headers(scope["headers"], drop=frozenset(), used_bearer=used_bearer, client=client, scheme=scheme)
        try:
            await self.http.forward(scope, receive, send, route.address, path, headers)
        except EngineUnreachable as exc:
            log.warning("workspace %s/%s: engine unreachable: %s", route.owner, route.name, exc)
            await self.http.forget(route.address)
            self.service.recheck_soon(route)
            await _respond(scope, send, 502, "engine_unreachable", "the workspace engine is not answering; it is being checked, try again shortly")

    async def _static(self, scope: Scope, send: Send, key: tuple[str, str, str]) -> None:
        """Answer a request for the engine's versioned static tree from the trusted install."""
        try:
            found, hit = await self.assets.get(key)
        except NotInInstall:
            await _send(send, 404, b"Not found.", b"text/plain", extra=[(b"cache-control", b"no-store")])
            return
        except (OSError, asyncio.TimeoutError, RuntimeError) as exc:
            log.warning("static file %s could not be read from the engine install: %s", key[1], exc)
            await _respond(scope, send, 503, "static_unavailable", "this file of the editor could not be read; try again shortly")
            return
        head = scope["method"] == "HEAD"
        if isinstance(found, Asset):
            await send({"type": "http.response.start", "status": 200, "headers": found.response_headers(b"hit" if hit else b"miss")})
            await send({"type": "http.response.body", "body": b"" if head else found.body})
            return
        await send({"type": "http.response.start", "status": 200, "headers": found.response_headers()})
        if not head:
            async for chunk in found.chunks():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


class GatewayMiddleware:
    """In front of the whole app: /w/... goes straight to its Gateway, everything else on to FastAPI.

    Outside FastAPI's own middleware (error pages, telemetry, body limits, sessions) on purpose:
    none of it applies to proxied requests, and each layer costs every keystroke some time.
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope["path"].startswith("/w/"):
            await self.app.state.gateway(scope, receive, send)
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
