"""The engine's versioned static files, served by the gateway from the trusted engine install on disk.

A workspace's engine runs as its tenant, and whatever answers on its socket is the tenant's: one
who rebinds the socket to a server of their own answers every request the gateway sends it. So
nothing shared between users is ever filled from an engine's answer. `stable-<commit>/static/<file>`
for the commit of the engine devyard installed itself (root-owned, under the engine cache) is read
from that install, exactly the file code-server would send (its static route serves the same
folder, `lib/vscode`), and never asked of an engine. A request for another commit, or for a path
outside that tree, goes to the workspace's own engine and is never stored.

Compression: code-server brotli/gzip-compresses these files again on every request (0.6-1.3 s of
CPU for the 19 MB `workbench.js`). Here each file is compressed once per engine version, in a
worker thread, into `<data_dir>/cache/static/<commit>/<coding>/<path>` (root's, 0700), so a manager
restart does not pay again, and kept in a memory LRU (cachetools) of `asset_cache_mb`. A file too
big for the LRU is streamed from its compressed copy on disk. uvicorn's ASGI offers no zero-copy
send; the LRU serves the hot files from memory, which is what sendfile would save.

What no library does here: the single flight (twenty tabs opening at once cost one compression),
the bound on every fill (FILL_TIMEOUT_S), and the choice of what may be served to every user.
Only requests that passed the gateway's admission reach this: it never answers anyone the engine
would not.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import mimetypes
import os
import posixpath
import re
import stat
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import brotli
from cachetools import LRUCache
from prometheus_client import CollectorRegistry, Counter, Gauge
from starlette.types import Scope

log = logging.getLogger("devyard.gateway")

_STATIC = re.compile(r"^/stable-(?P<commit>[0-9a-f]{7,64})/static/(?P<rel>[^?]*)$")
FILL_TIMEOUT_S = 60.0  # compressing the largest file (workbench.js, 19 MB) takes about a second
CHUNK = 256 * 1024
MIN_COMPRESS = 1024  # code-server's compression middleware leaves smaller answers alone
BROTLI_QUALITY = 6  # 0.8 s for workbench.js, 4.3 MB; quality 9 takes 3.3 s for 4 % less
GZIP_LEVEL = 6
CACHE_CONTROL = b"public, max-age=31536000, immutable"
# code-server's own choices, checked against its answers: VS Code's textMimeType, then media types, else text/plain.
_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".json": "application/json",
    ".svg": "image/svg+xml",
}
_MEDIA = ("image/", "audio/", "video/")
_COMPRESSIBLE = re.compile(r"^(text/|application/json|image/svg\+xml)")
Key = tuple[str, str, str]  # commit, path below static/, content coding


def preferred_coding(accept_encoding: bytes) -> str:
    """The one coding to send a browser that accepts `accept_encoding`: br, gzip or identity."""
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


def content_type(name: str) -> str:
    """The Content-Type code-server sends for a static file called `name` (text/plain when it knows none)."""
    suffix = posixpath.splitext(name)[1].lower()
    if suffix in _TYPES:
        return _TYPES[suffix]
    media = mimetypes.guess_type(name)[0] or ""
    return media if media.startswith(_MEDIA) else "text/plain"


def engine_commit(app_root: Path) -> str | None:
    """The commit in the engine's product.json: what its `stable-<commit>/static/` URLs carry."""
    try:
        commit = json.loads((app_root / "product.json").read_text()).get("commit")
    except (OSError, ValueError, AttributeError):
        return None
    return commit if isinstance(commit, str) and re.fullmatch(r"[0-9a-f]{7,64}", commit) else None


@dataclass(frozen=True, slots=True)
class Asset:
    """A whole answer kept in memory: its headers (without length) and body."""

    headers: list[tuple[bytes, bytes]]
    body: bytes

    def response_headers(self, state: bytes) -> list[tuple[bytes, bytes]]:
        """Headers to send, with the length and whether it came from memory (hit) or disk (miss)."""
        return [*self.headers, (b"content-length", str(len(self.body)).encode()), (b"x-devyard-cache", state)]


@dataclass(frozen=True, slots=True)
class OnDisk:
    """An answer too big for memory: its headers and the file its body is read from."""

    headers: list[tuple[bytes, bytes]]
    path: Path
    size: int

    def response_headers(self) -> list[tuple[bytes, bytes]]:
        """Headers to send, with the length."""
        return [*self.headers, (b"content-length", str(self.size).encode()), (b"x-devyard-cache", b"miss")]

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, read from disk in a worker thread, chunk by chunk."""
        with await asyncio.to_thread(self.path.open, "rb") as f:
            while chunk := await asyncio.to_thread(f.read, CHUNK):
                yield chunk


class NotInInstall(Exception):
    """The path names no file of the engine's static tree (the engine would answer 404 too)."""


