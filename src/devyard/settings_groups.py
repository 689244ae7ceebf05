"""What a group means here (`devyard.groups`), and what a user's groups add up to.

A mixin of Settings (config.py) like settings_time.py. A group is named as the identity provider
names it (its claim's value) or as an admin made it locally; its policy can make members admins,
raise their quotas, restrict the sizes they may use, and narrow the extension groups and templates
offered to them. A user in several groups gets the most of each: admin if any group says so, the
highest quota a group sets (it stands in for the manager's default; a quota an admin set for the
user still wins), and the union of the groups' lists (a group without a list restricts nothing,
so one such group lifts the restriction).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field


class GroupPolicy(BaseModel):
    """One group's meaning (`devyard.groups.<name>`); a field left out grants or restricts nothing."""

    model_config = ConfigDict(extra="forbid")

    admin: bool = Field(default=False, description="Members are admins.")
    max_workspaces: int | None = Field(default=None, ge=0, description="Members' quota of workspaces.")
    max_running: int | None = Field(default=None, ge=0, description="Members' quota of running workspaces.")
    max_disk_mb: int | None = Field(default=None, ge=0, description="Members' quota of disk, in MB.")
    sizes: list[str] | None = Field(default=None, description="The only sizes members may use.")
    extension_groups: list[str] | None = Field(default=None, description="The only extension groups offered.")
    templates: list[str] | None = Field(default=None, description="The only templates offered.")


@dataclass(frozen=True)
class Rights:
    """What a user's groups add up to (None: no group says)."""

    admin: bool = False
    max_workspaces: int | None = None
    max_running: int | None = None
    max_disk_mb: int | None = None
    sizes: frozenset[str] | None = None
    extension_groups: frozenset[str] | None = None
    templates: frozenset[str] | None = None


def rights(policies: dict[str, GroupPolicy], groups: list[str] | None) -> Rights:
    """The most each of `groups` (names) grants; groups without a policy count as groups that say nothing."""
    found = [policies.get(name, GroupPolicy()) for name in groups or []]
    if not found:
        return Rights()

    def union(lists: list[list[str] | None]) -> frozenset[str] | None:
        return None if any(v is None for v in lists) else frozenset(x for v in lists for x in v or [])

    return Rights(
        admin=any(p.admin for p in found),
        max_workspaces=_highest([p.max_workspaces for p in found]),
        max_running=_highest([p.max_running for p in found]),
        max_disk_mb=_highest([p.max_disk_mb for p in found]),
        sizes=union([p.sizes for p in found]),
        extension_groups=union([p.extension_groups for p in found]),
        templates=union([p.templates for p in found]),
    )


def _highest(values: list[int | None]) -> int | None:
    given = [v for v in values if v is not None]
    return max(given) if given else None


class GroupSettings(BaseModel):
    """Fields of Settings about groups; each is documented in docs/config.md."""

    oidc_groups_claim: str = Field(
        "groups", min_length=1, description="The ID token or userinfo claim that lists a user's groups."
    )
    groups: dict[str, GroupPolicy] = Field(
        default_factory=dict, description="What a group means here: admin, quotas, sizes, extension groups, templates."
    )
