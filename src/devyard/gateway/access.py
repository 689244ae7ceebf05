"""Who may reach a workspace through the gateway, decided before a byte reaches an engine.

The owner and the users it is shared with get in (a forwarded port: by its visibility); anyone
else, admins included, gets the same 404 as for a workspace that does not exist, so names do not
leak. A read-scoped token never gets in: an engine is a terminal.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from starlette.requests import cookie_parser
from starlette.types import Scope

from devyard.auth.credentials import bearer_token
from devyard.auth.identity import SESSION_COOKIE, Authenticator, Identity
from devyard.gateway.handoff import WORKSPACE_COOKIE, Handoff
from devyard.origins import Origins
from devyard.workspaces.access import Route
from devyard.workspaces.ports import may_reach
from devyard.workspaces.service import WorkspaceService


@dataclass(frozen=True, slots=True)
class Target:
    """What a gateway request names: /w/{owner}/{name}{rest} (path mode), or a workspace host (and port) with its path."""

    owner: str | None
    name: str | None
    prefix: str  # "/w/{owner}/{name}"; "" on a workspace's own origin
    rest: str  # what the engine sees, "" when the trailing slash is missing
    port: int | None = None  # a forwarded port's origin
    uid: str | None = None  # a host in uid form (id---<uid>)
    hosted: bool = False  # on an origin of its own

    @property
    def shown(self) -> str:
        """How to name the target in a message."""
        return f"{self.owner}/{self.name}" if self.owner else f"id {self.uid}"


def raw_rest(scope: Scope, target: Target) -> str:
    """What follows the workspace's prefix in the request's path as the client sent it (percent-encoded)."""
    raw = scope.get("raw_path")
    prefix = target.prefix.encode("latin-1")
    if isinstance(raw, bytes) and raw.startswith(prefix):
        rest = raw[len(prefix) :].decode("latin-1")
    else:
        rest = quote(target.rest, safe="/:@!$&'()*+,;=-._~")
    # A port's origin is served by the engine's own port proxy, which strips its prefix again.
    return f"/proxy/{target.port}{rest}" if target.port is not None else rest


def parse_target(path: str) -> Target | None:
    """Split a gateway path; None when it names no workspace."""
    parts = path.split("/", 4)  # ["", "w", owner, name, rest...]
    if len(parts) < 4 or parts[1] != "w" or not parts[2] or not parts[3]:
        return None
    prefix = f"/w/{parts[2]}/{parts[3]}"
    return Target(parts[2], parts[3], prefix, path[len(prefix) :])


def host_target(scope: Scope, origins: Origins) -> Target | None:
    """The workspace (and port) a request's Host names under the workspace domain; None for other hosts."""
    found = origins.target(header(scope, b"host"))
    if found is None:
        return None
    return Target(found.owner, found.name, "", scope["path"], port=found.port, uid=found.uid, hosted=True)


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of an access check: a route to proxy to, or why not."""

    identity: Identity | None
    route: Route | None  # None: no such workspace, or not for this caller
    used_bearer: bool
    credential: str | None = (
        None  # "s:<session digest>" or "t:<token digest>": what a live connection is registered under
    )


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header, decoded as latin-1 (as ASGI delivers it)."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def find_route(service: WorkspaceService, target: Target) -> Route | None:
    """The route a target names, from memory."""
    if target.uid is not None:
        return service.route_by_uid(target.uid)
    assert target.owner is not None and target.name is not None
    return service.route(target.owner, target.name)


async def check(
    scope: Scope, target: Target, auth: Authenticator, service: WorkspaceService, handoff: Handoff
) -> Decision:
    """Authenticate the request and find the workspace it may reach (route None: not allowed).

    On a workspace's own origin the credentials are a bearer token or that origin's own cookie
    (handoff.py), never the dashboard's session; under /w/ (path mode) the session or a token.
    A public port needs none.
    """
    cookies = cookie_parser(header(scope, b"cookie") or "")
    bearer = bearer_token(header(scope, b"authorization"))
    route = find_route(service, target)
    credential: str | None = None
    if bearer:
        ident = await auth.resolve(None, bearer)
        credential = auth.credential_key(None, bearer)
    elif target.hosted:
        grant = handoff.read_cookie(cookies.get(WORKSPACE_COOKIE))
        ident = None
        if grant is not None and route is not None and grant.uid == route.uid and grant.port == target.port:
            ident = await auth.resolve_session(grant.session_hash)
            credential = "s:" + grant.session_hash
    else:
        cookie = cookies.get(SESSION_COOKIE)
        ident = await auth.resolve(cookie, None)
        credential = auth.credential_key(cookie, None)
    used_bearer = bearer is not None and ident is not None and ident.via == "token"
    if route is not None and target.port is not None and service.ports.of(route.uid, target.port) == "public":
        return Decision(ident, route, used_bearer, credential)
    if ident is None:
        return Decision(None, None, False)
    if route is None or not allowed(service, route, target.port, ident):
        return Decision(ident, None, bearer is not None)
    return Decision(ident, route, used_bearer, credential)


def allowed(service: WorkspaceService, route: Route, port: int | None, ident: Identity) -> bool:
    """Whether `ident` may reach the workspace (or its port); a read-scoped token never may: an engine is a terminal."""
    if ident.scope == "read":
        return False
    if port is None:
        return route.may_open(ident.name)
    return may_reach(route, service.ports.of(route.uid, port), ident.name)
