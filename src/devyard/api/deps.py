"""Request dependencies shared by the routers: who is asking, and may they."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from devyard.auth.csrf import UNSAFE_METHODS, cross_site
from devyard.auth.identity import SESSION_COOKIE, Authenticator, Identity
from devyard.errors import Forbidden, Unauthorized
from devyard.workspaces.service import WorkspaceService


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header."""
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None


def authenticator(request: Request) -> Authenticator:
    """The manager's Authenticator."""
    auth: Authenticator = request.app.state.auth
    return auth


def workspaces(request: Request) -> WorkspaceService:
    """The manager's WorkspaceService."""
    service: WorkspaceService = request.app.state.workspaces
    return service


async def current_identity(request: Request) -> Identity:
    """The authenticated caller; 401 without valid credentials, 403 on a cross-site cookie request."""
    ident = await authenticator(request).resolve(request.cookies.get(SESSION_COOKIE), bearer_token(request.headers.get("authorization")))
    if ident is None:
        raise Unauthorized("log in or send an API token (Authorization: Bearer <token>)", code="not_authenticated")
    if ident.via == "session" and request.method in UNSAFE_METHODS and cross_site(request.headers.get("origin"), request.headers.get("host")):
        raise Forbidden("cross-site request refused", code="csrf_refused")
    return ident


async def admin_identity(ident: Annotated[Identity, Depends(current_identity)]) -> Identity:
    """The caller, who must be an admin."""
    if not ident.is_admin:
        raise Forbidden("only admins may do this", code="admin_required")
    return ident


CurrentUser = Annotated[Identity, Depends(current_identity)]
AdminUser = Annotated[Identity, Depends(admin_identity)]
Workspaces = Annotated[WorkspaceService, Depends(workspaces)]
