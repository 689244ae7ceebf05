"""Who may do what with a workspace, and the route the gateway reads on every request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from devyard.workspaces.states import Status


@dataclass(frozen=True, slots=True)
class Route:
    """What the gateway needs to reach one workspace."""

    uid: str
    owner: str
    name: str
    status: Status
    address: str | None = None  # the engine's: a unix socket path, or host:port
    shared_with: frozenset[str] = frozenset()
    idle_timeout_s: int | None = None  # its own idle timeout; None: the manager's

    def may_open(self, user: str) -> bool:
        """Whether `user` may reach the engine: the owner, or someone it is shared with."""
        return user == self.owner or user in self.shared_with


class Action(StrEnum):
    """What a caller wants to do with a workspace."""

    read = "read"  # see it, its logs and stats
    control = "control"  # start, stop, restart
    delete = "delete"
    share = "share"
    configure = "configure"  # add extension groups: code that will run in the workspace, so its owner only
    open = "open"  # reach the engine through the gateway


SHARED_USER_ACTIONS = frozenset({Action.read, Action.open})
# Admins run the place but do not get into workspaces nobody shared with them.
ADMIN_ACTIONS = frozenset({Action.read, Action.control, Action.delete})


@dataclass
class Listeners:
    """Who is told when access to a workspace narrows (live connections are checked again), and of other replicas' notices."""

    access_changed: list[Callable[[str], None]] = field(default_factory=list)  # told the uid
    notices: list[Callable[[str], None]] = field(
        default_factory=list
    )  # told notices that name no workspace (`kind:key`)

    def narrowed(self, uid: str) -> None:
        """Who may reach a workspace (or one of its ports) may have narrowed."""
        for hook in self.access_changed:
            hook(uid)

    def notice(self, notice: str) -> None:
        """Pass on another replica's notice that names no workspace."""
        for hook in self.notices:
            hook(notice)
