"""Backup and restore over the API: POST /workspaces/{name}/backup streams a .tar.gz; POST /workspaces/restore takes one.

The backup is written by a thread into the response (streaming.py), so a slow client slows the
writer instead of filling memory, and a client that goes away stops it. The restore body is streamed to disk with a size limit, then unpacked by the same
checked extraction as uploaded archives (no `..`, no escaping links, entry and size limits).
"""

from __future__ import annotations

import asyncio
import secrets
import shutil

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from devyard.api.contract import BINARY_BODY, GZIP
from devyard.api.deps import CurrentUser, Workspaces, record
from devyard.api.streaming import written
from devyard.errors import Conflict, Invalid, TooLarge
from devyard.models import Workspace, WorkspaceCreate
from devyard.provision import archive
from devyard.provision.extensions import check_allowed
from devyard.workspaces import backups
from devyard.workspaces.access import Action

router = APIRouter(prefix="/workspaces", tags=["workspaces"])
Owner = Query(None, description="Owner of the workspace (default: you).")


@router.post(
    "/{name}/backup",
    summary="Download a backup (.tar.gz of files, user-data and extension list), even while it runs",
    response_class=StreamingResponse,
    responses=GZIP,
)
async def backup_workspace(
    name: str, ident: CurrentUser, service: Workspaces, request: Request, owner: str | None = Owner
) -> StreamingResponse:
    """200 with the archive streamed; the owner's only (a backup holds every file)."""
    row = await service.find(ident, name, owner, Action.configure)
    service.need_local_files("backups")
    if row.provisioned_at is None:
        raise Conflict(f"workspace '{name}' was never provisioned: there is nothing to back up", code="not_provisioned")
    await record(request, "workspace.backup", f"{row.owner.name}/{name}")
    filename = backups.file_name(name)
    spec, manifest = service.spec(row), backups.manifest_of(row)
    return StreamingResponse(
        written(lambda out: backups.write(spec, manifest, out), f"backup-{row.uid}"),
        media_type="application/gzip",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


@router.post(
    "/restore",
    response_model=Workspace,
    status_code=201,
    summary="Create a workspace from a backup (the request body)",
    openapi_extra=BINARY_BODY,
)
async def restore_workspace(
    request: Request,
    ident: CurrentUser,
    service: Workspaces,
    name: str | None = Query(None, description="Name of the new workspace (default: the backed-up one's)."),
    start: bool = True,
) -> Workspace:
    """201 with the new workspace, provisioned from the backup's files and user-data, its extensions installed again."""
    settings = service.settings
    limit = settings.archive_max_expanded_mb << 20
    settings.uploads_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    token = secrets.token_hex(8)
    received, unpacked = settings.uploads_dir / f".received-{token}", settings.uploads_dir / f".unpacked-{token}"
    try:
        size = 0
        with received.open("wb") as sink:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise TooLarge(
                        f"the backup is larger than the limit of {settings.archive_max_expanded_mb} MB (archive_max_expanded_mb)"
                    )
                sink.write(chunk)
        if size == 0:
            raise Invalid("send the backup file as the request body", code="backup_missing")
        limits = archive.Limits(settings.archive_max_entries, limit)
        await asyncio.to_thread(archive.extract, received, unpacked, limits)
        received.unlink()
        manifest = backups.Manifest.read(unpacked)
        check_allowed(manifest.extensions, settings.extensions)
        backups.real_folders(unpacked)
        (unpacked / "files").mkdir(exist_ok=True)
        try:
            req = WorkspaceCreate(
                name=name or manifest.name,
                start=start,
                idle_timeout_s=manifest.idle_timeout_s,
                size=manifest.size if manifest.size in settings.sizes else None,
            )
        except ValidationError as exc:
            raise Invalid(f"name: {exc.errors()[0]['msg']}", code="invalid_name") from exc
        row = await service.create(
            ident, req, unpacked=unpacked / "files", restore=backups.restore_folder(unpacked, manifest)
        )
    finally:
        received.unlink(missing_ok=True)
        shutil.rmtree(unpacked, ignore_errors=True)
    await record(
        request, "workspace.restore", f"{ident.name}/{req.name}", detail={"from": f"{manifest.owner}/{manifest.name}"}
    )
    return service.to_model(row)
