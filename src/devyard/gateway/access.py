"""Who may reach a workspace through the gateway, decided before a byte reaches an engine.

The owner and the users it is shared with get in; anyone else, admins included, gets the same
404 as for a workspace that does not exist, so names do not leak. A read-scoped token never gets
in: an engine is a terminal.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from starlette.requests import cookie_parser
from starlette.types import Scope

from devyard.api.deps import bearer_token
from devyard.auth.identity import SESSION_COOKIE, Authenticator, Identity
from devyard.workspaces.access import Route
from devyard.workspaces.service import WorkspaceService


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed gateway path: /w/{owner}/{name}{rest}."""

    owner: str
    name: str
    prefix: str  # "/w/{owner}/{name}"
    rest: str  # what the engine sees, "" when the trailing slash is missing


def raw_rest(scope: Scope, target: Target) -> str:
    """What follows the workspace's prefix in the request's path as the client sent it (percent-encoded)."""
    raw = scope.get("raw_path")
    prefix = target.prefix.encode("latin-1")
    if isinstance(raw, bytes) and raw.startswith(prefix):
        return raw[len(prefix):].decode("latin-1")
    return quote(target.rest, safe="/:@!$&'()*+,;=-._~")


def parse_target(path: str) -> Target | None:
    """Split a gateway path; None when it names no workspace."""
    parts = path.split("/", 4)  # ["", "w", owner, name, rest...]
    if len(parts) < 4 or parts[1] != "w" or not parts[2] or not parts[3]:
        return None
    prefix = f"/w/{parts[2]}/{parts[3]}"
    return Target(parts[2], parts[3], prefix, path[len(prefix):])


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of an access check: a route to proxy to, or why not."""

    identity: Identity | None
    route: Route | None
    used_bearer: bool


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header, decoded as latin-1 (as ASGI delivers it)."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def check(scope: Scope, target: Target, auth: Authenticator, service: WorkspaceService) -> Decision:
    """Authenticate the request and find the workspace it may reach (route None: not allowed)."""
    cookies = cookie_parser(header(scope, b"cookie") or "")
    bearer = bearer_token(header(scope, b"authorization"))
    ident = await auth.resolve(cookies.get(SESSION_COOKIE), bearer)
    if ident is None:
        return Decision(None, None, False)
    route = service.route(target.owner, target.name)
    if route is None or not route.may_open(ident.name) or ident.scope == "read":
        return Decision(ident, None, bearer is not None)
    return Decision(ident, route, bearer is not None and ident.via == "token")


def login_location(scope: Scope) -> str:
    """Where an unauthenticated browser is sent: the login page, coming back here after."""
    path = scope.get("root_path", "") + scope["path"]
    query = scope.get("query_string", b"").decode("latin-1")
    back = path + (f"?{query}" if query else "")
    return "/login?next=" + quote(back, safe="/")


def wants_html(scope: Scope) -> bool:
    """Whether the client is a browser asking for a page."""
    accept = header(scope, b"accept") or ""
    return "text/html" in accept
