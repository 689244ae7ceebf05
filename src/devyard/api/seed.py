"""What a workspace's pods fetch from the manager, each with a token made for one start or build (seed.py, build.py).

- GET /api/v1/internal/seed/{uid}: a new workspace's pod fetches what provisioning made;
- GET /api/v1/internal/build-context/{uid}: a build pod fetches the devcontainer build's context.
Not a user's endpoint: the pod presents the token the backend put in a Secret for that one start or
build, and nothing else is accepted.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, StreamingResponse

from devyard.api.streaming import written
from devyard.backends.kubernetes import seed
from devyard.errors import Unauthorized

router = APIRouter(prefix="/internal", tags=["internal"], include_in_schema=False)


def _granted(request: Request, grants_name: str, uid: str, what: str) -> Path:
    grants: seed.Seeds | None = getattr(request.app.state.workspaces.backend, grants_name, None)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    path = grants.root_for(uid, token.strip()) if grants is not None and scheme.lower() == "bearer" and token else None
    if path is None:
        raise Unauthorized(f"this token does not let anyone fetch that workspace's {what}", code="invalid_seed_token")
    return path


@router.get("/seed/{uid}")
async def fetch_seed(uid: str, request: Request) -> StreamingResponse:
    """200 with the workspace's pending folders as .tar.gz; 401 for any token but the start's own."""
    root = _granted(request, "seeds", uid, "files")
    return StreamingResponse(written(lambda out: seed.write(root, out), f"seed-{uid}"), media_type="application/gzip")


@router.get("/build-context/{uid}")
async def fetch_build_context(uid: str, request: Request) -> FileResponse:
    """200 with the build's Dockerfile and context as .tar.gz; 401 for any token but the build's own."""
    return FileResponse(_granted(request, "build_contexts", uid, "build context"), media_type="application/gzip")
