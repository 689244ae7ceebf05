"""The signed-in pages: workspaces, create, one workspace, account. Server-rendered; their scripts use /api/v1."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from devyard import schedules
from devyard.api.deps import authenticator, workspaces
from devyard.auth.credentials import bearer_token
from devyard.auth.identity import SESSION_COOKIE, Identity
from devyard.auth.users import get_user
from devyard.backends.kubernetes.manifests import MOUNT
from devyard.errors import LoginRequired
from devyard.models import TokenInfo
from devyard.provision import EMPTY_TEMPLATE, templates
from devyard.reasons import spoken
from devyard.ssh.keys import alias
from devyard.store.tables import WorkspaceRow
from devyard.web.render import render
from devyard.workspaces import offers, sizes
from devyard.workspaces.access import Action
from devyard.workspaces.provisioning import LOCAL_IMAGE
from devyard.workspaces.service import WorkspaceService

router = APIRouter(include_in_schema=False)

# DevBox's `ui.workspace.default_type` words, as the create form's sources.
CREATE_SOURCES = {"empty": "empty", "upload": "archive", "github": "git"}


async def viewer(request: Request) -> Identity:
    """The signed-in user of a page request; LoginRequired otherwise."""
    ident = await authenticator(request).resolve(
        request.cookies.get(SESSION_COOKIE), bearer_token(request.headers.get("authorization"))
    )
    if ident is None:
        raise LoginRequired("log in to see this page")
    request.state.identity = ident
    return ident


Viewer = Annotated[Identity, Depends(viewer)]


def page(request: Request, template: str, me: Identity, name: str, **context: Any) -> HTMLResponse:
    """A page rendered for `me`; `name` marks the navigation link of the current page."""
    warn = request.app.state.settings.session_warning_minutes
    return HTMLResponse(
        render(template, me=me, page=name, warn_minutes=warn, **context), headers={"Cache-Control": "no-store"}
    )


BLANK = {"name": "", "owner": "", "status": "creating", "url": "#", "template": None, "created_at": None, "error": None}


async def workspace_list(request: Request, me: Identity, everyone: bool) -> HTMLResponse:
    """The workspace cards: the viewer's own and shared ones, or (admins) everyone's."""
    service = workspaces(request)
    rows = await service.list_for(me, all_users=everyone, shared=True)
    return page(
        request,
        "workspaces.html",
        me,
        "admin" if everyone else "workspaces",
        tab="workspaces",
        title="All workspaces" if everyone else "Workspaces",
        everyone=everyone,
        blank=BLANK,
        workspaces=[service.to_model(r).model_dump(mode="json") for r in rows],
        isolation=service.backend.missing_isolation,
        path_mode=service.origins.path_mode,
    )


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, me: Viewer) -> HTMLResponse:
    """The viewer's workspaces, live."""
    return await workspace_list(request, me, everyone=False)


@router.get("/new", response_class=HTMLResponse)
async def new_workspace(request: Request, me: Viewer) -> HTMLResponse:
    """The create form: name, source, extension groups."""
    service = workspaces(request)
    settings = service.settings
    taken = [r.name for r in await service.list_for(me)]
    granted = offers.of(settings, me.groups, me.is_admin)  # what the viewer's groups are offered
    groups = offers.keep(granted.extension_groups, settings.extension_groups.values(), "id")
    return page(
        request,
        "create.html",
        me,
        "new",
        taken=taken,
        templates=[t for t in offers.keep(granted.templates, templates(settings)) if t.name != EMPTY_TEMPLATE],
        groups=groups,
        default_groups=set(settings.ui.default_extension_groups) & {g.id for g in groups},
        max_upload_mb=settings.ui.workspace.max_upload_size_mb,
        archive_types=settings.ui.workspace.supported_archive_types,
        default_source=CREATE_SOURCES[settings.ui.workspace.default_type],
        sizes=offers.keep(granted.sizes, sizes.listed(settings)),
        default_size=settings.default_size,
    )


@router.get("/workspaces/{name}", response_class=HTMLResponse)
async def workspace_page(request: Request, name: str, me: Viewer, owner: str | None = None) -> HTMLResponse:
    """One workspace: status, stats, log, shares, extension groups, delete."""
    service = workspaces(request)
    row = await service.find(me, name, owner, Action.read)
    ws = service.to_model(row)
    owner_view = row.owner_id == me.user_id
    can_delete = owner_view or me.acts_as_admin
    addable = (
        [g for g in service.settings.extension_groups.values() if g.id not in ws.extension_groups] if owner_view else []
    )
    return page(
        request,
        "detail.html",
        me,
        "workspaces",
        ws=ws.model_dump(mode="json"),
        owner_view=owner_view,
        can_delete=can_delete,
        shares=await service.shares(row) if owner_view else [],
        group_shares=await service.group_shares(row) if owner_view else [],
        addable=addable,
        sizes=sizes.listed(service.settings),
        local_files=service.backend.local_files,
        backend=service.settings.backend,
        local_image=LOCAL_IMAGE,
        ports=[p.model_dump(mode="json") for p in await service.port_list(row)],
        public_ports=service.settings.public_ports,
        path_mode=service.origins.path_mode,
        zone=row.owner.timezone or service.settings.default_timezone,
        usage_every=spoken(service.settings.usage_sample_s),
        ssh=ssh_links(service, row, ws.ssh_login, me.name),
    )


def ssh_links(service: WorkspaceService, row: WorkspaceRow, login: str | None, viewer: str) -> dict[str, str] | None:
    """The workspace's SSH alias for `viewer` and its VS Code Desktop link; None where there is no SSH or they may not open it."""
    route = service.route(row.owner.name, row.name)
    if login is None or route is None or not route.may_open(viewer):
        return None
    host = alias(row.owner.name, row.name, viewer)
    # Where sessions start: the workspace's folder, on this machine or in its pod.
    folder = service.spec(row).files_dir if service.backend.local_files else PurePosixPath(MOUNT) / "files"
    return {"alias": host, "vscode": f"vscode://vscode-remote/ssh-remote+{host}{quote(str(folder))}"}


@router.get("/account", response_class=HTMLResponse)
async def account(request: Request, me: Viewer) -> HTMLResponse:
    """Password, API tokens and secrets of the viewer."""
    service = workspaces(request)
    tokens = [TokenInfo.model_validate(t) for t in await authenticator(request).list_tokens(me.user_id)]
    user = await get_user(request.app.state.db, me.name)
    return page(
        request,
        "account.html",
        me,
        "account",
        tokens=tokens,
        secrets=await service.secrets.list(me.user_id),
        timezone=user.timezone,
        default_timezone=service.settings.default_timezone,
        zones=schedules.zone_names(),
    )
