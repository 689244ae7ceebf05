"""Request dependencies shared by the routers: who is asking, and may they."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request

from devyard.audit import AuditLog
from devyard.auth.credentials import bearer_token
from devyard.auth.csrf import UNSAFE_METHODS, cross_site
from devyard.auth.identity import SESSION_COOKIE, Authenticator, Identity
from devyard.errors import Forbidden, Unauthorized
from devyard.live import Live, until_closed
from devyard.workspaces.service import WorkspaceService


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
    ident = await authenticator(request).resolve(
        request.cookies.get(SESSION_COOKIE), bearer_token(request.headers.get("authorization"))
    )
    if ident is None:
        raise Unauthorized("log in or send an API token (Authorization: Bearer <token>)", code="not_authenticated")
    if (
        ident.via == "session"
        and request.method in UNSAFE_METHODS
        and cross_site(request.headers.get("origin"), request.headers.get("host"))
    ):
        raise Forbidden("cross-site request refused", code="csrf_refused")
    if ident.scope == "read" and request.method not in ("GET", "HEAD"):
        raise Forbidden("this token may only read; create a write-scoped token to make changes", code="token_scope")
    request.state.identity = ident
    return ident


def live_stream(request: Request, ident: Identity, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """An event stream that ends as soon as the credential it was opened with does (logout, token revoked, user disabled)."""
    credential = authenticator(request).credential_key(
        request.cookies.get(SESSION_COOKIE), bearer_token(request.headers.get("authorization"))
    )
    gateway = request.app.state.gateway
    return until_closed(gateway.live, Live(credential or "", ident.user_id, ident.name, lambda: None), stream)


async def admin_identity(ident: Annotated[Identity, Depends(current_identity)]) -> Identity:
    """The caller, who must be an admin with admin rights (a session or an admin-scoped token)."""
    if not ident.is_admin:
        raise Forbidden("only admins may do this", code="admin_required")
    if not ident.acts_as_admin:
        raise Forbidden("this token is not admin-scoped", code="token_scope")
    return ident


def client_address(request: Request) -> str:
    """The peer address (after trusted-proxy handling by uvicorn)."""
    return request.client.host if request.client else "unknown"


def audit_log(request: Request) -> AuditLog:
    """The manager's audit log."""
    log: AuditLog = request.app.state.audit
    return log


async def record(
    request: Request,
    action: str,
    target: str | None = None,
    *,
    success: bool = True,
    detail: dict[str, Any] | None = None,
) -> None:
    """Write an audit entry for the request's caller and address."""
    ident: Identity | None = getattr(request.state, "identity", None)
    await audit_log(request).record(
        ident.name if ident else None, action, target, success=success, address=client_address(request), detail=detail
    )


CurrentUser = Annotated[Identity, Depends(current_identity)]
AdminUser = Annotated[Identity, Depends(admin_identity)]
Workspaces = Annotated[WorkspaceService, Depends(workspaces)]