class StaticAssets:
    """The installed engine's `stable-<commit>/static/` tree, compressed once and shared by every workspace."""

    def __init__(
        self, app_root: Path | None, cache_dir: Path, max_bytes: int, registry: CollectorRegistry | None = None
    ) -> None:
        self.root = Path(os.path.realpath(app_root)) if app_root else None
        self.commit = engine_commit(self.root) if self.root else None
        self.cache_dir = cache_dir
        self.max_entry = max_bytes // 4  # one huge file must not push out everything else
        self._entries: LRUCache[Key, Asset] = LRUCache(maxsize=max(max_bytes, 1), getsizeof=lambda a: len(a.body))
        self._filling: dict[Key, asyncio.Future[Asset | OnDisk]] = {}
        self.hits = Counter(
            "devyard_gateway_asset_cache_hits",
            "Static engine files served from the gateway's memory.",
            registry=registry,
        )
        self.misses = Counter(
            "devyard_gateway_asset_cache_misses",
            "Static engine files the gateway read (and compressed) from the engine install.",
            registry=registry,
        )
        self.size = Gauge(
            "devyard_gateway_asset_cache_bytes",
            "Bytes held in the gateway's memory of static engine files.",
            registry=registry,
        )
        if app_root and not self.commit:
            log.warning(
                "no commit in %s/product.json: the engine's static files go to each workspace's engine, uncached",
                app_root,
            )

    def key(self, scope: Scope, path: str) -> Key | None:
        """The key of a request for the installed engine's static tree, or None when it must go to the workspace's engine."""
        if self.commit is None or scope["method"] not in ("GET", "HEAD"):
            return None
        found = _STATIC.match(path)
        if found is None or found["commit"] != self.commit:
            return None  # another engine version's files: only that workspace's engine has them
        coding = "identity"
        for name, value in scope["headers"]:
            if name == b"accept-encoding":
                coding = preferred_coding(value)
        return (self.commit, found["rel"], coding)

    async def get(self, key: Key) -> tuple[Asset | OnDisk, bool]:
        """The answer for `key` and whether it was shared (memory, or another request's fill); NotInInstall for no such file."""
        while True:
            asset = self._entries.get(key)
            if asset is not None:
                self.hits.inc()
                return asset, True
            filling = self._filling.get(key)
            if filling is None:
                break
            try:
                return await asyncio.shield(filling), True  # another request's fill: shared, not made again
            except NotInInstall:
                raise
            except Exception:  # the filler failed (or timed out): try again ourselves
                continue
        future: asyncio.Future[Asset | OnDisk] = asyncio.get_running_loop().create_future()
        self._filling[key] = future
        self.misses.inc()
        try:
            found = await asyncio.wait_for(asyncio.to_thread(self._load, key), FILL_TIMEOUT_S)
            if isinstance(found, Asset):
                self._entries[key] = found
                self.size.set(self._entries.currsize)
            future.set_result(found)
            return found, False
        except BaseException as exc:
            # A cancelled filler (its browser went away) must not cancel the others waiting: they fill it themselves.
            future.set_exception(
                exc if isinstance(exc, Exception) else RuntimeError("the request filling it went away")
            )
            future.exception()  # retrieved here: waiters see it, nobody else must
            raise
        finally:
            del self._filling[key]

    # -- in a worker thread ----------------------------------------------------------------------
    def _source(self, rel: str) -> tuple[Path, int]:
        """The install's file for the URL path `rel` (percent-encoded, as code-server decodes it) and its size."""
        assert self.root is not None
        try:
            name = unquote(rel, errors="strict")
        except UnicodeDecodeError as exc:
            raise NotInInstall(rel) from exc
        name = posixpath.normpath("/" + name).lstrip("/")
        if "\0" in name or not name or name == ".":
            raise NotInInstall(rel)
        real = os.path.realpath(self.root / name)
        if not real.startswith(str(self.root) + os.sep):
            raise NotInInstall(rel)
        try:
            st = os.stat(real)
        except OSError as exc:
            raise NotInInstall(rel) from exc
        if not stat.S_ISREG(st.st_mode):
            raise NotInInstall(rel)
        return Path(real), st.st_size

    def _load(self, key: Key) -> Asset | OnDisk:
        commit, rel, coding = key
        source, size = self._source(rel)
        kind = content_type(source.name)
        if size < MIN_COMPRESS or not _COMPRESSIBLE.match(kind):
            coding = "identity"
        headers = [(b"content-type", kind.encode()), (b"cache-control", CACHE_CONTROL)]
        if _COMPRESSIBLE.match(kind):
            headers.append((b"vary", b"Accept-Encoding"))
        if coding == "identity":
            body_path = source
        else:
            headers.append((b"content-encoding", coding.encode()))
            assert self.root is not None
            body_path = self._compressed(source, commit, source.relative_to(self.root).as_posix(), coding)
        length = body_path.stat().st_size
        if length > self.max_entry:
            return OnDisk(headers, body_path, length)
        return Asset(headers, body_path.read_bytes())

    def _compressed(self, source: Path, commit: str, rel: str, coding: str) -> Path:
        """The compressed copy of `source` in the cache, made (atomically) the first time."""
        target = self.cache_dir / commit / coding / rel
        if target.is_file():
            return target
        data = source.read_bytes()
        packed = (
            brotli.compress(data, quality=BROTLI_QUALITY)
            if coding == "br"
            else gzip.compress(data, GZIP_LEVEL, mtime=0)
        )
        self.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(packed)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target
