"""/api/v1/secrets: a user's own secrets, by name; values go in and never come back out."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request, Response

from devyard.api.deps import CurrentUser, Workspaces, record
from devyard.models import SecretInfo, SecretPut
from devyard.usersecrets import NAME_PATTERN

router = APIRouter(prefix="/secrets", tags=["secrets"])

# Checked by usersecrets.check_name, whose message says the rule in words; the schema states it as a pattern.
SecretName = Path(description="The variable's name", json_schema_extra={"pattern": NAME_PATTERN, "maxLength": 128})


@router.get("", response_model=list[SecretInfo], summary="Your secrets (names only)")
async def list_secrets(ident: CurrentUser, service: Workspaces) -> list[SecretInfo]:
    """Name, file (when written to one) and times of each secret; never the values."""
    return [
        SecretInfo(name=i.name, file=i.file, created_at=i.created_at, updated_at=i.updated_at)
        for i in await service.secrets.list(ident.user_id)
    ]


@router.put(
    "/{name}",
    response_model=SecretInfo,
    responses={201: {"model": SecretInfo, "description": "A new secret"}},
    summary="Set a secret (an environment variable, or a file in each workspace's home)",
)
async def put_secret(
    body: SecretPut,
    ident: CurrentUser,
    service: Workspaces,
    request: Request,
    response: Response,
    name: str = SecretName,
) -> SecretInfo:
    """201 when new, 200 when replaced. Files are rewritten at once; variables reach engines when they next start."""
    info, created, old_file = await service.secrets.put(ident.user_id, name, body.value, body.file)
    if body.file or old_file:  # variables reach engines at their next start; only files are written now
        await service.secrets_changed(ident.user_id, old_file if old_file != body.file else None)
    await record(request, "secret.set", f"{ident.name}/{name}", detail={"file": body.file} if body.file else None)
    response.status_code = 201 if created else 200
    return SecretInfo(name=info.name, file=info.file, created_at=info.created_at, updated_at=info.updated_at)


@router.delete("/{name}", status_code=204, summary="Delete a secret (and its file in your workspaces)")
async def delete_secret(ident: CurrentUser, service: Workspaces, request: Request, name: str = SecretName) -> Response:
    """204; 404 when there is no such secret."""
    file = await service.secrets.delete(ident.user_id, name)
    await service.secrets_changed(ident.user_id, file)
    await record(request, "secret.delete", f"{ident.name}/{name}")
    return Response(status_code=204)
