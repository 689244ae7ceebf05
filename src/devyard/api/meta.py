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
from devyard.workspaces import offers, sizes

router = APIRouter(tags=["meta"])


@router.get("/extension-groups", response_model=list[ExtensionGroup], summary="Configured extension groups")
async def extension_groups(ident: CurrentUser, request: Request) -> list[ExtensionGroup]:
    """The groups a workspace may be created with (those offered to the caller's groups)."""
    settings = request.app.state.settings
    granted = offers.of(settings, ident.groups, ident.is_admin)
    return offers.keep(granted.extension_groups, settings.extension_groups.values(), "id")


@router.get(
    "/sizes", response_model=list[SizeInfo], summary="The size presets a workspace can have (memory, CPUs, disk)"
)
async def list_sizes(ident: CurrentUser, request: Request) -> list[SizeInfo]:
    """Every preset offered to the caller's groups, the default one marked."""
    settings = request.app.state.settings
    return offers.keep(offers.of(settings, ident.groups, ident.is_admin).sizes, sizes.listed(settings))


@router.get("/templates", response_model=list[Template], summary="The template catalog (packaged_assets) and `empty`")
async def list_templates(ident: CurrentUser, request: Request) -> list[Template]:
    """Templates a workspace may be created from (those offered to the caller's groups), in catalog order."""
    settings = request.app.state.settings
    granted = offers.of(settings, ident.groups, ident.is_admin)
    return [Template(**asdict(t)) for t in offers.keep(granted.templates, templates(settings))]


@router.get("/openapi.json", include_in_schema=False)
async def openapi(_: CurrentUser, request: Request) -> dict[str, Any]:
    """The OpenAPI description of /api/v1."""
    spec: dict[str, Any] = request.app.openapi()
    return spec


@router.get("/docs", include_in_schema=False)
async def docs(_: CurrentUser) -> HTMLResponse:
    """Swagger UI over the OpenAPI description."""
    return get_swagger_ui_html(openapi_url="/api/v1/openapi.json", title="devyard API")
