"""Groups and their members: local ones an admin manages, and the identity provider's, synced at every sign-in.

A member is `local` (an admin added them) or `oidc` (the last sign-in's group claim listed the
group). A sign-in replaces the user's `oidc` memberships with what the claim lists now and keeps the
local ones. Every join and leave is audited (actor `sso` for a sign-in). `users.groups` holds the
names of a user's groups, so resolving a credential (identity.py) reads a user's groups with the
user: a membership removed takes effect at the user's next sign-in or token use, as the cached
identities are dropped when it changes.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devyard.audit import AuditLog
from devyard.errors import Conflict, Invalid, NotFound
from devyard.store.tables import GroupRow, MemberRow, UserRow

GROUP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.:@/+-]{0,127}$")  # what identity providers use: "devs", "org:team/x"
MAX_CLAIMED = 200  # groups read from one claim: more is a misconfigured issuer, not a person


@dataclass
class Group:
    """A group with its members and where each membership came from."""

    name: str
    members: dict[str, str] = field(default_factory=dict)  # user name → "local" or "oidc"


def check_name(name: str) -> str:
    """`name` when it can name a group; Invalid naming the rule otherwise."""
    if not GROUP_NAME.fullmatch(name):
        raise Invalid(
            "group names are 1-128 characters: letters, digits, space and _ . : @ / + -, starting with a letter or digit",
            code="invalid_group_name",
        )
    return name


def claimed(value: object) -> list[str]:
    """The group names in a claim's value (a list of strings, or one string); names that cannot be groups are left out."""
    names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return sorted({str(n) for n in names[:MAX_CLAIMED] if isinstance(n, str | int) and GROUP_NAME.fullmatch(str(n))})


class Groups:
    """The group store, audited."""

    def __init__(self, db: async_sessionmaker[AsyncSession], audit: AuditLog) -> None:
        self.db, self.audit = db, audit
        # Told a group's name when its members change (workspaces shared with it follow: app.py wires it).
        self.changed: list[Callable[[str], Awaitable[None]]] = []

    async def _tell(self, names: Iterable[str]) -> None:
        for name in names:
            for hook in self.changed:
                await hook(name)

    async def all(self) -> list[Group]:
        """Every group with its members, by name."""
        async with self.db() as s:
            groups = {g.id: Group(g.name) for g in await s.scalars(select(GroupRow).order_by(GroupRow.name))}
            rows = await s.execute(
                select(MemberRow.group_id, UserRow.name, MemberRow.source).join(
                    UserRow, UserRow.id == MemberRow.user_id
                )
            )
            for group_id, user, source in rows:
                groups[group_id].members[user] = source
        return list(groups.values())

    async def create(self, name: str, actor: str) -> Group:
        """A new local group; Conflict when the name is taken."""
        async with self.db() as s:
            s.add(GroupRow(name=check_name(name)))
            try:
                await s.commit()
            except IntegrityError:
                raise Conflict(f"group '{name}' exists already", code="group_exists") from None
        await self.audit.record(actor, "group.create", name)
        return Group(name)

    async def remove(self, name: str, actor: str) -> list[int]:
        """Delete a group (its members leave it); the ids of the users who were in it."""
        async with self.db() as s:
            group = await self._named(s, name)
            members = list(await s.scalars(select(MemberRow.user_id).where(MemberRow.group_id == group.id)))
            await s.delete(group)
            await s.commit()
        for user_id in members:
            await self._refresh(user_id)
        await self.audit.record(actor, "group.delete", name, detail={"members": len(members)})
        await self._tell([name])
        return members

    async def add_member(self, name: str, user: UserRow, actor: str) -> None:
        """Put a user in a local membership of the group (Conflict when they are in it already)."""
        async with self.db() as s:
            group = await self._named(s, name)
            s.add(MemberRow(group_id=group.id, user_id=user.id, source="local"))
            try:
                await s.commit()
            except IntegrityError:
                raise Conflict(f"{user.name} is in group '{name}' already", code="member_exists") from None
        await self._refresh(user.id)
        await self.audit.record(actor, "group.join", name, detail={"user": user.name, "source": "local"})
        await self._tell([name])

    async def remove_member(self, name: str, user: UserRow, actor: str) -> None:
        """Take a user out of the group (NotFound when they are not in it)."""
        async with self.db() as s:
            group = await self._named(s, name)
            gone = await s.execute(
                delete(MemberRow).where(MemberRow.group_id == group.id, MemberRow.user_id == user.id)
            )
            await s.commit()
        if not gone.rowcount:  # type: ignore[attr-defined]
            raise NotFound(f"{user.name} is not in group '{name}'", code="member_not_found")
        await self._refresh(user.id)
        await self.audit.record(actor, "group.leave", name, detail={"user": user.name})
        await self._tell([name])

    async def sync(self, user: UserRow, names: list[str]) -> tuple[list[str], list[str]]:
        """Make the user's `oidc` memberships exactly `names` (groups made as needed); (joined, left), both audited."""
        async with self.db() as s:
            have = dict(
                (await s.execute(
                    select(GroupRow.name, GroupRow.id).join(MemberRow, MemberRow.group_id == GroupRow.id)
                    .where(MemberRow.user_id == user.id, MemberRow.source == "oidc")
                )).tuples().all()
            )  # fmt: skip
            joined, left = [n for n in names if n not in have], [n for n in have if n not in names]
            for name in left:
                await s.execute(delete(MemberRow).where(MemberRow.group_id == have[name], MemberRow.user_id == user.id))
            for name in joined:
                group = await s.scalar(select(GroupRow).where(GroupRow.name == name))
                if group is None:
                    group = GroupRow(name=name)
                    s.add(group)
                    await s.flush()
                if await s.get(MemberRow, (group.id, user.id)) is None:  # not a local member already
                    s.add(MemberRow(group_id=group.id, user_id=user.id, source="oidc"))
            await s.commit()
        if joined or left:
            await self._refresh(user.id)
        for name in joined:
            await self.audit.record("sso", "group.join", name, detail={"user": user.name, "source": "oidc"})
        for name in left:
            await self.audit.record("sso", "group.leave", name, detail={"user": user.name, "source": "oidc"})
        await self._tell([*joined, *left])
        return joined, left

    async def _named(self, s: AsyncSession, name: str) -> GroupRow:
        group = await s.scalar(select(GroupRow).where(GroupRow.name == name))
        if group is None:
            raise NotFound(f"no group '{name}'", code="group_not_found")
        return group

    async def _refresh(self, user_id: int) -> None:
        """Write the names of the user's groups onto the user (what credentials resolve with)."""
        async with self.db() as s:
            names = sorted(
                await s.scalars(
                    select(GroupRow.name)
                    .join(MemberRow, MemberRow.group_id == GroupRow.id)
                    .where(MemberRow.user_id == user_id)
                )
            )
            await s.execute(update(UserRow).where(UserRow.id == user_id).values(groups=names))
            await s.commit()
