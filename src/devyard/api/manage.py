"""/api/v1/reload (admins): the running manager reads its configuration again, as on SIGHUP."""

from __future__ import annotations

from fastapi import APIRouter, Request

from devyard.api import contract
from devyard.api.deps import AdminUser, Workspaces, authenticator, record
from devyard.errors import RestartNeeded
from devyard.models import ReloadResult
from devyard.settings_reload import reload_settings
from devyard.workspaces.dormancy import DormancyReport

router = APIRouter(tags=["meta"])


@router.get(
    "/dormancy", response_model=DormancyReport, summary="What dormancy does, to which workspaces, when (admins)"
)
async def dormancy(_: AdminUser, service: Workspaces) -> DormancyReport:
    """Dormant workspaces (with their deletion date) and those that will become dormant, soonest first."""
    return await service.dormancy()


@router.post("/reload", response_model=ReloadResult, summary="Read devyard.yaml again (admins only)")
async def reload(_: AdminUser, request: Request) -> ReloadResult:
    """Apply the catalog, groups, sizes, quotas, allow-list and policies at once; 409 when a change needs a restart."""
    result = reload_settings(request.app.state.settings)
    contract.forget(request.app)  # what the description lists (extension groups) may have changed
    authenticator(request).invalidate()  # and what groups grant
    if result.refused:
        names = ", ".join(result.need_restart)
        raise RestartNeeded(f"{names}: only read at start; restart the manager to apply them (nothing was changed)")
    await record(request, "config.reload", "", detail={"applied": result.applied})
    return ReloadResult(applied=result.applied, ignored=result.ignored)
