"""The gateway as a plain ASGI app in front of FastAPI's routing (it is on every keystroke's path).

GatewayMiddleware hands workspace hosts (origins.py) and /w/... to Gateway, and everything else
to the API and dashboard; with public_url set, a Host that is neither is refused. It also puts the
Gateway in the lifespan state, where uvicorn hands it to each connection's protocol: that is how
the WebSocket tunnel (tunnel.py), which runs outside ASGI, reaches it.

WebSockets for workspaces never reach this ASGI app in production: uvicorn's WebSocket protocol is
tunnel.py's, which takes /w/ and workspace-host upgrades itself and hands only the rest to ASGI.
One that arrives here anyway (an in-process test client) is refused rather than relayed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from devyard.api.errors import is_page
from devyard.auth.csrf import origin_matches
from devyard.auth.identity import Authenticator, Ended
from devyard.errors import DevyardError, EngineUnreachable
from devyard.gateway import access
from devyard.gateway.assets import Asset, NotInInstall, StaticAssets
from devyard.gateway.handoff import AUTH_PATH, Handoff
from devyard.gateway.headers import upstream_headers
from devyard.gateway.http import HttpProxy
from devyard.gateway.responses import Refusal, redeem, redirect, refuse, respond, send_body
from devyard.live import Live, LiveConnections
from devyard.models import Status
from devyard.origins import RESERVED_PREFIX
from devyard.workspaces.access import Route
from devyard.workspaces.ports import may_reach
from devyard.workspaces.service import WorkspaceService

log = logging.getLogger("devyard.gateway")
REVOKED = "revoke:"  # a replica notice about credentials, not a workspace uid
STATE_KEY = "gateway"  # the Gateway's key in the lifespan state (tunnel.py reads it there)


@dataclass(frozen=True, slots=True)
class Admitted:
    """A request that may reach its workspace's engine."""

    route: Route
    target: access.Target
    used_bearer: bool
    decision: access.Decision


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
            kind, _, key = notice[len(REVOKED) :].partition(":")
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

    async def admit(self, scope: Scope) -> Admitted | Refusal:
        """Who is asking for which workspace, and whether the request may go on to its engine.

        A stopped workspace is started here for someone who may open it (the refusal says so).
        """
        target = self.target(scope)
        if target is None:
            return Refusal(404, "not_found", "no such workspace")
        if (
            not target.hosted and not self.origins.path_mode
        ):  # a link from path mode: the workspace has its own origin now
            route = self.service.route(target.owner or "", target.name or "")
            if route is None or scope["type"] != "http":
                return Refusal(
                    404, "not_found", "workspaces are served on origins of their own here; see the workspace's url"
                )
            query = scope.get("query_string", b"").decode("latin-1")
            where = self.origins.workspace_url(route.owner, route.name, route.uid).rstrip("/") + (target.rest or "/")
            return Refusal(302, "redirect", "", location=where + (f"?{query}" if query else ""))
        decision = await access.check(scope, target, self.auth, self.service, self.handoff)
        route = decision.route
        if route is None and decision.identity is None:
            return Refusal(401, "not_authenticated", "log in or send an API token", login=True, target=target)
        if route is None:
            return Refusal(404, "workspace_not_found", f"no workspace '{target.shown}'")
        if scope["type"] == "websocket" and not self._origin_ok(scope, decision):
            return Refusal(403, "origin_refused", "WebSocket from another origin refused")
        if not target.rest and not target.hosted:
            if scope["type"] != "http":  # an upgrade cannot follow a redirect: say where the workspace's sockets are
                return Refusal(
                    404,
                    "not_found",
                    f"no WebSocket at {target.prefix}; a workspace's paths start with {target.prefix}/",
                )
            query = scope.get("query_string", b"").decode("latin-1")
            return Refusal(302, "redirect", "", location=target.prefix + "/" + (f"?{query}" if query else ""))
        if route.status != Status.running or not route.address:
            # A public port admits anyone; starting the workspace is for those who may open it.
            if decision.identity is None or not route.may_open(decision.identity.name):
                return Refusal(
                    503,
                    "workspace_not_running",
                    f"workspace '{route.name}' is not running",
                    title="This workspace is not running",
                    target=target,
                )
            try:
                await self.service.ensure_started(route, decision.identity.name)
            except DevyardError as exc:  # over a quota: say so instead of a starting page that never ends
                return Refusal(exc.status, exc.code, exc.message, title="Cannot start this workspace", target=target)
            return Refusal(
                503,
                "workspace_starting",
                f"workspace '{route.name}' is starting; retry shortly",
                starting=route,
                target=target,
            )
        self.service.touch(route.uid)
        return Admitted(route, target, decision.used_bearer, decision)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"].startswith(RESERVED_PREFIX) and self.origins.under_domain(access.header(scope, b"host")):
            if scope["type"] == "http" and scope["path"] == AUTH_PATH:
                await redeem(
                    scope,
                    receive,
                    send,
                    handoff=self.handoff,
                    service=self.service,
                    origins=self.origins,
                    session_ttl=self.auth.session_ttl,
                )
            else:  # the gateway's own paths on a workspace's origin: never an engine's
                await respond(scope, receive, send, 404, "not_found", f"nothing at {scope['path']}")
            return
        admitted = await self.admit(scope)
        if isinstance(admitted, Admitted):
            ident, credential, peer = admitted.decision.identity, admitted.decision.credential, scope.get("client")
            if scope["type"] == "http" and ident is not None and credential and peer:
                self.live.used(
                    tuple(peer), credential, ident.user_id, ident.name, admitted.route.uid, admitted.target.port
                )
            await self._proxy(scope, receive, send, admitted.route, admitted.target, admitted.used_bearer)
            return
        await refuse(scope, receive, send, admitted, self.origins)

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

    async def _proxy(
        self, scope: Scope, receive: Receive, send: Send, route: Route, target: access.Target, used_bearer: bool
    ) -> None:
        assert route.address is not None
        client = scope["client"][0] if scope.get("client") else ""
        scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
        path = access.raw_rest(scope, target)  # the engine gets the path byte for byte as the browser sent it
        if scope["type"] == "websocket":  # tunnel.py takes these before ASGI (see the module docstring)
            log.warning(
                "a WebSocket for %s/%s reached the ASGI gateway, which does not relay them; refused",
                route.owner,
                route.name,
            )
            await send({"type": "websocket.close", "code": 1011})
            return
        key = (
            self.assets.key(scope, path) if target.port is None else None
        )  # a port's paths are its app's, whatever they look like
        if key is not None:  # the installed engine's own static files: from disk, never from this engine
            await self._static(scope, receive, send, key)
            return
        headers = upstream_headers(
            scope["headers"], drop=frozenset(), used_bearer=used_bearer, client=client, scheme=scheme
        )
        try:
            await self.http.forward(scope, receive, send, route.address, path, headers)
        except EngineUnreachable as exc:
            log.warning("workspace %s/%s: engine unreachable: %s", route.owner, route.name, exc)
            await self.http.forget(route.address)
            self.service.recheck_soon(route)
            await respond(
                scope,
                receive,
                send,
                502,
                "engine_unreachable",
                "the workspace engine is not answering; it is being checked, try again shortly",
            )

    async def _static(self, scope: Scope, receive: Receive, send: Send, key: tuple[str, str, str]) -> None:
        """Answer a request for the engine's versioned static tree from the trusted install."""
        try:
            found, hit = await self.assets.get(key)
        except NotInInstall:
            await send_body(send, 404, b"Not found.", b"text/plain", extra=[(b"cache-control", b"no-store")])
            return
        except (TimeoutError, OSError, RuntimeError) as exc:
            log.warning("static file %s could not be read from the engine install: %s", key[1], exc)
            await respond(
                scope,
                receive,
                send,
                503,
                "static_unavailable",
                "this file of the editor could not be read; try again shortly",
            )
            return
        head = scope["method"] == "HEAD"
        if isinstance(found, Asset):
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": found.response_headers(b"hit" if hit else b"miss"),
                }
            )
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
    Once the app has started, the Gateway its lifespan made is put in the lifespan state (under
    STATE_KEY), which uvicorn gives every connection's protocol: tunnel.py finds it there.
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._unpublishing(scope, receive), self._publishing(scope, send))
            return
        if scope["type"] in ("http", "websocket"):
            gateway: Gateway = self.app.state.gateway
            host = access.header(scope, b"host")
            if not gateway.origins.host_allowed(host):
                await respond(
                    scope,
                    receive,
                    send,
                    421,
                    "unknown_host",
                    f"this manager does not serve the host {host or '(none)'!r}",
                )
                return
            if gateway.claims(scope):
                await gateway(scope, receive, send)
                return
            canonical = (
                gateway.origins.elsewhere(host) if scope["type"] == "http" and scope["method"] == "GET" else None
            )
            if canonical and is_page(scope) and not scope["path"].startswith("/static/"):
                query = scope.get("query_string", b"").decode("latin-1")
                await redirect(send, canonical + scope["path"] + (f"?{query}" if query else ""))
                return
        await self.app(scope, receive, send)

    def _publishing(self, scope: Scope, send: Send) -> Send:
        """`send` for the lifespan: when startup completes, the Gateway goes into the lifespan state (before uvicorn listens)."""

        async def sending(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete" and isinstance(scope.get("state"), dict):
                scope["state"][STATE_KEY] = self.app.state.gateway
            await send(message)

        return sending

    @staticmethod
    def _unpublishing(scope: Scope, receive: Receive) -> Receive:
        """`receive` for the lifespan: once shutdown begins, new upgrades no longer find the Gateway (it is closing)."""

        async def receiving() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown" and isinstance(scope.get("state"), dict):
                scope["state"].pop(STATE_KEY, None)
            return message

        return receiving
