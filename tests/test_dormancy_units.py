"""Dormancy's query asks the database for exactly the workspaces whose step is due, as dormancy.item() decides."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta
from pathlib import Path

import pytest

from devyard.clock import CLOCK
from devyard.config import Settings
from devyard.store.db import migrate, open_engine, sessionmaker
from devyard.store.tables import UserRow, WorkspaceRow
from devyard.workspaces.dormancy import item
from devyard.workspaces.repository import Repository

pytestmark = pytest.mark.fast


async def _nothing(*_: object) -> None:
    return None


def test_the_due_query_finds_what_item_says_is_due(tmp_path: Path) -> None:
    async def body() -> None:
        settings = Settings(data_dir=tmp_path, dormant_after_days=30, delete_dormant_after_days=7)
        migrate(settings.db_url)
        engine = open_engine(settings.db_url)
        db = sessionmaker(engine)
        now = CLOCK.now()
        ago = [None, now - timedelta(days=60), now - timedelta(days=29), now - timedelta(days=31), now]
        marked = [None, now - timedelta(days=8), now - timedelta(days=6)]
        combos = list(itertools.product(ago[1:], ago, ago, ago, marked))
        async with db() as s:
            ada = UserRow(name="ada")
            s.add(ada)
            await s.flush()
            for n, (created, started, active, provisioned, dormant) in enumerate(combos):
                s.add(WorkspaceRow(uid=f"w{n:05d}", owner_id=ada.id, name=f"w{n}", status="stopped",
                                   created_at=created, started_at=started, last_activity_at=active,
                                   provisioned_at=provisioned, dormant_at=dormant))  # fmt: skip
            await s.commit()
        repo = Repository(db, _nothing)
        every = await repo.all()
        expected = {r.uid for r in every if item(settings, r, now).due}
        assert expected and len(expected) < len(every)  # both kinds are there
        found = await repo.dormancy_due(now - timedelta(days=30), now - timedelta(days=7))
        assert {r.uid for r in found} == expected
        assert await repo.dormancy_due(None, None) == []
        marked_only = await repo.dormancy_due(None, now - timedelta(days=7))
        assert {r.uid for r in marked_only} == {r.uid for r in every if r.uid in expected and r.dormant_at}
        await engine.dispose()

    asyncio.run(body())
