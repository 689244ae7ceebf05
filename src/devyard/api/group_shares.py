"""/api/v1/workspaces/{name}/group-shares: a workspace shared with a group, whose members come and go."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from devyard.api.deps import CurrentUser, Workspaces, record
from devyard.auth.groups import GROUP_NAME
from devyard.fields import Body
from devyard.workspaces.access import Action

router = APIRouter(prefix="/workspaces", tags=["workspaces"])


class GroupShare(BaseModel):
    """A group a workspace is shared with: its members may open it, as the group has them now."""

    group: str
    created_at: datetime


class GroupShareCreate(Body):
    """Body of POST /api/v1/workspaces/{name}/group-shares."""

    group: str = Field(min_length=1, max_length=128, pattern=GROUP_NAME.pattern)


@router.get("/{name}/group-shares", response_model=list[GroupShare], summary="The groups your workspace is shared with")
async def list_group_shares(name: str, ident: CurrentUser, service: Workspaces) -> list[GroupShare]:
    """Groups whose members may open the workspace besides its owner."""
    row = await service.find(ident, name, None, Action.share)
    return [GroupShare(group=g, created_at=c) for g, c in await service.group_shares(row)]


@router.post(
    "/{name}/group-shares", response_model=GroupShare, status_code=201, summary="Share your workspace with a group"
)
async def add_group_share(
    name: str, body: GroupShareCreate, ident: CurrentUser, service: Workspaces, request: Request
) -> GroupShare:
    """Its members may open the workspace from now on, as they join and leave; 404 for no such group, 409 if shared."""
    row = await service.find(ident, name, None, Action.share)
    await service.share_group(row, body.group)
    await record(request, "workspace.share", f"{ident.name}/{name}", detail={"group": body.group})
    created = next(c for g, c in await service.group_shares(row) if g == body.group)
    return GroupShare(group=body.group, created_at=created)


@router.delete("/{name}/group-shares/{group}", status_code=204, summary="Stop sharing your workspace with a group")
async def remove_group_share(
    name: str, group: str, ident: CurrentUser, service: Workspaces, request: Request
) -> Response:
    """Its members (unless shared with otherwise) are refused from their next request on."""
    row = await service.find(ident, name, None, Action.share)
    await service.unshare_group(row, group)
    await record(request, "workspace.unshare", f"{ident.name}/{name}", detail={"group": group})
    return Response(status_code=204)
