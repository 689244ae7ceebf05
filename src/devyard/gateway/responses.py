"""What the gateway answers itself, rather than relaying to an engine.

This module owns the Refusal (why a request does not reach its engine, as a value) and how one is
said: a redirect, the trip to the login page (through the dashboard for a workspace's own origin),
the starting page, an error page, or the API's JSON error (a closed upgrade for a WebSocket). It
also owns the gateway's own path on a workspace's origin, /_devyard/auth, where the dashboard's
one-time code becomes that origin's cookie. They live apart from app.py so the request path there
reads as decisions (admit, proxy) while the wording, pages and headers of the answers sit here;
nothing here imports app.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlencode

from starlette.types import Receive, Scope, Send

from devyard.api.errors import error_response, login_redirect, wants_html
from devyard.gateway import access
from devyard.gateway.handoff import WORKSPACE_COOKIE, Handoff
from devyard.origins import Origins
from devyard.web.render import render
from devyard.web.views import safe_next
from devyard.workspaces.access import Route
from devyard.workspaces.service import WorkspaceService


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request does not reach an engine, and how to say so (a value, not an exception)."""

    status: int
    code: str
    message: str
    location: str | None = None  # a redirect
    login: bool = False  # a browser goes to the login page
    starting: Route | None = None  # the workspace is starting: a browser gets the starting page
    title: str | None = None  # a browser gets an error page with this title
    target: access.Target | None = None  # what a browser sent to log in was asking for


async def refuse(scope: Scope, receive: Receive, send: Send, refused: Refusal, origins: Origins) -> None:
    """Say a Refusal: a page for a browser that asks for one, the API's JSON error otherwise."""
    page = wants_html(scope)
    if refused.location:
        await redirect(send, refused.location)
    elif refused.login and page and refused.target is not None and refused.target.hosted:
        await login_redirect(scope, _to_dashboard(scope, origins))(scope, receive, send)
    elif refused.login and page:
        await login_redirect(scope)(scope, receive, send)
    elif refused.starting and page:
        html = render(
            "starting.html", owner=refused.starting.owner, name=refused.starting.name, base=_base(refused, origins)
        )
        await send_body(
            send,
            503,
            html.encode(),
            b"text/html; charset=utf-8",
            extra=[(b"retry-after", b"2"), (b"cache-control", b"no-store")],
        )
    elif refused.title and page:
        html = render("error.html", me=None, title=refused.title, message=refused.message, base=_base(refused, origins))
        await send_body(
            send,
            refused.status,
            html.encode(),
            b"text/html; charset=utf-8",
            extra=[(b"cache-control", b"no-store")],
        )
    else:
        await respond(
            scope,
            receive,
            send,
            refused.status,
            refused.code,
            refused.message,
            headers={"retry-after": "2"} if refused.starting else None,
        )


def _base(refused: Refusal, origins: Origins) -> str:
    """Where the gateway's own pages take their styles and links from: the dashboard's URL on a workspace's origin."""
    return origins.dashboard_url() if refused.target is not None and refused.target.hosted else ""


def _to_dashboard(scope: Scope, origins: Origins) -> str:
    """Where a browser without this workspace origin's cookie goes: the dashboard, which sends it back with a code."""
    query = scope.get("query_string", b"").decode("latin-1")
    back = scope["path"] + (f"?{query}" if query else "")
    return (
        origins.dashboard_url()
        + "/auth/workspace?"
        + urlencode({"host": access.header(scope, b"host") or "", "next": back})
    )


async def redeem(
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    handoff: Handoff,
    service: WorkspaceService,
    origins: Origins,
    session_ttl: timedelta,
) -> None:
    """/_devyard/auth?code=...&next=... on a workspace origin: trade the dashboard's one-time code for this origin's cookie."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    target = access.host_target(scope, origins)
    route = access.find_route(service, target) if target is not None else None
    grant = await handoff.redeem((query.get("code") or [""])[0])
    if target is None or route is None or grant is None or grant.uid != route.uid or grant.port != target.port:
        await respond(
            scope,
            receive,
            send,
            403,
            "handoff_refused",
            "this sign-in link is not valid here, was used already or expired; open the workspace again from the dashboard",
        )
        return
    next_path = safe_next((query.get("next") or ["/"])[0])
    cookie = SimpleCookie()
    cookie[WORKSPACE_COOKIE] = handoff.cookie(grant)
    morsel = cookie[WORKSPACE_COOKIE]
    morsel["path"], morsel["httponly"], morsel["samesite"] = "/", True, "Lax"
    morsel["max-age"] = session_ttl.total_seconds().__int__()
    if origins.secure or scope.get("scheme") == "https":
        morsel["secure"] = True
    await send(
        {
            "type": "http.response.start",
            "status": 302,
            "headers": [
                (b"location", next_path.encode("latin-1")),
                (b"set-cookie", morsel.OutputString().encode("latin-1")),
                (b"referrer-policy", b"no-referrer"),
                (b"cache-control", b"no-store"),
                (b"content-length", b"0"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})


async def send_body(
    send: Send, status: int, body: bytes, content_type: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def respond(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> None:
    """The API's JSON error (api/errors.py) for HTTP; for a WebSocket, refuse the upgrade (the browser sees the status)."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    await error_response(status, code, message, headers)(scope, receive, send)


async def redirect(send: Send, location: str) -> None:
    """A 302 to `location`: the gateway's own redirects (a missing trailing slash, a workspace's own origin), not sign-in."""
    await send(
        {
            "type": "http.response.start",
            "status": 302,
            "headers": [(b"location", location.encode("latin-1")), (b"content-length", b"0")],
        }
    )
    await send({"type": "http.response.body", "body": b""})
