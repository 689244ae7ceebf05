"""/api/v1/users (admins) and /api/v1/tokens (everyone)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from devyard.api.deps import AdminUser, CurrentUser, authenticator
from devyard.auth import users
from devyard.auth.secrets import parse_duration
from devyard.models import TokenCreate, TokenCreated, User, UserCreate
from devyard.store.tables import utcnow

router = APIRouter(tags=["users"])


@router.get("/users", response_model=list[User], summary="Every user (admins only)")
async def list_users(_: AdminUser, request: Request) -> list[User]:
    """All users by name."""
    return [User.model_validate(u) for u in await users.list_users(request.app.state.db)]


@router.post("/users", response_model=User, status_code=201, summary="Add a user (admins only)")
async def create_user(body: UserCreate, _: AdminUser, request: Request) -> User:
    """Add a user; 409 when the name is taken."""
    return User.model_validate(await users.create_user(request.app.state.db, body.name, body.password, body.is_admin))


@router.post("/tokens", response_model=TokenCreated, status_code=201, summary="Create an API token for yourself")
async def create_token(body: TokenCreate, ident: CurrentUser, request: Request) -> TokenCreated:
    """A new bearer token, shown only in this response."""
    expires_at = utcnow() + parse_duration(body.expires_in) if body.expires_in else None
    token = await authenticator(request).create_token(ident.user_id, body.name, expires_at)
    return TokenCreated(name=body.name, token=token, expires_at=expires_at)
