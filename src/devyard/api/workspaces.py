"""/api/v1/workspaces: create, list, read, start, stop, restart, delete, logs, stats, shares, ports.

Routes on one workspace take `?owner=` so admins (and users it is shared with) can name another
user's workspace; WorkspaceService.find() decides who may do what.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import TypeAdapter

from devyard.api.contract import EVENT_STREAM
from devyard.api.deps import CurrentUser, Workspaces, live_stream, record
from devyard.auth.users import get_user
from devyard.errors import Forbidden
from devyard.models import (
    ExtensionGroupsAdd,
    ExtensionGroupsAdded,
    ExtensionOutcome,
    LogLines,
    PortChange,
    Share,
    ShareCreate,
    Stats,
    Workspace,
    WorkspaceCreate,
    WorkspacePort,
    WorkspaceUpdate,
)
from devyard.reasons import asked
from devyard.workspaces import offers
from devyard.workspaces.access import Action

router = APIRouter(prefix="/workspaces", tags=["workspaces"])
KEEPALIVE_S = 15.0
_LIST = TypeAdapter(list[Workspace])
Owner = Query(None, description="Owner of the workspace (default: you); for admins and shared users.")


@router.get(
    "", response_model=list[Workspace], summary="Your workspaces (?shared=1: and those shared with you; admins: ?all=1)"
)
async def list_workspaces(ident: CurrentUser, service: Workspaces, all: bool = False, shared: bool = False) -> Response:
    """Workspaces of the caller, oldest first."""
    if all and not ident.acts_as_admin:
        raise Forbidden("only admins may list every user's workspaces", code="admin_required")
    models = await service.list_models(ident, all_users=all, shared=shared)
    # Serialized once here: returned as models, FastAPI would validate all of them again against response_model.
    return Response(_LIST.dump_json(models), media_type="application/json")


@router.post(
    "", response_model=Workspace, status_code=201, summary="Create a workspace (and start it unless start=false)"
)
async def create_workspace(
    body: WorkspaceCreate, ident: CurrentUser, service: Workspaces, request: Request
) -> Workspace:
    """201 with the new workspace; 409 when the name is taken, 422 for a bad name."""
    row = await service.create(ident, body)
    await record(request, "workspace.create", f"{ident.name}/{body.name}")
    return service.to_model(row)


@router.get("/{name}", response_model=Workspace, summary="One workspace")
async def get_workspace(name: str, ident: CurrentUser, service: Workspaces, owner: str | None = Owner) -> Workspace:
    """The workspace, or 404."""
    return service.to_model(await service.find(ident, name, owner, Action.read))


@router.patch(
    "/{name}",
    response_model=Workspace,
    summary="Change a workspace's own settings (idle_timeout_s; size while stopped)",
)
async def update_workspace(
    name: str,
    body: WorkspaceUpdate,
    ident: CurrentUser,
    service: Workspaces,
    request: Request,
    owner: str | None = Owner,
) -> Workspace:
    """The workspace as changed; a field sent as null goes back to the manager's default."""
    row = await service.find(ident, name, owner, Action.control)
    if body.size is not None:
        offers.check(offers.of(service.settings, ident.groups, ident.is_admin), body.size, [], None)
    row = await service.update(row, body.model_dump(include=body.model_fields_set))
    await record(
        request, "workspace.update", f"{row.owner.name}/{name}", detail=body.model_dump(include=body.model_fields_set)
    )
    return service.to_model(row)


@router.delete("/{name}", status_code=204, summary="Delete a workspace (?keep_files=1 keeps its folder)")
async def delete_workspace(
    name: str,
    ident: CurrentUser,
    service: Workspaces,
    request: Request,
    keep_files: bool = False,
    owner: str | None = Owner,
) -> Response:
    """Stop the engine and remove the workspace; 204 once it is gone."""
    row = await service.find(ident, name, owner, Action.delete)
    await service.delete(row, keep_files)
    await record(request, "workspace.delete", f"{row.owner.name}/{name}", detail={"keep_files": keep_files})
    return Response(status_code=204)


