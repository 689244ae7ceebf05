"""A memory cache of the engine's immutable assets, compressed once and shared by every workspace.

The engine compresses its versioned assets (`stable-<commit>/static/...`, `Cache-Control:
max-age=31536000`) again on every request: the 19 MB `workbench.js` takes about 0.6-1.3 s to
brotli/gzip each time, against 0.06 s uncompressed. Those bytes never change for a given engine
version, so the gateway keeps the compressed answer, keyed by engine version, path and encoding,
and serves it to every user of every workspace on that version at memory speed.

cachetools' LRUCache keeps the byte budget; what no library does here is the single flight (the
first request fills an entry while the others for the same key wait for it, so twenty tabs opening
at once cost the engine one compression) and the choice of what may be shared between users.
Only requests that passed the gateway's admission reach this cache: it never answers anyone the
engine would not.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cachetools import LRUCache
from prometheus_client import CollectorRegistry, Counter, Gauge
from starlette.types import Scope

from devyard.gateway.headers import downstream_headers
from devyard.gateway.http import Answer, EngineUnreachable, StreamCut

# VS Code's versioned static tree: the commit in the path changes whenever its content can.
_IMMUTABLE = re.compile(r"^/stable-[0-9a-f]{7,64}/static/[^?]*$")
_MIN_MAX_AGE_S = 86_400  # "immutable" means the engine said so: a max-age of a day or more
_CONDITIONAL = (b"range", b"if-range", b"if-none-match", b"if-modified-since", b"authorization")
_NOT_STORED = frozenset({b"date", b"content-length", b"set-cookie", b"age"})
Key = tuple[str, str, str]  # engine version, path, content coding asked of the engine


@dataclass(frozen=True, slots=True)
class Asset:
    """A whole stored answer: status 200, its headers (without length) and body."""

    headers: list[tuple[bytes, bytes]]
    body: bytes

    def response_headers(self, state: bytes) -> list[tuple[bytes, bytes]]:
        """Headers to send, with the length and whether it came from the cache (hit) or the engine (miss)."""
        return [*self.headers, (b"content-length", str(len(self.body)).encode()), (b"x-devyard-cache", state)]


@dataclass(slots=True)
class Uncached:
    """An engine answer that is not stored: send `head` first, then the rest of `response`."""

    response: Answer
    head: bytes = b""


def preferred_coding(accept_encoding: bytes) -> str:
    """The one coding to ask of the engine for a browser that accepts `accept_encoding`: br, gzip or identity."""
    accepted = set()
    for part in accept_encoding.decode("latin-1").lower().split(","):
        name, _, params = part.strip().partition(";")
        q = re.search(r"q\s*=\s*([0-9.]+)", params)
        if name and not (q and float(q.group(1) or 0) == 0):
            accepted.add(name.strip())
    for coding in ("br", "gzip"):
        if coding in accepted or "*" in accepted:
            return coding
    return "identity"


def _immutable(headers: list[tuple[bytes, bytes]]) -> bool:
    """The engine marked the answer as the same for everyone for a long time."""
    control = b", ".join(v for n, v in headers if n.lower() == b"cache-control").decode("latin-1").lower()
    if any(word in control for word in ("private", "no-store", "no-cache")):
        return False
    age = re.search(r"max-age\s*=\s*(\d+)", control)
    return age is not None and int(age.group(1)) >= _MIN_MAX_AGE_S and not any(n.lower() == b"set-cookie" for n, _ in headers)


class AssetCache:
    """Compressed immutable engine assets, shared by workspaces on the same engine version."""

    def __init__(self, max_bytes: int, registry: CollectorRegistry | None = None) -> None:
        self.max_entry = max_bytes // 4  # one huge file must not push out everything else
        self._entries: LRUCache[Key, Asset] = LRUCache(maxsize=max(max_bytes, 1), getsizeof=lambda a: len(a.body))
        self._filling: dict[Key, asyncio.Future[Asset | None]] = {}
        self.enabled = max_bytes > 0
        self.hits = Counter("devyard_gateway_asset_cache_hits", "Immutable engine assets served from the gateway's cache.", registry=registry)
        self.misses = Counter("devyard_gateway_asset_cache_misses", "Immutable engine assets the gateway asked the engine for.", registry=registry)
        self.size = Gauge("devyard_gateway_asset_cache_bytes", "Bytes held by the gateway's asset cache.", registry=registry)

    def key(self, scope: Scope, version: str, path: str) -> Key | None:
        """The cache key of a request, or None when it must go to the engine as it is."""
        if not self.enabled or scope["method"] != "GET" or scope.get("query_string") or not _IMMUTABLE.match(path):
            return None
        coding = "identity"
        for name, value in scope["headers"]:
            if name in _CONDITIONAL:
                return None
            if name == b"accept-encoding":
                coding = preferred_coding(value)
        return (version, path, coding)

    @staticmethod
    def engine_headers(headers: list[tuple[bytes, bytes]], key: Key) -> list[tuple[bytes, bytes]]:
        """The request headers for the engine, asking for exactly the key's coding."""
        return [*((n, v) for n, v in headers if n != b"accept-encoding"), (b"accept-encoding", key[2].encode())]

    async def get(self, key: Key, fetch: Callable[[], Awaitable[Answer]]) -> tuple[Asset, bool] | Uncached:
        """The stored asset and whether it was a hit, else the engine's answer (stored when it may be)."""
        while True:
            asset = self._entries.get(key)
            if asset is not None:
                self.hits.inc()
                return asset, True
            filling = self._filling.get(key)
            if filling is None:
                break
            if await asyncio.shield(filling) is None:  # the filler's answer was not storable: ask the engine ourselves
                return Uncached(await fetch())
        future: asyncio.Future[Asset | None] = asyncio.get_running_loop().create_future()
        self._filling[key] = future
        self.misses.inc()
        try:
            stored = await self._fill(key, await fetch())
            future.set_result(stored if isinstance(stored, Asset) else None)
            return (stored, False) if isinstance(stored, Asset) else stored
        finally:
            if not future.done():
                future.set_result(None)
            del self._filling[key]

    async def _fill(self, key: Key, response: Answer) -> Asset | Uncached:
        raw = response.headers
        if response.status != 200 or not _immutable(raw):
            return Uncached(response)
        length = response.content_length
        if length is not None and length > self.max_entry:
            return Uncached(response)
        body = bytearray()
        try:
            async for chunk in response.chunks():
                body += chunk
                if len(body) > self.max_entry:
                    return Uncached(response, bytes(body))
        except StreamCut as exc:
            raise EngineUnreachable(f"{type(exc).__name__}: {exc}") from exc
        finally:
            if len(body) <= self.max_entry:
                response.release()
        asset = Asset([(n, v) for n, v in downstream_headers(raw) if n.lower() not in _NOT_STORED], bytes(body))
        self._entries[key] = asset
        self.size.set(self._entries.currsize)
        return asset
