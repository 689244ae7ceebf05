"""The engine's static files, served from the engine install and compressed once, against real engines."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest

from devyard.engine import install
from devyard.gateway.assets import StaticAssets, content_type, preferred_coding
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


def test_compressed_once_then_served_to_every_workspace_of_the_engine_version(
    manager: Manager, assets: dict[str, str]
) -> None:
    js = assets["workbench.js"]
    with login(manager, "admin") as admin:
        first = get(admin, f"/w/admin/ac/{js}", "gzip, deflate")
        second = get(admin, f"/w/admin/ac/{js}", "gzip, deflate")
        plain = get(admin, f"/w/admin/ac/{js}", "identity")
    assert first.status_code == second.status_code == plain.status_code == 200
    assert first.headers["x-devyard-cache"] == "miss" and second.headers["x-devyard-cache"] == "hit"
    assert first.headers["content-encoding"] == second.headers["content-encoding"] == "gzip"
    assert (
        second.headers["cache-control"] == "public, max-age=31536000, immutable"
        and second.headers["vary"] == "Accept-Encoding"
    )
    assert second.headers["content-type"] == "text/javascript"
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


def test_what_goes_to_the_engine(manager: Manager, assets: dict[str, str], engine: install.Engine) -> None:
    css = assets["workbench.css"]
    on_disk = (engine.static_root / css.split("/static/", 1)[1]).read_bytes()
    with login(manager, "admin") as c:
        # The install's file, whatever the request adds: a range or a query changes nothing of it.
        ranged = get(c, f"/w/admin/ac/{css}", "identity", range="bytes=0-99")
        assert (
            ranged.status_code == 200
            and ranged.headers["x-devyard-cache"] in ("hit", "miss")
            and ranged.content == on_disk
        )
        queried = get(c, f"/w/admin/ac/{css}?v=1", "identity")
        assert queried.status_code == 200 and "x-devyard-cache" in queried.headers and queried.content == on_disk
        head = c.head(f"/w/admin/ac/{css}")
        assert head.status_code == 200 and int(head.headers["content-length"]) > 0 and head.content == b""
        # What is not the install's static tree is the engine's own answer, never stored.
        mutable = get(c, "/w/admin/ac/_static/src/browser/media/favicon.ico", "gzip")  # max-age=0
        assert mutable.status_code == 200 and "x-devyard-cache" not in mutable.headers
        other = get(c, "/w/admin/ac/stable-0123456789abcdef0123456789abcdef01234567/static/out/nls.messages.js", "gzip")
        assert (
            other.status_code == 404 and "x-devyard-cache" not in other.headers
        )  # another engine version's: the engine's say
        # A path that names no file of the install, or leaves it, is answered here: 404.
        prefix = css.split("/static/")[0] + "/static"
        for path in (
            "no/such/file.js",
            "out/../../../../../etc/passwd",
            "out/%2e%2e/%2e%2e/%2e%2e/code-server/package.json",
            "out",
            "%ff",
        ):
            missing = get(c, f"/w/admin/ac/{prefix}/{path}", "gzip")
            assert missing.status_code == 404 and "x-devyard-cache" not in missing.headers, path


def test_tabs_opening_at_once_cost_one_compression(manager: Manager, assets: dict[str, str]) -> None:
    js = assets["workbench.js"]  # not asked for in br before
    misses = metric(manager, "devyard_gateway_asset_cache_misses_total")
    with login(manager, "admin") as c, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: get(c, f"/w/admin/ac/{js}", "br, gzip"), range(8)))
    assert {a.status_code for a in answers} == {200} and len({a.content for a in answers}) == 1
    assert {a.headers["content-encoding"] for a in answers} == {"br"}
    assert metric(manager, "devyard_gateway_asset_cache_misses_total") == misses + 1
    assert sorted(a.headers["x-devyard-cache"] for a in answers) == ["hit"] * 7 + ["miss"]


def test_coding_choice_and_types(engine: install.Engine, tmp_path: Path) -> None:
    assert preferred_coding(b"gzip, deflate, br, zstd") == "br"
    assert preferred_coding(b"gzip;q=1.0, br;q=0") == "gzip"
    assert preferred_coding(b"deflate") == preferred_coding(b"") == preferred_coding(b"br;q=0, gzip;q=0") == "identity"
    assert preferred_coding(b"*") == "br"
    # code-server's own Content-Types (checked against its answers)
    assert [
        content_type(n) for n in ("a.js", "a.css", "a.png", "a.ttf", "a.wasm", "a.json", "a.svg", "a.mp3", "a.cjs")
    ] == [
        "text/javascript",
        "text/css",
        "image/png",
        "text/plain",
        "text/plain",
        "application/json",
        "image/svg+xml",
        "audio/mpeg",
        "text/plain",
    ]
    scope = {"method": "GET", "headers": [(b"accept-encoding", b"gzip")], "query_string": b""}
    assets = StaticAssets(engine.static_root, tmp_path, 1 << 20)
    commit = assets.commit
    assert commit and len(commit) == 40
    assert assets.key(scope, f"/stable-{commit}/static/out/x.js") == (commit, "out/x.js", "gzip")
    assert assets.key(scope, "/stable-abcdef0/static/out/x.js") is None  # not the installed engine's
    assert assets.key(scope, "/vscode-remote-resource") is None
    assert assets.key({**scope, "method": "POST"}, f"/stable-{commit}/static/out/x.js") is None
    assert (
        StaticAssets(None, tmp_path, 1 << 20).key(scope, f"/stable-{commit}/static/out/x.js") is None
    )  # no engine here
