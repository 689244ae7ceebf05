"""/api/v1/events: live workspace changes as server-sent events, what the dashboard follows instead of polling."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from devyard.api.contract import EVENT_STREAM
from devyard.api.deps import CurrentUser, Workspaces, authenticator, live_stream
from devyard.auth.credentials import bearer_token
from devyard.auth.identity import SESSION_COOKIE, Identity
from devyard.errors import Forbidden
from devyard.workspaces.events import Event
from devyard.workspaces.service import WorkspaceService

router = APIRouter(tags=["workspaces"])
KEEPALIVE_S = 15.0


@router.get(
    "/events",
    summary="Follow workspace changes (text/event-stream; admins: ?all=1 for everyone's)",
    response_class=StreamingResponse,
    responses=EVENT_STREAM,
)
async def events(ident: CurrentUser, service: Workspaces, request: Request, all: bool = False) -> StreamingResponse:
    """A `snapshot` event (every visible workspace with its latest stats), then `workspace`, `stats` and `deleted` events."""
    if all and not ident.acts_as_admin:
        raise Forbidden("only admins may follow every user's workspaces", code="admin_required")
    return StreamingResponse(
        live_stream(request, ident, _stream(request, ident, service, all)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _frame(kind: str, data: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def _snapshot(service: WorkspaceService, ident: Identity, everyone: bool) -> bytes:
    rows = await service.list_for(ident, all_users=everyone, shared=True)
    items = []
    for row in rows:
        item = service.to_model(row).model_dump(mode="json")
        item["stats"] = service.sampler.latest.get((row.owner.name, row.name))
        items.append(item)
    return _frame("snapshot", items)


async def _still_valid(request: Request) -> bool:
    # A stream outlives the request that opened it: a logout or revoked token ends it at the next keep-alive.
    ident = await authenticator(request).resolve(
        request.cookies.get(SESSION_COOKIE), bearer_token(request.headers.get("authorization"))
    )
    return ident is not None


async def _stream(request: Request, ident: Identity, service: WorkspaceService, everyone: bool) -> AsyncIterator[bytes]:
    with service.events.subscribe() as sub:
        yield await _snapshot(service, ident, everyone)
        while True:
            try:
                event: Event = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_S)
            except TimeoutError:
                if not await _still_valid(request):
                    return
                yield b": keep-alive\n\n"
                continue
            if sub.lost:  # fell behind: start over from the present
                while not sub.queue.empty():
                    sub.queue.get_nowait()
                sub.lost = False
                yield await _snapshot(service, ident, everyone)
            elif event.visible_to(ident.name, everyone):
                yield _frame(event.kind, event.data)
