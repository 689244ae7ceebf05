"""Databricks DevBox's blocks of the config file, read as DevBox writes them.

`extension_groups` (a mapping keyed by group id, or a list), the `packaged_assets` template
catalog, `ui` (the create form's defaults and which uploads it takes) and `server` (the manager's
port). Keys DevBox has that mean nothing here are allowed, and settings_file names them.
config.Settings holds them and re-exports them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ExtensionGroup(BaseModel):
    """A named set of extensions plus user settings: one entry of DevBox's `extension_groups`."""

    id: str = Field(
        "",
        description="What workspaces, templates and `ui.default_extension_groups` call the group: its key in "
        "DevBox's mapping (in the list form, its `id`, else its `name`).",
    )
    name: str
    description: str = ""
    extensions: list[str] = Field(default_factory=list)
    user_settings: dict[str, Any] = Field(default_factory=dict)


class CatalogItem(BaseModel):
    """One template card (DevBox `packaged_assets.tabs[].items[]`, read unchanged)."""

    model_config = ConfigDict(extra="allow")

    name: str
    description: str = ""
    extensions_groups: list[str] = Field(default_factory=list)
    github_url: str | None = None
    thumbnail_url: str | None = None
    icon_links: Any = None


class CatalogTab(BaseModel):
    """A tab of template cards."""

    model_config = ConfigDict(extra="allow")

    name: str = ""
    items: list[CatalogItem] = Field(default_factory=list)


class PackagedAssets(BaseModel):
    """DevBox `packaged_assets`: the template catalog."""

    model_config = ConfigDict(extra="allow")

    tabs: list[CatalogTab] = Field(default_factory=list)


ARCHIVE_TYPES = {".zip": "zip", ".tar": "tar", ".tar.gz": "tar.gz", ".tgz": "tar.gz"}  # a file name's end: its kind


class UiWorkspace(BaseModel):
    """DevBox `ui.workspace`: what the create form starts with, and which uploads it takes."""

    model_config = ConfigDict(extra="allow")

    default_type: Literal["empty", "upload", "github"] = "empty"
    max_upload_size_mb: int = Field(default=1024, gt=0)
    supported_archive_types: list[str] = Field(default_factory=lambda: list(ARCHIVE_TYPES), min_length=1)

    @model_validator(mode="after")
    def _known_types(self) -> UiWorkspace:
        unknown = [t for t in self.supported_archive_types if t.lower() not in ARCHIVE_TYPES]
        if unknown:
            raise ValueError(
                f"supported_archive_types: {', '.join(unknown)} cannot be unpacked (known: {', '.join(ARCHIVE_TYPES)})"
            )
        self.supported_archive_types = [t.lower() for t in self.supported_archive_types]
        return self

    def archive_kinds(self) -> frozenset[str]:
        """The archive kinds (archive.kind's words) an upload may be."""
        return frozenset(ARCHIVE_TYPES[t] for t in self.supported_archive_types)


class Ui(BaseModel):
    """DevBox `ui`: what the create form offers by default."""

    model_config = ConfigDict(extra="allow")

    default_extension_groups: list[str] = Field(default_factory=list)
    workspace: UiWorkspace = Field(default_factory=UiWorkspace)


class Server(BaseModel):
    """DevBox `server`: its manager's port; its engines' port range means nothing here (engines use unix sockets)."""

    model_config = ConfigDict(extra="allow")

    default_port: int | None = Field(default=None, ge=0, le=65535)


def keyed_groups(value: Any) -> Any:
    """DevBox's `extension_groups` as a mapping keyed by id, from either of its forms (a mapping, or a list)."""
    if not isinstance(value, list):
        return value
    keyed: dict[str, Any] = {}
    for index, item in enumerate(value):
        key = str(index)
        if isinstance(item, dict):
            key = str(item.get("id") or item.get("name") or index)
        if key in keyed:
            raise ValueError(f"two extension groups are called {key!r}")
        keyed[key] = item
    return keyed


def check_group_names(groups: dict[str, ExtensionGroup], ui: Ui, assets: PackagedAssets) -> None:
    """Give each group its key as id; ValueError naming a default or a template's group that is not configured."""
    for key, group in groups.items():
        group.id = key
    offered = ", ".join(groups) or "none are configured"
    unknown = [g for g in ui.default_extension_groups if g not in groups]
    if unknown:
        raise ValueError(f"ui.default_extension_groups: no group {', '.join(unknown)} (groups: {offered})")
    for tab in assets.tabs:
        for item in tab.items:
            unknown = [g for g in item.extensions_groups if g not in groups]
            if unknown:
                raise ValueError(
                    f"packaged_assets: template {item.name!r} names no group {', '.join(unknown)} (groups: {offered})"
                )
