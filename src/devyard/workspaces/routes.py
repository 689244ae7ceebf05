"""RouteTable: what the gateway reads on every request, in memory only, indexed by owner and name and by uid.

Every change to a workspace's state or shares lands here after its database write; nothing on
the proxy's hot path queries the database. Watchers (the dashboard's live events) are told of
each route that changes or goes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from devyard.workspaces.access import Route
from devyard.workspaces.states import Status

Watcher = Callable[[Route, bool], None]  # (route, gone)


class RouteTable:
    """Routes by (owner, name) and by uid, and who each workspace is shared with."""

    def __init__(self) -> None:
        self._by_name: dict[tuple[str, str], Route] = {}
        self._by_uid: dict[str, Route] = {}
        self._shares: dict[str, frozenset[str]] = {}
        self.watchers: list[Watcher] = []

    def get(self, owner: str, name: str) -> Route | None:
        """The route of workspace `owner/name`."""
        return self._by_name.get((owner, name))

    def by_uid(self, uid: str) -> Route | None:
        """The route of the workspace with this uid."""
        return self._by_uid.get(uid)

    def address(self, uid: str) -> str | None:
        """The engine address of a running workspace, else None."""
        route = self._by_uid.get(uid)
        return route.address if route else None

    def all(self) -> list[Route]:
        """Every route."""
        return list(self._by_uid.values())

    def in_status(self, status: Status) -> list[Route]:
        """Every route in `status`."""
        return [r for r in self._by_uid.values() if r.status == status]

    def put(
        self, uid: str, owner: str, name: str, status: Status, address: str | None, idle_timeout_s: int | None
    ) -> Route:
        """Record a workspace's state (an engine address only while running); watchers are told."""
        route = Route(
            uid, owner, name, status, address if status == Status.running else None, self.shares_of(uid), idle_timeout_s
        )
        old = self._by_uid.get(uid)
        if old is not None and (old.owner, old.name) != (owner, name):
            self._by_name.pop((old.owner, old.name), None)
        self._by_name[(owner, name)] = self._by_uid[uid] = route
        self._tell(route, False)
        return route

    def forget(self, uid: str) -> Route | None:
        """Remove a workspace that is gone; watchers are told."""
        self._shares.pop(uid, None)
        route = self._by_uid.pop(uid, None)
        if route is not None:
            self._by_name.pop((route.owner, route.name), None)
            self._tell(route, True)
        return route

    def shares_of(self, uid: str) -> frozenset[str]:
        """Who a workspace is shared with."""
        return self._shares.get(uid, frozenset())

    def set_shares(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Every workspace's shares, as (uid, user name) pairs: the whole table, replaced."""
        shares: dict[str, frozenset[str]] = {}
        for uid, user in pairs:
            shares[uid] = shares.get(uid, frozenset()) | {user}
        self._shares = shares
        for uid, route in list(self._by_uid.items()):
            self._reshare(route, shares.get(uid, frozenset()))

    def share(self, uid: str, users: Iterable[str]) -> None:
        """Set who one workspace is shared with; its route follows at once."""
        self._shares[uid] = frozenset(users)
        route = self._by_uid.get(uid)
        if route is not None:
            self._reshare(route, self._shares[uid])

    def _reshare(self, route: Route, users: frozenset[str]) -> None:
        if route.shared_with != users:
            self.put(route.uid, route.owner, route.name, route.status, route.address, route.idle_timeout_s)

    def _tell(self, route: Route, gone: bool) -> None:
        for watcher in self.watchers:
            watcher(route, gone)
