"""The gateway as a plain ASGI app in front of FastAPI's routing (it is on every keystroke's path).

GatewayMiddleware hands workspace hosts (origins.py) and /w/... to Gateway, and everything else
to the API and dashboard; with public_url set, a Host that is neither is refused.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlencode

from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from devyard.auth.csrf import origin_matches
from devyard.auth.identity import Authenticator, Ended
from devyard.gateway import access
from devyard.gateway.headers import WEBSOCKET_HANDSHAKE, upstream_headers
from devyard.gateway.assets import Asset, NotInInstall, StaticAssets
from devyard.gateway.handoff import AUTH_PATH, WORKSPACE_COOKIE, Handoff
from devyard.origins import RESERVED_PREFIX
from devyard.live import Live, LiveConnections
from devyard.gateway.http import EngineUnreachable, HttpProxy
from devyard.gateway.websocket import relay
from devyard.models import Status
from devyard.errors import DevyardError
from devyard.web.render import render
from devyard.web.views import safe_next
from devyard.workspaces.ports import may_reach
from devyard.workspaces.access import Route
from devyard.workspaces.service import WorkspaceService

log = logging.getLogger("devyard.gateway")
REVOKED = "revoke:"  # a replica notice about credentials, not a workspace uid


@dataclass(frozen=True, slots=True)
class Admitted:
    """A request that may reach its workspace's engine."""

    route: Route
    target: access.Target
    used_bearer: bool
    decision: access.Decision


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
    target: access.Target | None = None  # what a browser sent to log in was asking for


