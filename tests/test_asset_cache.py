"""The gateway's cache of the engine's compressed immutable assets, against real engines."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import NamedTuple

import httpx
import pytest

from devyard.gateway.assets import AssetCache, preferred_coding
from tests.support import ADMIN_PASSWORD, Manager

BOB_PASSWORD = "bob-password-for-asset-cache"


@pytest.fixture(scope="module")
def assets(manager: Manager) -> dict[str, str]:
    """Two running workspaces of two users (admin's `ac`, bob's `bc`) and the workbench's asset paths."""
    with manager.api() as api:
        assert api.post("/users", json={"name": "bob", "password": BOB_PASSWORD}).status_code == 201
        assert api.post("/workspaces", json={"name": "ac"}).status_code == 201
    with manager.api("bob") as api:
        assert api.post("/workspaces", json={"name": "bc"}).status_code == 201
    manager.wait_status("ac", "running")
    with login(manager, "admin") as c:
        page = c.get("/w/admin/ac/", params={"folder": "/"}).text
    found = dict(re.findall(r'(?:src|href)="(stable-[0-9a-f]+/static/out/[^"]+/(workbench\.(?:js|css)))"', page))
    return {name: path for path, name in found.items()}


@contextmanager
def login(manager: Manager, user: str) -> Iterator[httpx.Client]:
    """A browser-like cookie session of `user`."""
    with httpx.Client(base_url=manager.url, timeout=60) as c:
        password = BOB_PASSWORD if user == "bob" else ADMIN_PASSWORD
        assert c.post("/api/v1/auth/login", json={"username": user, "password": password}).status_code == 200
        yield c


class Answer(NamedTuple):
    """An answer with its body as it came over the wire (still compressed)."""

    status_code: int
    headers: httpx.Headers
    content: bytes


def get(c: httpx.Client, url: str, encoding: str, **headers: str) -> Answer:
    """The raw answer to a GET asking for `encoding`."""
    with c.stream("GET", url, headers={"accept-encoding": encoding, **headers}) as r:
        return Answer(r.status_code, r.headers, b"".join(r.iter_raw()))


def metric(manager: Manager, name: str) -> float:
    """One counter's value from /metrics."""
    with manager.api() as api:
        text = httpx.get(manager.url + "/metrics", headers=api.headers).text
    return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]


def test_compressed_once_then_served_to_every_workspace_of_the_engine_version(manager: Manager, assets: dict[str, str]) -> None:
    js = assets["workbench.js"]
    with login(manager, "admin") as admin:
        first = get(admin, f"/w/admin/ac/{js}", "gzip, deflate")
        second = get(admin, f"/w/admin/ac/{js}", "gzip, deflate")
        plain = get(admin, f"/w/admin/ac/{js}", "identity")
    assert first.status_code == second.status_code == plain.status_code == 200
    assert first.headers["x-devyard-cache"] == "miss" and second.headers["x-devyard-cache"] == "hit"
    assert first.headers["content-encoding"] == second.headers["content-encoding"] == "gzip"
    assert second.headers["cache-control"] == "public, max-age=31536000" and second.headers["vary"] == "Accept-Encoding"
    assert first.content == second.content and int(second.headers["content-length"]) == len(second.content)
    assert gzip.decompress(second.content) == plain.content and len(plain.content) > 1_000_000
    assert "content-encoding" not in plain.headers

    # Another user's workspace on the same engine version gets the same bytes without compressing them again.
    manager.wait_status("bc", "running", token="bob")
    with login(manager, "bob") as bob:
        theirs = get(bob, f"/w/bob/bc/{js}", "gzip")
        assert theirs.headers["x-devyard-cache"] == "hit" and theirs.content == first.content
        # ...but only through the gateway's admission: bob may not read admin's workspace, cached or not.
        assert bob.get(f"/w/admin/ac/{js}").status_code in (403, 404)
    assert httpx.get(f"{manager.url}/w/admin/ac/{js}").status_code == 401


def test_what_is_not_stored(manager: Manager, assets: dict[str, str]) -> None:
    css = assets["workbench.css"]
    with login(manager, "admin") as c:
        ranged = get(c, f"/w/admin/ac/{css}", "identity", range="bytes=0-99")
        assert ranged.status_code in (200, 206) and "x-devyard-cache" not in ranged.headers  # the engine's own answer
        queried = get(c, f"/w/admin/ac/{css}?v=1", "gzip")
        assert queried.status_code == 200 and "x-devyard-cache" not in queried.headers
        mutable = get(c, "/w/admin/ac/_static/src/browser/media/favicon.ico", "gzip")  # max-age=0
        assert mutable.status_code == 200 and "x-devyard-cache" not in mutable.headers
        missing = get(c, f"/w/admin/ac/{css.split('/static/')[0]}/static/no/such/file.js", "gzip")
        assert missing.status_code == 404 and "x-devyard-cache" not in missing.headers


def test_tabs_opening_at_once_cost_the_engine_one_compression(manager: Manager, assets: dict[str, str]) -> None:
    css = assets["workbench.css"]
    misses = metric(manager, "devyard_gateway_asset_cache_misses_total")
    with login(manager, "admin") as c, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: get(c, f"/w/admin/ac/{css}", "br, gzip"), range(8)))
    assert {a.status_code for a in answers} == {200} and len({a.content for a in answers}) == 1
    assert {a.headers["content-encoding"] for a in answers} == {"br"}
    assert metric(manager, "devyard_gateway_asset_cache_misses_total") == misses + 1
    assert sorted(a.headers["x-devyard-cache"] for a in answers) == ["hit"] * 7 + ["miss"]


def test_coding_choice_and_switch() -> None:
    assert preferred_coding(b"gzip, deflate, br, zstd") == "br"
    assert preferred_coding(b"gzip;q=1.0, br;q=0") == "gzip"
    assert preferred_coding(b"deflate") == preferred_coding(b"") == preferred_coding(b"br;q=0, gzip;q=0") == "identity"
    assert preferred_coding(b"*") == "br"
    scope = {"method": "GET", "headers": [(b"accept-encoding", b"gzip")], "query_string": b""}
    assert AssetCache(0).key(scope, "4.1", "/stable-abcdef0/static/out/x.js") is None  # asset_cache_mb: 0
    cache = AssetCache(1 << 20)
    assert cache.key(scope, "4.1", "/stable-abcdef0/static/out/x.js") == ("4.1", "/stable-abcdef0/static/out/x.js", "gzip")
    assert cache.key(scope, "4.1", "/vscode-remote-resource") is None
    assert cache.key({**scope, "method": "POST"}, "4.1", "/stable-abcdef0/static/out/x.js") is None
