"""What a user's groups let them use: the sizes, extension groups and templates offered to them (settings_groups.py).

The catalog endpoints and the dashboard's create form list only what is offered; creating or
resizing a workspace with anything else is refused (403), naming what is offered instead. Admins
(by their own flag or a group) are offered everything.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from devyard.config import Settings
from devyard.errors import Forbidden
from devyard.provision import EMPTY_TEMPLATE
from devyard.settings_groups import Rights, rights

T = TypeVar("T")


def of(settings: Settings, groups: Iterable[str] | None, is_admin: bool) -> Rights:
    """The rights a user's groups give (an admin's: no restriction)."""
    return Rights(admin=True) if is_admin else rights(settings.groups, list(groups or ()))


def keep(allowed: frozenset[str] | None, items: Iterable[T], name: str = "name") -> list[T]:
    """The items whose `name` attribute is allowed (all of them when nothing restricts)."""
    return [i for i in items if allowed is None or getattr(i, name) in allowed]


def check(granted: Rights, size: str | None, extension_groups: Iterable[str], template: str | None) -> None:
    """Forbidden when a size, an extension group or a template is not offered to the user."""
    for what, chosen, allowed in (
        ("size", [size] if size else [], granted.sizes),
        ("extension group", list(extension_groups), granted.extension_groups),
        ("template", [template] if template and template != EMPTY_TEMPLATE else [], granted.templates),
    ):
        refused = [c for c in chosen if allowed is not None and c not in allowed]
        if refused:
            offered = ", ".join(sorted(allowed or ())) or "none"
            raise Forbidden(
                f"{what} '{refused[0]}' is not offered to your groups (offered: {offered})", code="not_offered"
            )
