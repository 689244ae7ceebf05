"""Host labels, URLs and settings of workspace origins; one-time codes' cookies; the live-connection registry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pydantic import ValidationError

from devyard.config import Settings
from devyard.gateway.handoff import Grant, Handoff
from devyard.live import Live, LiveConnections, until_closed
from devyard.origins import HostTarget, Origins, parse_label, port_label, resolve_domain, workspace_label


@pytest.mark.parametrize(("owner", "name"), [("alice", "app"), ("a", "b-c-d"), ("x9", "0")])
def test_plain_names_round_trip(owner: str, name: str) -> None:
    assert workspace_label(owner, name, "abc123") == f"{name}--{owner}"
    assert parse_label(workspace_label(owner, name, "abc123")) == HostTarget(owner=owner, name=name)
    assert parse_label(port_label(owner, name, "abc123", 3000)) == HostTarget(owner=owner, name=name, port=3000)


@pytest.mark.parametrize(
    ("owner", "name"),
    [("jane.doe", "app"), ("j_d", "app"), ("alice", "a--b"), ("alice", "trailing-"), ("o" * 39, "n" * 39)],
)
def test_names_that_cannot_be_a_label_use_the_uid(owner: str, name: str) -> None:
    label = workspace_label(owner, name, "abc123")
    assert label == "id---abc123" and len(port_label(owner, name, "abc123", 65535)) <= 63
    assert parse_label(label) == HostTarget(uid="abc123")
    assert parse_label(port_label(owner, name, "abc123", 8080)) == HostTarget(uid="abc123", port=8080)


@pytest.mark.parametrize(
    "label",
    [
        "app",
        "a--b--c--d",
        "app---alice",
        "x--id---abc",
        "0--app--alice",
        "70000--app--alice",
        "-a--b",
        "id---",
        "id---a.b",
        "3000--",
    ],
)
def test_labels_that_name_nothing(label: str) -> None:
    assert parse_label(label) is None


def test_the_longest_plain_labels_fit() -> None:
    owner, name = "o" * 26, "n" * 26  # 7 + 26 + 2 + 26 = 61
    assert workspace_label(owner, name, "u") == f"{name}--{owner}"
    assert len(port_label(owner, name, "u", 65535)) <= 63


def test_urls_hosts_and_refusals() -> None:
    o = Origins("ws.example.com", "https://devyard.example.com")
    assert o.dashboard_url() == "https://devyard.example.com"
    assert o.workspace_url("alice", "app", "u1") == "https://app--alice.ws.example.com/"
    assert o.port_url("alice", "app", "u1", 3000) == "https://3000--app--alice.ws.example.com/"
    assert o.target("APP--alice.ws.example.com:443") == HostTarget(owner="alice", name="app")
    assert o.target("a.b.ws.example.com") is None and o.target("devyard.example.com") is None
    assert o.host_allowed("devyard.example.com") and o.host_allowed("app--alice.ws.example.com")
    assert o.host_allowed("127.0.0.1:8000") and o.host_allowed("[::1]:8000") and o.host_allowed("localhost:8000")
    assert not o.host_allowed("evil.example.com") and not o.host_allowed(None)
    local = Origins("localhost", None, "http", 8000)
    assert local.workspace_url("alice", "app", "u1") == "http://app--alice.localhost:8000/"
    assert local.elsewhere("127.0.0.1:8000") == "http://localhost:8000" and local.elsewhere("localhost:8000") is None
    path = Origins(None)
    assert path.path_mode and path.workspace_url("alice", "app", "u1") == "/w/alice/app/"
    assert (
        path.port_url("alice", "app", "u1", 3000) == "/w/alice/app/proxy/3000/"
        and path.target("x--y.localhost") is None
    )


def test_domain_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEVYARD_WORKSPACE_DOMAIN")  # the suite's path mode (conftest.py) would beat what is passed here
    assert resolve_domain(Settings(workspace_domain="auto")) == "localhost"
    assert resolve_domain(Settings(workspace_domain="auto", host="0.0.0.0")) is None  # no wildcard to assume: path mode
    assert resolve_domain(Settings(workspace_domain="auto", public_url="https://devyard.example.com")) is None
    assert resolve_domain(Settings(workspace_domain="none")) is None
    for bad, words in [
        ({"workspace_domain": "ws.example.com"}, "set public_url"),
        ({"workspace_domain": "-x.com"}, "not a domain name"),
        ({"public_url": "https://x.example.com/path"}, "scheme and host only"),
        ({"public_url": "ftp://x"}, "scheme and host only"),
    ]:
        with pytest.raises(ValidationError, match=words):
            Settings(**bad)


def test_workspace_cookies_are_signed_and_bound() -> None:
    handoff = Handoff(None, b"k" * 32)  # type: ignore[arg-type]  # no database needed to sign
    grant = Grant("abc123", 3000, "f" * 64)
    value = handoff.cookie(grant)
    assert handoff.read_cookie(value) == grant
    assert handoff.read_cookie(value.replace("abc123", "abc124")) is None  # another workspace: the signature fails
    assert handoff.read_cookie(value.replace(".3000.", ".3001.")) is None
    assert Handoff(None, b"j" * 32).read_cookie(value) is None  # type: ignore[arg-type]
    assert handoff.read_cookie("") is None and handoff.read_cookie("garbage") is None


def test_the_registry_closes_what_access_no_longer_covers() -> None:
    closed: list[str] = []
    live = LiveConnections()

    def conn(name: str, credential: str, user_id: int, uid: str | None = None, port: int | None = None) -> Live:
        return live.add(Live(credential, user_id, name, lambda: closed.append(name), uid, port))

    conn("bob-session", "s:1", 2, "w1")
    conn("bob-token", "t:1", 2, "w1", 3000)
    conn("alice", "s:2", 1, "w1")
    assert live.close_credential("s:1") == 1 and closed == ["bob-session"]
    assert live.recheck("w1", lambda c: c.user == "alice") == 1 and closed[-1] == "bob-token"
    assert live.close_sessions_of(1) == 1 and len(live) == 0


def test_an_event_stream_ends_when_its_access_does() -> None:
    async def run() -> list[bytes]:
        live = LiveConnections()

        async def forever() -> AsyncIterator[bytes]:
            yield b"first"
            await asyncio.sleep(3600)
            yield b"never"

        got: list[bytes] = []

        async def read() -> None:
            async for item in until_closed(live, Live("s:1", 1, "u", lambda: None), forever()):
                got.append(item)

        task = asyncio.create_task(read())
        await asyncio.sleep(0.05)
        assert live.close_credential("s:1") == 1
        await asyncio.wait_for(task, 1)
        assert len(live) == 0
        return got

    assert asyncio.run(run()) == [b"first"]
