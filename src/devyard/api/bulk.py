"""/api/v1/workspaces/bulk: workshops, one workspace per user, made and torn down in one call (admins)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from devyard.api.deps import AdminUser, Workspaces, record
from devyard.models import BulkCreate, BulkDelete, BulkOutcome, WorkspaceCreate
from devyard.workspaces import bulk

router = APIRouter(prefix="/workspaces/bulk", tags=["workspaces"])


@router.post("", response_model=list[BulkOutcome], status_code=201, summary="Create one workspace per user (admins)")
async def create_bulk(body: BulkCreate, admin: AdminUser, service: Workspaces, request: Request) -> list[BulkOutcome]:
    """Each user's new workspace (provisioning; follow each one's progress) or the reason it was not made."""
    req = WorkspaceCreate(
        name=body.name,
        template=body.template,
        git_url=body.git_url,
        extension_groups=body.extension_groups,
        start=body.start,
        size=body.size,
    )
    outcomes = await bulk.create_for(service, request.app.state.db, body.users, req)
    await record(
        request,
        "workspace.bulk_create",
        body.name,
        detail={"users": len(outcomes), "failed": [o.user for o in outcomes if o.error]},
    )
    return [
        BulkOutcome(user=o.user, workspace=service.to_model(o.workspace) if o.workspace else None, error=o.error)
        for o in outcomes
    ]


@router.post("/delete", response_model=list[BulkOutcome], summary="Delete each user's workspace NAME (admins)")
async def delete_bulk(body: BulkDelete, admin: AdminUser, service: Workspaces, request: Request) -> list[BulkOutcome]:
    """Each user's result: no error once their workspace is gone."""
    outcomes = await bulk.delete_for(service, admin, body.users, body.name, body.keep_files)
    await record(
        request,
        "workspace.bulk_delete",
        body.name,
        detail={"users": len(outcomes), "failed": [o.user for o in outcomes if o.error]},
    )
    return [BulkOutcome(user=o.user, error=o.error) for o in outcomes]
