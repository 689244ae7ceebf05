"""/api/v1/workspaces: create, list, read, start, stop, restart, delete, logs, stats."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse

from devyard.api.deps import CurrentUser, Workspaces
from devyard.errors import Forbidden
from devyard.models import LogLines, Stats, Workspace, WorkspaceCreate
from devyard.store.tables import WorkspaceRow

router = APIRouter(prefix="/workspaces", tags=["workspaces"])
LOG_POLL_S = 0.25
KEEPALIVE_S = 15.0


@router.get("", response_model=list[Workspace], summary="Your workspaces (admins: ?all=1 for everyone's)")
async def list_workspaces(ident: CurrentUser, service: Workspaces, all: bool = False) -> list[Workspace]:
    """Workspaces of the caller, oldest first."""
    if all and not ident.is_admin:
        raise Forbidden("only admins may list every user's workspaces", code="admin_required")
    return [service.to_model(r) for r in await service.list_for(ident, all_users=all)]


@router.post("", response_model=Workspace, status_code=201, summary="Create a workspace (and start it unless start=false)")
async def create_workspace(body: WorkspaceCreate, ident: CurrentUser, service: Workspaces) -> Workspace:
    """201 with the new workspace; 409 when the name is taken, 422 for a bad name."""
    return service.to_model(await service.create(ident, body))


@router.get("/{name}", response_model=Workspace, summary="One of your workspaces")
async def get_workspace(name: str, ident: CurrentUser, service: Workspaces) -> Workspace:
    """The workspace, or 404."""
    return service.to_model(await service.get(ident.user_id, name))


@router.delete("/{name}", status_code=204, summary="Delete a workspace (?keep_files=1 keeps its folder)")
async def delete_workspace(name: str, ident: CurrentUser, service: Workspaces, keep_files: bool = False) -> Response:
    """Stop the engine and remove the workspace; 204 once it is gone."""
    await service.delete(await service.get(ident.user_id, name), keep_files)
    return Response(status_code=204)


async def _command(name: str, ident: CurrentUser, service: Workspaces, action: str) -> Workspace:
    row: WorkspaceRow = await service.get(ident.user_id, name)
    row = await getattr(service, action)(row)
    return service.to_model(row)


@router.post("/{name}/start", response_model=Workspace, status_code=202, summary="Start the engine")
async def start_workspace(name: str, ident: CurrentUser, service: Workspaces) -> Workspace:
    """202: the workspace is starting; poll it until running or failed."""
    return await _command(name, ident, service, "start")


@router.post("/{name}/stop", response_model=Workspace, status_code=202, summary="Stop the engine")
async def stop_workspace(name: str, ident: CurrentUser, service: Workspaces) -> Workspace:
    """202: the workspace is stopping; files are kept."""
    return await _command(name, ident, service, "stop")


@router.post("/{name}/restart", response_model=Workspace, status_code=202, summary="Stop then start the engine")
async def restart_workspace(name: str, ident: CurrentUser, service: Workspaces) -> Workspace:
    """202: the workspace is restarting."""
    return await _command(name, ident, service, "restart")


@router.get("/{name}/logs", response_model=LogLines, summary="The tail of the engine log")
async def workspace_logs(name: str, ident: CurrentUser, service: Workspaces, lines: int = Query(200, ge=1, le=10_000)) -> LogLines:
    """The last `lines` lines of the engine's stdout and stderr."""
    return LogLines(lines=await service.logs(await service.get(ident.user_id, name), lines))


@router.get("/{name}/logs/stream", summary="Follow the engine log (text/event-stream)")
async def workspace_log_stream(name: str, ident: CurrentUser, service: Workspaces, lines: int = Query(50, ge=0, le=10_000)) -> StreamingResponse:
    """Server-sent events, one `data:` line per log line: the last `lines`, then whatever follows."""
    row = await service.get(ident.user_id, name)
    path = service.spec(row).log_file
    initial = await service.logs(row, lines) if lines else []

    async def events() -> AsyncIterator[bytes]:
        for line in initial:
            yield f"data: {line}\n\n".encode()
        pos = path.stat().st_size if path.exists() else 0
        pending = b""
        idle_s = 0.0
        while True:
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                size = 0
            if size < pos:  # truncated or replaced
                pos = 0
            if size > pos:
                with path.open("rb") as f:
                    f.seek(pos)
                    chunk = f.read(size - pos)
                pos = size
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    yield b"data: " + raw.rstrip(b"\r") + b"\n\n"
                idle_s = 0.0
            else:
                idle_s += LOG_POLL_S
                if idle_s >= KEEPALIVE_S:  # lets proxies and clients see the stream is alive
                    idle_s = 0.0
                    yield b": keep-alive\n\n"
            await asyncio.sleep(LOG_POLL_S)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.get("/{name}/stats", response_model=Stats, summary="CPU, memory, uptime and disk use")
async def workspace_stats(name: str, ident: CurrentUser, service: Workspaces) -> Stats:
    """Resource use of the engine and the workspace folder."""
    s = await service.stats(await service.get(ident.user_id, name))
    return Stats(cpu_percent=s.cpu_percent, memory_bytes=s.memory_bytes, uptime_s=s.uptime_s, disk_bytes=s.disk_bytes)
