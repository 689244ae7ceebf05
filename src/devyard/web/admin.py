"""The admin pages: users (with their usage), every workspace, the audit log with filters."""

from __future__ import annotations

from collections import Counter
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from devyard.api.deps import audit_log, workspaces
from devyard.api.groups import list_groups
from devyard.auth import users as user_store
from devyard.auth.identity import Identity
from devyard.errors import Forbidden
from devyard.models import Status
from devyard.web.pages import page, viewer, workspace_list
from devyard.workspaces.quotas import quota_of

router = APIRouter(prefix="/admin", include_in_schema=False)
AUDIT_ACTIONS = (
    "login",
    "logout",
    "user.",
    "token.",
    "secret.",
    "workspace.",
    "workspace.create",
    "workspace.delete",
    "sso",
)


async def admin_viewer(me: Annotated[Identity, Depends(viewer)]) -> Identity:
    """The signed-in viewer, who must be an admin."""
    if not me.acts_as_admin:
        raise Forbidden("only admins may see the administration pages", code="admin_required")
    return me


Admin = Annotated[Identity, Depends(admin_viewer)]


@router.get("", response_model=None)
async def admin_home(_: Admin) -> RedirectResponse:
    """The users page is the first tab."""
    return RedirectResponse("/admin/users", status_code=302)


@router.get("/users", response_class=HTMLResponse)
async def admin_users(request: Request, me: Admin) -> HTMLResponse:
    """Every user with their role, state and workspace counts."""
    rows = await workspaces(request).list_for(me, all_users=True)
    total = Counter(r.owner.name for r in rows)
    running = Counter(r.owner.name for r in rows if r.status == Status.running)
    usage = {name: {"total": n, "running": running[name]} for name, n in total.items()}
    settings = workspaces(request).settings
    users = await user_store.list_users(request.app.state.db)
    defaults = [
        ("Workspaces per user", settings.max_workspaces_per_user),
        ("Running at once", settings.max_running_per_user),
        ("Disk per user (MB)", settings.max_disk_mb_per_user),
    ]
    return page(
        request,
        "admin_users.html",
        me,
        "admin",
        tab="users",
        users=users,
        usage=usage,
        limits={u.name: quota_of(u, settings) for u in users},
        defaults=defaults,
        isolation=workspaces(request).backend.missing_isolation,
    )


@router.get("/workspaces", response_class=HTMLResponse)
async def admin_workspaces(request: Request, me: Admin) -> HTMLResponse:
    """Every user's workspaces, live, with their owners."""
    return await workspace_list(request, me, everyone=True)


@router.get("/groups", response_class=HTMLResponse)
async def admin_groups(request: Request, me: Admin) -> HTMLResponse:
    """Groups, their members (local or from the identity provider) and what each means here."""
    found = await list_groups(me, request)
    return page(request, "admin_groups.html", me, "admin", tab="groups", groups=found)


@router.get("/dormancy", response_class=HTMLResponse)
async def admin_dormancy(request: Request, me: Admin) -> HTMLResponse:
    """Dormant workspaces and those due to become dormant or be deleted."""
    report = await workspaces(request).dormancy()
    return page(request, "admin_dormancy.html", me, "admin", tab="dormancy", report=report)


@router.get("/audit", response_class=HTMLResponse)
async def admin_audit(
    request: Request,
    me: Admin,
    actor: str = "",
    action: str = "",
    outcome: str = Query("", pattern="^(|ok|failed)$"),
    limit: int = Query(100, ge=1, le=10_000),
) -> HTMLResponse:
    """The audit log, newest first, filtered by who, what and outcome."""
    success = {"ok": True, "failed": False}.get(outcome)
    entries = await audit_log(request).entries(limit, action or None, actor or None, success)
    names = [u.name for u in await user_store.list_users(request.app.state.db)]
    return page(
        request,
        "admin_audit.html",
        me,
        "admin",
        tab="audit",
        entries=entries,
        users=names,
        actions=AUDIT_ACTIONS,
        filters={"actor": actor, "action": action, "outcome": outcome, "limit": limit},
    )