async def _control(
    name: str, ident: CurrentUser, service: Workspaces, request: Request, owner: str | None, verb: str
) -> Workspace:
    row = await service.find(ident, name, owner, Action.control)
    if verb == "retry_provision":
        row = await service.retry_provision(row)
    else:
        cause = asked(verb, ident.name, row.owner.name, ident.acts_as_admin)
        row = await getattr(service, verb)(row, cause)
    await record(request, f"workspace.{verb}", f"{row.owner.name}/{name}")
    return service.to_model(row)


@router.post("/{name}/start", response_model=Workspace, status_code=202, summary="Start the engine")
async def start_workspace(
    name: str, ident: CurrentUser, service: Workspaces, request: Request, owner: str | None = Owner
) -> Workspace:
    """202: the workspace is starting; poll it until running or failed."""
    return await _control(name, ident, service, request, owner, "start")


@router.post("/{name}/stop", response_model=Workspace, status_code=202, summary="Stop the engine")
async def stop_workspace(
    name: str, ident: CurrentUser, service: Workspaces, request: Request, owner: str | None = Owner
) -> Workspace:
    """202: the workspace is stopping; files are kept."""
    return await _control(name, ident, service, request, owner, "stop")


@router.post(
    "/{name}/retry-provision", response_model=Workspace, status_code=202, summary="Provision a failed workspace again"
)
async def retry_provision(
    name: str, ident: CurrentUser, service: Workspaces, request: Request, owner: str | None = Owner
) -> Workspace:
    """202: provisioning runs again (then the engine starts); 422 when provisioning did not fail."""
    return await _control(name, ident, service, request, owner, "retry_provision")


@router.post(
    "/{name}/extension-groups", response_model=ExtensionGroupsAdded, summary="Add extension groups to your workspace"
)
async def add_extension_groups(
    name: str, body: ExtensionGroupsAdd, ident: CurrentUser, service: Workspaces, request: Request
) -> ExtensionGroupsAdded:
    """Merge the groups' settings (the user's own win) and install their extensions; 200 with each extension's outcome."""
    row = await service.find(ident, name, None, Action.configure)
    outcomes = await service.provisioner.add_groups(row, body.groups)
    await record(
        request,
        "workspace.extension_groups",
        f"{ident.name}/{name}",
        detail={"groups": body.groups, "failed": [o.id for o in outcomes if not o.installed]},
    )
    return ExtensionGroupsAdded(
        workspace=service.to_model(row),
        extensions=[ExtensionOutcome(id=o.id, installed=o.installed, detail=o.detail) for o in outcomes],
    )


@router.post("/{name}/restart", response_model=Workspace, status_code=202, summary="Stop then start the engine")
async def restart_workspace(
    name: str, ident: CurrentUser, service: Workspaces, request: Request, owner: str | None = Owner
) -> Workspace:
    """202: the workspace is restarting."""
    return await _control(name, ident, service, request, owner, "restart")


@router.get("/{name}/logs", response_model=LogLines, summary="The tail of the engine log")
async def workspace_logs(
    name: str,
    ident: CurrentUser,
    service: Workspaces,
    lines: int = Query(200, ge=1, le=10_000),
    owner: str | None = Owner,
) -> LogLines:
    """The last `lines` lines of the engine's stdout and stderr."""
    return LogLines(lines=await service.logs(await service.find(ident, name, owner, Action.read), lines))


@router.get(
    "/{name}/logs/stream",
    summary="Follow the engine log (text/event-stream)",
    response_class=StreamingResponse,
    responses=EVENT_STREAM,
)
async def workspace_log_stream(
    name: str,
    ident: CurrentUser,
    service: Workspaces,
    request: Request,
    lines: int = Query(50, ge=0, le=10_000),
    owner: str | None = Owner,
) -> StreamingResponse:
    """Server-sent events, one `data:` line per log line: the last `lines`, then whatever follows."""
    row = await service.find(ident, name, owner, Action.read)
    initial = await service.logs(row, lines) if lines else []
    return StreamingResponse(
        live_stream(request, ident, _events(initial, service.backend.follow(service.spec(row)))),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )


