"""/api/v1/groups (admins): local groups and the identity provider's, their members, and what each group means here."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from devyard.api.deps import AdminUser, authenticator
from devyard.auth.groups import Group, Groups
from devyard.auth.users import get_user
from devyard.fields import Body
from devyard.settings_groups import GroupPolicy

router = APIRouter(prefix="/groups", tags=["users"])


class GroupMember(BaseModel):
    """A user in a group: `local` (an admin put them there) or `oidc` (their last sign-in's claim)."""

    user: str
    source: str


class GroupInfo(BaseModel):
    """A group, its members, and its policy in devyard.yaml (null: it means nothing beyond shares)."""

    name: str
    members: list[GroupMember]
    policy: GroupPolicy | None


class GroupCreate(Body):
    """Body of POST /api/v1/groups."""

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.:@/+-]{0,127}$")


def _groups(request: Request) -> Groups:
    found: Groups = request.app.state.groups
    return found


def _info(request: Request, group: Group) -> GroupInfo:
    policy = request.app.state.settings.groups.get(group.name)
    members = [GroupMember(user=u, source=s) for u, s in sorted(group.members.items())]
    return GroupInfo(name=group.name, members=members, policy=policy)


@router.get("", response_model=list[GroupInfo], summary="Every group with its members and policy (admins only)")
async def list_groups(_: AdminUser, request: Request) -> list[GroupInfo]:
    """Groups by name; those named only in devyard.yaml are listed too, without members."""
    found = {g.name: g for g in await _groups(request).all()}
    for name in request.app.state.settings.groups:
        found.setdefault(name, Group(name))
    return [_info(request, found[name]) for name in sorted(found)]


@router.post("", response_model=GroupInfo, status_code=201, summary="Add a local group (admins only)")
async def create_group(body: GroupCreate, admin: AdminUser, request: Request) -> GroupInfo:
    """201 with the new group; 409 when the name is taken."""
    return _info(request, await _groups(request).create(body.name, admin.name))


@router.delete("/{name}", status_code=204, summary="Delete a group; its members leave it (admins only)")
async def delete_group(name: str, admin: AdminUser, request: Request) -> Response:
    """204; what the group granted ends at its members' next request."""
    await _groups(request).remove(name, admin.name)
    authenticator(request).invalidate()
    return Response(status_code=204)


@router.put("/{name}/members/{user}", status_code=204, summary="Put a user in a group (admins only)")
async def add_member(name: str, user: str, admin: AdminUser, request: Request) -> Response:
    """204; 404 for an unknown group or user, 409 when they are in it already."""
    await _groups(request).add_member(name, await get_user(request.app.state.db, user), admin.name)
    authenticator(request).invalidate()
    return Response(status_code=204)


@router.delete("/{name}/members/{user}", status_code=204, summary="Take a user out of a group (admins only)")
async def remove_member(name: str, user: str, admin: AdminUser, request: Request) -> Response:
    """204; it takes effect at the user's next request (a token's too), and is audited."""
    await _groups(request).remove_member(name, await get_user(request.app.state.db, user), admin.name)
    authenticator(request).invalidate()
    return Response(status_code=204)
