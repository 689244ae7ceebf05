"""Getting what provisioning made into a new workspace's volume: the pod's init container fetches it from the manager.

Provisioning (git clone, archive, settings, extensions, a backup's user-data) runs in the manager
exactly as for local engines, into the workspace's folder on the manager (devyard.provision: the
same code, not a copy). On the workspace's first start that folder is pending: the pod's init
container fetches it as one .tar.gz from this manager replica (GET /api/v1/internal/seed/{uid},
with a token made for that start and handed over in the workspace's init Secret) and unpacks it
into the volume. Once the pod is ready the manager's copy is removed; the volume holds the
workspace from then on.
"""

from __future__ import annotations

import hmac
import json
import secrets
import shutil
import socket
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from devyard.backends.base import WorkspaceSpec
from devyard.config import Settings
from devyard.errors import BackendError
from devyard.paths import manager_record

FOLDERS = ("files", "home", "data", "extensions")  # what the volume holds; logs/ stays on the manager


def pending(ws: WorkspaceSpec) -> bool:
    """Whether the workspace's folder on the manager holds anything its volume has not received yet."""
    for name in FOLDERS:
        folder = ws.root / name
        if folder.is_dir() and any(folder.iterdir()):
            return True
    return False


def write(root: Path, out: IO[bytes]) -> None:
    """Stream the pending folders under `root` as .tar.gz into `out` (owners dropped: the volume's are the engine's)."""

    def anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(fileobj=out, mode="w|gz", format=tarfile.PAX_FORMAT) as tar:
        for name in FOLDERS:
            if (root / name).is_dir():
                tar.add(str(root / name), arcname=name, filter=anonymous)


def clear(ws: WorkspaceSpec) -> None:
    """Remove the manager's copy once the volume has it."""
    for name in FOLDERS:
        shutil.rmtree(ws.root / name, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class _Grant:
    token: str
    root: Path
    expires: float


class Seeds:
    """One-time tokens that let a pod fetch one path of this manager (a start's folder, a build's context), kept in this replica's memory only."""

    def __init__(self) -> None:
        self._grants: dict[str, _Grant] = {}

    def issue(self, uid: str, path: Path, ttl_s: float) -> str:
        """A token that lets workspace `uid`'s pod fetch `path` for `ttl_s` seconds."""
        token = secrets.token_urlsafe(32)
        self._grants[uid] = _Grant(token, path, time.monotonic() + ttl_s)
        return token

    def token(self, uid: str) -> str | None:
        """The token of a start still under way (None when there is none)."""
        grant = self._grants.get(uid)
        return grant.token if grant is not None and time.monotonic() <= grant.expires else None

    def root_for(self, uid: str, token: str) -> Path | None:
        """The path `token` grants for workspace `uid`, or None (unknown, expired, or another token)."""
        grant = self._grants.get(uid)
        if (
            grant is None
            or time.monotonic() > grant.expires
            or not hmac.compare_digest(grant.token.encode(), token.encode())
        ):
            return None
        return grant.root

    def revoke(self, uid: str) -> None:
        """The start or build is over (done, failed or given up): its token no longer works."""
        self._grants.pop(uid, None)


def url(base: str, uid: str) -> str:
    """Where the pod fetches workspace `uid`'s folder, below the manager's base URL."""
    return f"{base.rstrip('/')}/api/v1/internal/seed/{uid}"


def base_url(settings: Settings) -> str:
    """Where pods reach this replica: kubernetes.seed_url, else its address (with --port 0, the port it was given)."""
    if settings.kubernetes.seed_url:
        return settings.kubernetes.seed_url
    if settings.port == 0:
        try:
            return str(json.loads(manager_record(settings.run_dir).read_text())["url"])
        except (OSError, ValueError, KeyError) as exc:
            raise BackendError(
                "the manager's address is not known yet; set devyard.kubernetes.seed_url", code="seed_url_unknown"
            ) from exc
    return default_base(settings.host, settings.port)


def default_base(host: str, port: int) -> str:
    """This replica's address as pods reach it: the bound host, else the pod's own IP (its hostname resolves to it)."""
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostbyname(socket.gethostname())
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"
