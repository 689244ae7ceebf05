"""/auth/workspace: the dashboard's half of opening a workspace on its own origin (see gateway/handoff.py).

A workspace origin without its own cookie sends the browser here; the dashboard checks its session
and the access rules, then sends it back with a one-time code bound to that workspace (and port)
and to this session.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

from devyard.api.deps import authenticator, workspaces
from devyard.auth.identity import SESSION_COOKIE
from devyard.errors import Forbidden, Invalid, WorkspaceNotFound
from devyard.gateway import access
from devyard.gateway.handoff import AUTH_PATH, Grant, Handoff
from devyard.origins import Origins
from devyard.web.pages import Viewer
from devyard.web.views import safe_next

router = APIRouter(include_in_schema=False)


@router.get("/auth/workspace")
async def to_workspace(request: Request, me: Viewer, host: str = "", next: str = "/") -> RedirectResponse:
    """Send a signed-in browser back to the workspace host it came from, with a one-time code for it."""
    origins: Origins = request.app.state.origins
    found = origins.target(host)
    if found is None:
        raise Invalid(f"{host!r} is not a workspace's host here", code="not_a_workspace_host")
    target = access.Target(found.owner, found.name, "", "/", port=found.port, uid=found.uid, hosted=True)
    service = workspaces(request)
    route = access.find_route(service, target)
    if route is None or not access.allowed(service, route, target.port, me):
        raise WorkspaceNotFound(f"no workspace '{target.shown}'")
    session_hash = authenticator(request).session_hash(request.cookies.get(SESSION_COOKIE))
    if me.via != "session" or session_hash is None:
        raise Forbidden(
            "open a workspace from a logged-in browser; scripts send their token to the workspace's origin itself",
            code="session_required",
        )
    handoff: Handoff = request.app.state.handoff
    code = await handoff.issue(Grant(route.uid, target.port, session_hash))
    if target.port is None:
        base = origins.workspace_url(route.owner, route.name, route.uid)
    else:
        base = origins.port_url(route.owner, route.name, route.uid, target.port)
    where = base.rstrip("/") + AUTH_PATH + "?" + urlencode({"code": code, "next": safe_next(next)})
    return RedirectResponse(
        where, status_code=302, headers={"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
    )
