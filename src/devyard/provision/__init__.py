"""Making a new workspace's folders and first settings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from devyard.backends.base import WorkspaceSpec
from devyard.config import ExtensionGroup
from devyard.errors import Invalid, ProvisionError

# Sensible defaults for a browser-hosted editor; extension groups' user_settings override them.
BASE_USER_SETTINGS: dict[str, Any] = {
    "workbench.startupEditor": "none",
    "security.workspace.trust.enabled": False,
    "telemetry.telemetryLevel": "off",
    "update.mode": "none",
    # No AI service is reachable from a self-hosted engine by default: keep its panel closed.
    "chat.disableAIFeatures": True,
    "workbench.secondarySideBar.defaultVisibility": "hidden",
}


def resolve_groups(names: list[str], available: list[ExtensionGroup]) -> list[ExtensionGroup]:
    """The configured groups named in `names`; Invalid naming any unknown one."""
    by_name = {g.name: g for g in available}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        offered = ", ".join(sorted(by_name)) or "none are configured"
        raise Invalid(f"unknown extension group(s): {', '.join(unknown)} (available: {offered})", code="unknown_extension_group")
    return [by_name[n] for n in names]


def provision(ws: WorkspaceSpec, groups: list[ExtensionGroup]) -> None:
    """Create the workspace's folders and write its user settings; ProvisionError on failure."""
    try:
        for d in (ws.files_dir, ws.home_dir, ws.data_dir / "User", ws.extensions_dir, ws.log_file.parent):
            d.mkdir(parents=True, exist_ok=True)
        settings = dict(BASE_USER_SETTINGS)
        for group in groups:
            settings.update(group.user_settings)
        (ws.data_dir / "User" / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    except OSError as exc:
        raise ProvisionError(f"could not create the workspace folders under {ws.root}: {exc}") from exc


def remove(root: Path, keep_files: bool) -> None:
    """Delete a workspace's folders; with keep_files only files/ stays."""
    if not root.exists():
        return
    if not keep_files:
        shutil.rmtree(root, ignore_errors=True)
        return
    for child in root.iterdir():
        if child.name != "files":
            shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)