class Gateway:
    """Authenticates, authorizes and proxies requests for workspace hosts and under /w/."""

    def __init__(self, auth: Authenticator, service: WorkspaceService, assets: StaticAssets, handoff: Handoff) -> None:
        self.auth = auth
        self.service = service
        self.http = HttpProxy()
        self.assets = assets
        self.handoff = handoff
        self.origins = service.origins
        self.live = LiveConnections()
        service.access_changed.append(self._recheck)
        auth.listeners.append(self._ended)
        service.notices.append(self._ended_elsewhere)

    async def _ended(self, ended: Ended) -> None:
        """Credentials ended here: close what they opened, here and (through the database's notices) on the other replicas."""
        self._close(ended)
        await self.service.broadcast(f"{REVOKED}{ended.kind}:{ended.key}")

    def _ended_elsewhere(self, notice: str) -> None:
        """Another replica ended credentials: forget cached identities, close what they opened here."""
        if notice.startswith(REVOKED):
            kind, _, key = notice[len(REVOKED):].partition(":")
            self.auth.invalidate()
            self._close(Ended(kind, key))

    def _close(self, ended: Ended) -> None:
        if ended.kind == "credential":
            self.live.close_credential(ended.key)
        elif ended.kind == "sessions":
            self.live.close_sessions_of(int(ended.key))
        elif ended.kind == "user":
            self.live.close_user(int(ended.key))

    def claims(self, scope: Scope) -> bool:
        """Whether a request is the gateway's: for a workspace host, or under /w/."""
        return self.origins.under_domain(access.header(scope, b"host")) or scope["path"].startswith("/w/")

    def target(self, scope: Scope) -> access.Target | None:
        """The workspace (and port) a request names: by its host, or by its /w/ path in path mode."""
        if self.origins.under_domain(access.header(scope, b"host")):
            return access.host_target(scope, self.origins)
        return access.parse_target(scope["path"])

    def _recheck(self, uid: str) -> None:
        """Who may reach workspace `uid` narrowed: end its live connections that would no longer be let in."""
        route = self.service.route_by_uid(uid)

        def still(live: Live) -> bool:
            if route is None:
                return False
            if live.port is None:
                return route.may_open(live.user)
            return may_reach(route, self.service.ports.of(uid, live.port), live.user if live.user_id else None)

        self.live.recheck(uid, still)

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
        target = self.target(scope)
        if target is None:
            return Refused(404, "not_found", "no such workspace")
        if not target.hosted and not self.origins.path_mode:  # a link from path mode: the workspace has its own origin now
            route = self.service.route(target.owner or "", target.name or "")
            if route is None or scope["type"] != "http":
                return Refused(404, "not_found", "workspaces are served on origins of their own here; see the workspace's url")
            query = scope.get("query_string", b"").decode("latin-1")
            where = self.origins.workspace_url(route.owner, route.name, route.uid).rstrip("/") + (target.rest or "/")
            return Refused(302, "redirect", "", location=where + (f"?{query}" if query else ""))
        decision = await access.check(scope, target, self.auth, self.service, self.handoff)
        route = decision.route
        if route is None and decision.identity is None:
            return Refused(401, "not_authenticated", "log in or send an API token", login=True, target=target)
        if route is None:
            return Refused(404, "workspace_not_found", f"no workspace '{target.shown}'")
        if scope["type"] == "websocket" and not self._origin_ok(scope, decision):
            return Refused(403, "origin_refused", "WebSocket from another origin refused")
        if not target.rest and not target.hosted:
            query = scope.get("query_string", b"").decode("latin-1")
            return Refused(302, "redirect", "", location=target.prefix + "/" + (f"?{query}" if query else ""))
        if route.status != Status.running or not route.address:
            if decision.identity is None:  # a public port's visitor: starting it is for those who may open the workspace
                return Refused(503, "workspace_not_running", f"workspace '{route.name}' is not running", title="This workspace is not running",
                               target=target)
            try:
                await self.service.ensure_started(route)
            except DevyardError as exc:  # over a quota: say so instead of a starting page that never ends
                return Refused(exc.status, exc.code, exc.message, title="Cannot start this workspace", target=target)
            return Refused(503, "workspace_starting", f"workspace '{route.name}' is starting; retry shortly", starting=route, target=target)
        self.service.touch(route.uid)
        return Admitted(route, target, decision.used_bearer, decision)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"].startswith(RESERVED_PREFIX) and self.origins.under_domain(access.header(scope, b"host")):
            if scope["type"] == "http" and scope["path"] == AUTH_PATH:
                await self._redeem(scope, send)
            else:  # the gateway's own paths on a workspace's origin: never an engine's
                await _respond(scope, send, 404, "not_found", f"nothing at {scope['path']}")
            return
        admitted = await self.admit(scope)
        if isinstance(admitted, Admitted):
            ident, credential, peer = admitted.decision.identity, admitted.decision.credential, scope.get("client")
            if scope["type"] == "http" and ident is not None and credential and peer:
                self.live.used(tuple(peer), credential, ident.user_id, ident.name, admitted.route.uid, admitted.target.port)
            await self._proxy(scope, receive, send, admitted.route, admitted.target, admitted.used_bearer)
            return
        refused = admitted
        page = scope["type"] == "http" and access.wants_html(scope)
        if refused.location:
            await _redirect(send, refused.location)
        elif refused.login and page and refused.target is not None and refused.target.hosted:
            await _redirect(send, self._to_dashboard(scope))
        elif refused.login and page:
            await _redirect(send, access.login_location(scope))
        elif refused.starting and page:
            html = render("starting.html", owner=refused.starting.owner, name=refused.starting.name, base=self._base(refused))
            await _send(send, 503, html.encode(), b"text/html; charset=utf-8", extra=[(b"retry-after", b"2"), (b"cache-control", b"no-store")])
        elif refused.title and page:
            html = render("error.html", me=None, title=refused.title, message=refused.message, base=self._base(refused))
            await _send(send, refused.status, html.encode(), b"text/html; charset=utf-8", extra=[(b"cache-control", b"no-store")])
        else:
            await _respond(scope, send, refused.status, refused.code, refused.message,
                           extra=[(b"retry-after", b"2")] if refused.starting else None)

    def _base(self, refused: Refused) -> str:
        """Where the gateway's own pages take their styles and links from: the dashboard's URL on a workspace's origin."""
        return self.origins.dashboard_url() if refused.target is not None and refused.target.hosted else ""

    def _to_dashboard(self, scope: Scope) -> str:
        """Where a browser without this workspace origin's cookie goes: the dashboard, which sends it back with a code."""
        query = scope.get("query_string", b"").decode("latin-1")
        back = scope["path"] + (f"?{query}" if query else "")
        return self.origins.dashboard_url() + "/auth/workspace?" + urlencode({"host": access.header(scope, b"host") or "", "next": back})

    async def _redeem(self, scope: Scope, send: Send) -> None:
        """/_devyard/auth?code=...&next=... on a workspace origin: trade the dashboard's one-time code for this origin's cookie."""
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        target = access.host_target(scope, self.origins)
        route = access.find_route(self.service, target) if target is not None else None
        grant = await self.handoff.redeem((query.get("code") or [""])[0])
        if target is None or route is None or grant is None or grant.uid != route.uid or grant.port != target.port:
            await _respond(scope, send, 403, "handoff_refused", "this sign-in link is not valid here, was used already or expired; open the workspace again from the dashboard")
            return
        next_path = safe_next((query.get("next") or ["/"])[0])
        cookie = SimpleCookie()
        cookie[WORKSPACE_COOKIE] = self.handoff.cookie(grant)
        morsel = cookie[WORKSPACE_COOKIE]
        morsel["path"], morsel["httponly"], morsel["samesite"] = "/", True, "Lax"
        morsel["max-age"] = self.auth.session_ttl.total_seconds().__int__()
        if self.origins.secure or scope.get("scheme") == "https":
            morsel["secure"] = True
        await send({"type": "http.response.start", "status": 302, "headers": [
            (b"location", next_path.encode("latin-1")), (b"set-cookie", morsel.OutputString().encode("latin-1")),
            (b"referrer-policy", b"no-referrer"), (b"cache-control", b"no-store"), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    @staticmethod
    def _origin_ok(scope: Scope, decision: access.Decision) -> bool:
        """Cookie-carried WebSockets must come from the origin they are for; token clients may omit Origin.

        Nobody's credentials, nothing to protect: anyone may open a public port's socket, from anywhere.
        """
        if decision.identity is None:
            return True
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
        key = self.assets.key(scope, path) if target.port is None else None  # a port's paths are its app's, whatever they look like
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
        if scope["type"] in ("http", "websocket"):
            gateway: Gateway = self.app.state.gateway
            host = access.header(scope, b"host")
            if not gateway.origins.host_allowed(host):
                await _respond(scope, send, 421, "unknown_host", f"this manager does not serve the host {host or '(none)'!r}")
                return
            if gateway.claims(scope):
                await gateway(scope, receive, send)
                return
            canonical = gateway.origins.elsewhere(host) if scope["type"] == "http" and scope["method"] == "GET" else None
            if canonical and access.wants_html(scope) and not scope["path"].startswith(("/api/", "/static/")):
                query = scope.get("query_string", b"").decode("latin-1")
                await _redirect(send, canonical + scope["path"] + (f"?{query}" if query else ""))
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
