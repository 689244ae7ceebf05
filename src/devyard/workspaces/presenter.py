"""The API's shape of a workspace, and the live events that carry it to the dashboard."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from devyard import reasons
from devyard.clock import CLOCK
from devyard.config import Settings
from devyard.models import DevContainerInfo, Progress, Workspace
from devyard.origins import Origins
from devyard.provision.devcontainer import DevContainer, image_of
from devyard.store.tables import WorkspaceRow
from devyard.workspaces import sizes
from devyard.workspaces.access import Route
from devyard.workspaces.activity import Activity
from devyard.workspaces.dormancy import delete_at
from devyard.workspaces.events import Event, EventHub
from devyard.workspaces.routes import RouteTable
from devyard.workspaces.states import Status
from devyard.workspaces.timers import due_stops


class Presenter:
    """Workspace rows as the API shows them; every change published to the dashboards that watch."""

    def __init__(
        self,
        settings: Settings,
        origins: Origins,
        routes: RouteTable,
        events: EventHub,
        progress: dict[str, Progress],
        activity: Activity,
        ssh_login: Callable[[str], str | None] = lambda owner: None,
    ) -> None:
        self.settings, self.origins, self.routes, self.events, self.activity = (
            settings,
            origins,
            routes,
            events,
            activity,
        )
        self.progress = progress  # uid → where its provisioning is (the provisioner writes it)
        self.ssh_login = ssh_login  # owner → the account SSH sessions log in as (None: no SSH here)
        routes.watchers.append(self._gone)

    def model(self, row: WorkspaceRow) -> Workspace:
        """The API shape of a workspace row."""
        return self.shape(row, row.owner.name, row.owner.timezone)

    def shape(self, row: Any, owner: str, owner_timezone: str | None) -> Workspace:
        """The API shape of anything with a workspace row's attributes (an ORM row or a plain result row)."""
        running = row.status == Status.running
        last_seen = self.activity.last_seen(row.uid) if running else None
        return Workspace(
            name=row.name,
            owner=owner,
            status=Status(row.status),
            url=self.origins.workspace_url(owner, row.name, row.uid),
            template=row.template,
            extension_groups=list(row.extension_groups or []),
            created_at=row.created_at,
            started_at=row.started_at,
            last_activity_at=row.last_activity_at,
            error=row.error,
            progress=self.progress.get(row.uid) if row.status == Status.provisioning else None,
            idle_timeout_s=row.idle_timeout_s,
            size=sizes.effective(self.settings, row.size),
            reason=row.reason if row.status == Status.failed else None,
            devcontainer=self._devcontainer(row.devcontainer),
            last_start=reasons.read(row.last_start),
            last_stop=reasons.read(row.last_stop),
            stops_due=due_stops(self.settings, row, owner_timezone, last_seen, CLOCK.now()) if running else [],
            schedule=row.schedule,
            dormant_at=row.dormant_at,
            delete_at=delete_at(self.settings, row.dormant_at),
            ssh_login=self.ssh_login(owner),
        )

    def _devcontainer(self, stored: dict[str, Any] | None) -> DevContainerInfo | None:
        found = DevContainer.from_json(stored)
        if found is None:
            return None
        return DevContainerInfo(
            path=found.path,
            image=found.image,
            image_used=image_of(found, self.settings) is not None,
            build=found.build.dockerfile if found.build else None,
            built_image=found.built_image,
            unsupported=found.unsupported,
        )

    def publish(self, row: WorkspaceRow) -> None:
        """Tell live viewers (the dashboard) about the row as it is now."""
        if self.events.watched:
            shares = self.routes.shares_of(row.uid)
            self.events.publish(Event("workspace", row.owner.name, shares, self.model(row).model_dump(mode="json")))

    def _gone(self, route: Route, gone: bool) -> None:
        if gone:
            self.events.publish(
                Event("deleted", route.owner, route.shared_with, {"owner": route.owner, "name": route.name})
            )
