"""Reading devyard.yaml again in a running manager (SIGHUP, `systemctl reload`, `devyard reload`).

What a team changes while people work applies at once: the catalog, extension groups, sizes,
quotas, the extension allow-list and the policies below. Running engines are not touched: a new
size or allow-list applies from a workspace's next start or install. Anything else (the address,
TLS, the database, the backend, the sandbox...) is only read at start: when such a setting
changed, the whole reload is refused and those settings are named, so a configuration is never
half applied. The live Settings object is changed in place, as everything holds that one object
and reads it where it decides.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from devyard.errors import Invalid
from devyard.settings_file import load_model

if TYPE_CHECKING:
    from devyard.config import Settings

log = logging.getLogger("devyard.config")

RELOADABLE = frozenset(
    {
        # The catalog and what it offers.
        "extension_groups",
        "packaged_assets",
        "ui",
        "server",  # its default_port is `port`'s, which is compared on its own
        "sizes",
        "default_size",
        # Quotas.
        "max_workspaces_per_user",
        "max_running_per_user",
        "max_disk_mb_per_user",
        # The extension allow-list and where extensions come from.
        "extensions",
        # Policies.
        "idle_timeout_s",
        "max_session_hours",
        "session_warning_minutes",
        "default_timezone",
        "dormant_after_days",
        "delete_dormant_after_days",
        "dormancy_dry_run",
        "usage_keep_days",
        "groups",
        "oidc_groups_claim",
        "public_ports",
        "oidc_allowed_domains",
        "oidc_allowed_groups",
        "git_file_roots",
        "git_clone_timeout_s",
        "post_create_timeout_s",
        "archive_max_entries",
        "archive_max_expanded_mb",
        "crash_restarts",
        "crash_window_s",
        "crash_backoff_s",
        "crash_backoff_max_s",
        "disk_grace_s",
        "backup_keep",
    }
)


@dataclass
class Reloaded:
    """What a reload did: the settings it changed, or those that need a restart (then it changed nothing)."""

    applied: list[str] = field(default_factory=list)
    need_restart: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # the file's keys devyard has no use for

    @property
    def refused(self) -> bool:
        """Whether nothing was applied because a setting that needs a restart changed."""
        return bool(self.need_restart)


def reload_settings(live: Settings) -> Reloaded:
    """Read `live`'s config file, environment and flags again; apply the changes to `live` when all may be.

    Invalid (nothing applied) when the file no longer loads.
    """
    origin = live._origin
    if origin is None:
        raise Invalid("these settings were not loaded from a configuration: nothing to read again", code="no_config")
    fresh = load_model(type(live), origin.config_file, origin.overrides)
    changed = [name for name in type(live).model_fields if getattr(fresh, name) != getattr(live, name)]
    result = Reloaded(ignored=fresh.ignored())
    result.need_restart = [name for name in changed if name not in RELOADABLE]
    if result.refused:
        log.warning(
            "reload refused, nothing changed: %s %s only read at start; restart the manager to apply them",
            ", ".join(result.need_restart),
            "is" if len(result.need_restart) == 1 else "are",
        )
        return result
    for name in changed:
        setattr(live, name, getattr(fresh, name))
    live._origin = fresh._origin
    result.applied = changed
    log.info("configuration reloaded: %s", ", ".join(changed) if changed else "nothing changed")
    if result.ignored:
        log.warning("%s: ignored, devyard has no use for: %s", origin.config_file, ", ".join(result.ignored))
    return result
