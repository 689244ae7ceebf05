"""What the manager offers: templates, extension groups, sizes, and the API's own description (for logged-in users)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from devyard.api.deps import CurrentUser
from devyard.config import ExtensionGroup
from devyard.models import SizeInfo, Template
from devyard.provision import templates
from devyard.workspaces import sizes

router = APIRouter(tags=["meta"])


@router.get("/extension-groups", response_model=list[ExtensionGroup], summary="Configured extension groups")
async def extension_groups(_: CurrentUser, request: Request) -> list[ExtensionGroup]:
    """The groups a workspace may be created with."""
    groups: dict[str, ExtensionGroup] = request.app.state.settings.extension_groups
    return list(groups.values())


@router.get(
    "/sizes", response_model=list[SizeInfo], summary="The size presets a workspace can have (memory, CPUs, disk)"
)
async def list_sizes(_: CurrentUser, request: Request) -> list[SizeInfo]:
    """Every preset, the default one marked."""
    return sizes.listed(request.app.state.settings)


@router.get("/templates", response_model=list[Template], summary="The template catalog (packaged_assets) and `empty`")
async def list_templates(_: CurrentUser, request: Request) -> list[Template]:
    """Templates a workspace may be created from, in catalog order."""
    return [Template(**asdict(t)) for t in templates(request.app.state.settings)]


@router.get("/openapi.json", include_in_schema=False)
async def openapi(_: CurrentUser, request: Request) -> dict[str, Any]:
    """The OpenAPI description of /api/v1."""
    spec: dict[str, Any] = request.app.openapi()
    return spec


@router.get("/docs", include_in_schema=False)
async def docs(_: CurrentUser) -> HTMLResponse:
    """Swagger UI over the OpenAPI description."""
    return get_swagger_ui_html(openapi_url="/api/v1/openapi.json", title="devyard API")
