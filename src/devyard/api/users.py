"""/api/v1/users (admins), /api/v1/tokens (everyone, for themselves) and /api/v1/audit (admins)."""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, Path, Query, Request, Response

from devyard.api.deps import AdminUser, CurrentUser, audit_log, authenticator, record, workspaces
from devyard.auth import users
from devyard.auth.secrets import parse_duration
from devyard.models import (
    AuditEntry,
    QuotaInfo,
    QuotaUpdate,
    TokenCreate,
    TokenCreated,
    TokenInfo,
    User,
    UserCreate,
    UserUpdate,
)
from devyard.reasons import Cause
from devyard.store.tables import UserRow, utcnow
from devyard.workspaces import quotas

router = APIRouter(tags=["users"])
MAX_ID = 2**63 - 1  # a database id: SQLite and PostgreSQL integers are 64-bit


@router.get("/users", response_model=list[User], summary="Every user (admins only)")
async def list_users(_: AdminUser, request: Request) -> list[User]:
    """All users by name."""
    return [User.model_validate(u) for u in await users.list_users(request.app.state.db)]


@router.post("/users", response_model=User, status_code=201, summary="Add a user (admins only)")
async def create_user(body: UserCreate, _: AdminUser, request: Request) -> User:
    """Add a user; 409 when the name is taken."""
    row = await users.create_user(request.app.state.db, body.name, body.password, body.is_admin)
    await record(request, "user.create", body.name, detail={"is_admin": body.is_admin})
    return User.model_validate(row)


@router.patch("/users/{name}", response_model=User, summary="Disable, enable, promote or set a password (admins only)")
async def update_user(name: str, body: UserUpdate, admin: AdminUser, request: Request) -> User:
    """Change a user. Disabling or a new password ends their sessions; disabling stops their workspaces."""
    row = await users.update_user(
        request.app.state.db, name, disabled=body.disabled, is_admin=body.is_admin, password=body.password
    )
    auth = authenticator(request)
    if body.disabled:
        await auth.end_user(row.id)
    elif body.password is not None:
        await auth.end_sessions(row.id)
    elif body.is_admin is not None:
        auth.invalidate()  # cached identities carry the old role
    if body.disabled:
        why = Cause("admin", f"{admin.name} disabled {name}'s account", by=admin.name)
        await workspaces(request).stop_all_of(row.id, why)
    changes = {k: v for k, v in body.model_dump(exclude_none=True).items() if k != "password"}
    await record(request, "user.update", name, detail={**changes, **({"password": "changed"} if body.password else {})})
    return User.model_validate(row)


async def _quota_info(request: Request, user: UserRow) -> QuotaInfo:
    settings = workspaces(request).settings
    count, running, disk = await quotas.usage(request.app.state.db, settings, user)
    effective = quotas.quota_of(user, settings)
    return QuotaInfo(
        own=QuotaUpdate(max_workspaces=user.max_workspaces, max_running=user.max_running, max_disk_mb=user.max_disk_mb),
        effective=QuotaUpdate(**dataclasses.asdict(effective)),
        workspaces=count,
        running=running,
        disk_mb=round(disk / (1 << 20), 1),
    )


@router.get("/users/{name}/quota", response_model=QuotaInfo, summary="A user's quota and use (admins only)")
async def get_quota(name: str, _: AdminUser, request: Request) -> QuotaInfo:
    """The user's own limits (null: the default applies), the limits in force, and what they use now."""
    return await _quota_info(request, await users.get_user(request.app.state.db, name))


@router.put(
    "/users/{name}/quota", response_model=QuotaInfo, summary="Set a user's quota (admins only; null: the default)"
)
async def put_quota(name: str, body: QuotaUpdate, _: AdminUser, request: Request) -> QuotaInfo:
    """Replace the user's own limits; each null means the manager's default applies."""
    row = await users.set_quota(request.app.state.db, name, body.max_workspaces, body.max_running, body.max_disk_mb)
    await record(request, "user.quota", name, detail=body.model_dump())
    return await _quota_info(request, row)


@router.get("/me/quota", response_model=QuotaInfo, summary="Your quota and use")
async def my_quota(ident: CurrentUser, request: Request) -> QuotaInfo:
    """Your limits in force and what you use."""
    return await _quota_info(request, await users.get_user(request.app.state.db, ident.name))


@router.post("/tokens", response_model=TokenCreated, status_code=201, summary="Create an API token for yourself")
async def create_token(body: TokenCreate, ident: CurrentUser, request: Request) -> TokenCreated:
    """A new bearer token, shown only in this response; its scope cannot exceed the caller's."""
    expires_at = utcnow() + parse_duration(body.expires_in) if body.expires_in else None
    row, token = await authenticator(request).create_token(ident, body.name, body.scope, expires_at)
    await record(request, "token.create", body.name, detail={"scope": body.scope, "token_id": row.id})
    return TokenCreated(**TokenInfo.model_validate(row).model_dump(), token=token)


@router.get("/tokens", response_model=list[TokenInfo], summary="Your tokens (never the tokens themselves)")
async def list_tokens(ident: CurrentUser, request: Request) -> list[TokenInfo]:
    """Every token of the caller, newest first."""
    return [TokenInfo.model_validate(t) for t in await authenticator(request).list_tokens(ident.user_id)]


@router.delete("/tokens/{token_id}", status_code=204, summary="Revoke one of your tokens")
async def revoke_token(
    ident: CurrentUser, request: Request, token_id: int = Path(ge=1, le=MAX_ID, description="The token's id")
) -> Response:
    """The token stops working at once; 404 for a token that is not yours."""
    row = await authenticator(request).revoke_token(ident.user_id, token_id)
    await record(request, "token.revoke", row.name, detail={"token_id": token_id})
    return Response(status_code=204)


@router.get("/audit", response_model=list[AuditEntry], summary="The audit log, newest first (admins only)")
async def audit(
    _: AdminUser,
    request: Request,
    limit: int = Query(100, ge=1, le=10_000),
    action: str | None = None,
    actor: str | None = None,
    success: bool | None = None,
) -> list[AuditEntry]:
    """Logins, account and token changes, workspace actions and shares (?action= a prefix, ?actor=, ?success=true|false)."""
    return await audit_log(request).entries(limit, action, actor, success)
