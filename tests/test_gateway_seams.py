"""The gateway's seams without engines: one error body, one sign-in redirect, flow control, the lifespan state."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.types import Message, Scope

from devyard.api.errors import LOGIN_REDIRECT, error_response, is_page, login_location, login_redirect, wants_html
from devyard.errors import error_body
from devyard.gateway.app import STATE_KEY, GatewayMiddleware
from devyard.gateway.flow import FlowControl
from devyard.gateway.responses import Refusal
from devyard.gateway.tunnel import TunnelProtocol

pytestmark = pytest.mark.fast


def _scope(path: str, accept: bytes | None = None, kind: str = "http", query: bytes = b"") -> Scope:
    headers = [(b"host", b"example.test")] + ([(b"accept", accept)] if accept is not None else [])
    return {"type": kind, "path": path, "query_string": query, "headers": headers, "method": "GET"}


def test_one_error_body() -> None:
    expected = {"error": {"code": "quota_exceeded", "message": "too many"}}
    assert json.loads(error_body("quota_exceeded", "too many")) == expected
    response = error_response(429, "too_many_attempts", "slow down — please", {"retry-after": "2"})
    assert response.status_code == 429 and response.body == error_body("too_many_attempts", "slow down — please")
    assert response.headers["content-type"] == "application/json" and response.headers["retry-after"] == "2"


def test_one_page_test_and_one_login_redirect() -> None:
    assert wants_html(_scope("/w/ann/proj/", b"text/html,application/xhtml+xml"))
    assert not wants_html(_scope("/w/ann/proj/", b"application/json")) and not wants_html(_scope("/w/ann/proj/"))
    assert not wants_html(_scope("/w/ann/proj/", b"text/html", kind="websocket"))  # an upgrade is never a page
    assert is_page(_scope("/workspaces", b"text/html")) and not is_page(_scope("/api/v1/workspaces", b"text/html"))
    scope = _scope("/w/ann/proj/some/path", b"text/html", query=b"x=1")
    assert login_location(scope) == "/login?next=/w/ann/proj/some/path%3Fx%3D1"
    redirect = login_redirect(scope)
    assert LOGIN_REDIRECT == 303 and redirect.status_code == 303
    assert redirect.headers["location"] == login_location(scope)
    elsewhere = login_redirect(scope, "http://dash.test/auth/workspace?host=h&next=%2F")
    assert (
        elsewhere.status_code == 303
        and elsewhere.headers["location"] == "http://dash.test/auth/workspace?host=h&next=%2F"
    )


class _Transport:
    """Just enough of an asyncio transport to watch what flow control and the tunnel do with it."""

    def __init__(self) -> None:
        self.reading, self.closed, self.pauses, self.written = True, False, 0, b""

    def pause_reading(self) -> None:
        self.pauses += 1
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name)


def test_flow_control_pauses_once_and_releases_writers() -> None:
    async def main() -> None:
        transport = _Transport()
        flow = FlowControl(transport)  # type: ignore[arg-type]
        flow.pause_reading()
        flow.pause_reading()
        assert not transport.reading and transport.pauses == 1 and flow.reading_paused
        flow.resume_reading()
        assert transport.reading and not flow.reading_paused
        flow.pause_writing()
        waiter = asyncio.ensure_future(flow.drain())
        await asyncio.sleep(0)
        assert not waiter.done()
        flow.resume_writing()
        await asyncio.wait_for(waiter, 1)
        flow.pause_writing()
        waiter = asyncio.ensure_future(flow.drain())
        flow.end()  # the connection ended: nobody waits for a drain that never comes
        await asyncio.wait_for(waiter, 1)
        flow.pause_reading()
        assert transport.reading  # nothing to pause on an ended connection

    asyncio.run(main())


def test_the_gateway_goes_into_the_lifespan_state_and_out_at_shutdown() -> None:
    made = object()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.gateway = made
        yield

    app = GatewayMiddleware(FastAPI(lifespan=lifespan))
    state: dict[str, Any] = {}
    sent: list[str] = []

    async def main() -> None:
        incoming: asyncio.Queue[Message] = asyncio.Queue()
        await incoming.put({"type": "lifespan.startup"})

        async def send(message: Message) -> None:
            sent.append(message["type"])
            if message["type"] == "lifespan.startup.complete":
                assert state[STATE_KEY] is made  # there before uvicorn would start listening
                await incoming.put({"type": "lifespan.shutdown"})

        await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}, incoming.get, send)

    asyncio.run(main())
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"] and STATE_KEY not in state


class _Gateway:
    """A Gateway that claims /w/ and refuses everyone, as the real one does without credentials."""

    origins = SimpleNamespace(host_allowed=lambda host: True)

    def claims(self, scope: Scope) -> bool:
        return str(scope["path"]).startswith("/w/")

    async def admit(self, scope: Scope) -> Refusal:
        return Refusal(401, "not_authenticated", "log in or send an API token", login=True)


def test_the_tunnel_finds_the_gateway_in_the_lifespan_state() -> None:
    async def main() -> None:
        browser = _Transport()
        server_state = SimpleNamespace(connections=set(), tasks=set())
        tunnel = TunnelProtocol(SimpleNamespace(forwarded_allow_ips="127.0.0.1"), server_state, {STATE_KEY: _Gateway()})
        tunnel.connection_made(browser)  # type: ignore[arg-type]
        tunnel.data_received(
            b"GET /w/ann/proj/ HTTP/1.1\r\nhost: example.test\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n"
        )
        assert tunnel in server_state.connections and not browser.reading  # held until the gateway has answered
        assert tunnel.task is not None
        await asyncio.wait_for(tunnel.task, 5)
        head, _, body = browser.written.partition(b"\r\n\r\n")
        # Refused as a plain answer (no redirect an upgrade could not follow), with the one error body.
        assert head.startswith(b"HTTP/1.1 401 Unauthorized\r\n") and b"location" not in head.lower()
        assert body == error_body("not_authenticated", "log in or send an API token") and browser.closed

    asyncio.run(main())