async def _events(initial: list[str], lines: AsyncIterator[str]) -> AsyncIterator[bytes]:
    """Server-sent events: the initial lines, then each new one, with a comment every KEEPALIVE_S of silence."""
    for line in initial:
        yield f"data: {line}\n\n".encode()
    queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1000)

    async def pump() -> None:
        async for line in lines:
            await queue.put(line)

    task = asyncio.get_running_loop().create_task(pump())
    try:
        while True:
            try:
                line = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:  # lets proxies and clients see the stream is alive
                if task.done():
                    return
                yield b": keep-alive\n\n"
                continue
            yield f"data: {line}\n\n".encode()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@router.get("/{name}/stats", response_model=Stats, summary="CPU, memory, uptime and disk use")
async def workspace_stats(name: str, ident: CurrentUser, service: Workspaces, owner: str | None = Owner) -> Stats:
    """Resource use of the engine and the workspace folder."""
    return await service.stats(await service.find(ident, name, owner, Action.read))


@router.get("/{name}/shares", response_model=list[Share], summary="Who your workspace is shared with")
async def list_shares(name: str, ident: CurrentUser, service: Workspaces) -> list[Share]:
    """Users who may open the workspace besides its owner."""
    row = await service.find(ident, name, None, Action.share)
    return [Share(user=u, created_at=c) for u, c in await service.shares(row)]


@router.post("/{name}/shares", response_model=Share, status_code=201, summary="Share your workspace with a user")
async def add_share(name: str, body: ShareCreate, ident: CurrentUser, service: Workspaces, request: Request) -> Share:
    """The user may open the workspace from now on; 404 for an unknown user, 409 if already shared."""
    row = await service.find(ident, name, None, Action.share)
    user = await get_user(request.app.state.db, body.user)
    await service.share(row, user)
    await record(request, "workspace.share", f"{ident.name}/{name}", detail={"user": body.user})
    created = next(c for u, c in await service.shares(row) if u == body.user)
    return Share(user=body.user, created_at=created)


@router.delete("/{name}/shares/{user}", status_code=204, summary="Stop sharing your workspace with a user")
async def remove_share(name: str, user: str, ident: CurrentUser, service: Workspaces, request: Request) -> Response:
    """The user is refused from their next request on."""
    row = await service.find(ident, name, None, Action.share)
    await service.unshare(row, await get_user(request.app.state.db, user))
    await record(request, "workspace.unshare", f"{ident.name}/{name}", detail={"user": user})
    return Response(status_code=204)


@router.get(
    "/{name}/ports",
    response_model=list[WorkspacePort],
    summary="A workspace's forwarded ports: listening now or given a visibility",
)
async def list_ports(
    name: str, ident: CurrentUser, service: Workspaces, owner: str | None = Owner
) -> list[WorkspacePort]:
    """Each port with who may open it and its URL (its own origin, or the engine's /proxy/<port>/ in path mode)."""
    return await service.port_list(await service.find(ident, name, owner, Action.read))


@router.put(
    "/{name}/ports/{port}", response_model=WorkspacePort, summary="Choose who may open one of your workspace's ports"
)
async def set_port(
    name: str,
    body: PortChange,
    ident: CurrentUser,
    service: Workspaces,
    request: Request,
    port: int = Path(ge=1, le=65535, description="The TCP port inside the workspace"),
) -> WorkspacePort:
    """private: you; shared: you and the users the workspace is shared with; public (where allowed): anyone with the link.

    Connections no longer allowed (a live WebSocket included) are closed.
    """
    row = await service.find(ident, name, None, Action.share)
    changed = await service.set_port(row, port, body.visibility)
    await record(
        request, "workspace.port", f"{ident.name}/{name}", detail={"port": port, "visibility": body.visibility}
    )
    return changed
