"""GET /api/v1/internal/seed/{uid}: a new workspace's pod fetches what provisioning made (backends/kubernetes/seed.py).

Not a user's endpoint: the pod's init container presents the one-time token the backend put in the
workspace's init Secret for this start, and nothing else is accepted.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from devyard.api.streaming import written
from devyard.backends.kubernetes import seed
from devyard.errors import Unauthorized

router = APIRouter(prefix="/internal", tags=["internal"], include_in_schema=False)


@router.get("/seed/{uid}")
async def fetch_seed(uid: str, request: Request) -> StreamingResponse:
    """200 with the workspace's pending folders as .tar.gz; 401 for any token but the start's own."""
    grants: seed.Seeds | None = getattr(request.app.state.workspaces.backend, "seeds", None)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    root = grants.root_for(uid, token.strip()) if grants is not None and scheme.lower() == "bearer" and token else None
    if root is None:
        raise Unauthorized("this token does not let anyone fetch that workspace's files", code="invalid_seed_token")
    return StreamingResponse(written(lambda out: seed.write(root, out), f"seed-{uid}"), media_type="application/gzip")
