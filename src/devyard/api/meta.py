"""Health, and what the manager offers: extension groups."""

from __future__ import annotations

from fastapi import APIRouter, Request

from devyard.api.deps import CurrentUser
from devyard.config import ExtensionGroup

router = APIRouter(tags=["meta"])


@router.get("/extension-groups", response_model=list[ExtensionGroup], summary="Configured extension groups")
async def extension_groups(_: CurrentUser, request: Request) -> list[ExtensionGroup]:
    """The groups a workspace may be created with."""
    groups: list[ExtensionGroup] = request.app.state.settings.extension_groups
    return groups
