"""Backups of a workspace: one .tar.gz of its files, its user-data and its extension list, consistent while it runs.

The archive is streamed (tarfile's `w|gz`): nothing is staged whole. Consistency without stopping
the engine comes file by file: each file is read, then its size and modification time are looked
at again; a file that changed while read (an editor saving it) is read again, so every file in the
archive is a version that was on disk, whole — never a torn mix. A file saved before the backup
began and left alone is therefore always in it as saved.

Layout: `devyard-backup.json` (the manifest), `files/...`, `data/...` (VS Code user-data without
caches and logs). Restoring re-installs the listed extensions from the configured gallery or
.vsix mirror, the way a new workspace gets them, rather than copying built code between hosts.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import stat
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Protocol

from devyard import safefs, safetar
from devyard.backends.base import WorkspaceSpec
from devyard.config import Settings
from devyard.errors import Invalid
from devyard.loops import Loop
from devyard.provision.extensions import EXTENSION_ID
from devyard.store.tables import WorkspaceRow
from devyard.workspaces.states import Status

log = logging.getLogger("devyard.backups")
MANIFEST = "devyard-backup.json"
FORMAT = 1
# Rebuilt by the engine as needed: not worth a byte of the archive.
DATA_SKIP = frozenset(
    {"logs", "CachedData", "CachedProfilesData", "CachedExtensionVSIXs", "Cache", "GPUCache", "Code Cache"}
)


@dataclass
class Manifest:
    """What a backup says about the workspace it came from."""

    name: str
    owner: str
    template: str | None = None
    extension_groups: list[str] = field(default_factory=list)
    size: str | None = None
    idle_timeout_s: int | None = None
    extensions: list[str] = field(default_factory=list)  # ids, as `publisher.name`
    created_at: str = ""
    format: int = FORMAT

    @classmethod
    def read(cls, path: Path) -> Manifest:
        """The manifest of an unpacked backup; Invalid when it is not a devyard backup this version reads."""
        try:
            raw = json.loads((path / MANIFEST).read_text())
        except (OSError, ValueError) as exc:
            raise Invalid(f"this is not a devyard backup: it has no readable {MANIFEST}", code="not_a_backup") from exc
        if not isinstance(raw, dict) or raw.get("format") != FORMAT or not isinstance(raw.get("name"), str):
            raise Invalid(
                f"this backup's format ({raw.get('format') if isinstance(raw, dict) else '?'}) is not one this devyard reads "
                f"({FORMAT})",
                code="backup_format",
            )
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        manifest = cls(**known)
        manifest.extensions = [e for e in manifest.extensions if isinstance(e, str) and EXTENSION_ID.match(e)]
        return manifest


def installed_extensions(extensions_dir: Path) -> list[str]:
    """Ids of the extensions in a workspace's extensions folder (VS Code's extensions.json, else its folder names)."""
    try:
        with safefs.opened_dir(extensions_dir) as folder:
            raw = safefs.read_file(folder, "extensions.json", max_bytes=16 << 20)  # the tenant's: never through a link
            names = os.listdir(folder)
    except OSError:
        return []
    try:
        listed = json.loads(raw or b"")
        ids = [e["identifier"]["id"] for e in listed if isinstance(e, dict)]
    except (ValueError, KeyError, TypeError):
        ids = []
        for name in names:
            ext_id, dash, version = name.rpartition("-")
            if dash and version[:1].isdigit():
                ids.append(ext_id)
    return sorted({i for i in ids if isinstance(i, str) and EXTENSION_ID.match(i)}, key=str.lower)


def write(ws: WorkspaceSpec, manifest: Manifest, out: IO[bytes]) -> int:
    """Stream the backup of `ws` as .tar.gz into `out`; the number of files in it.

    The folders are the tenant's, read while its engine runs: they are walked through folder
    descriptors (os.fwalk, which never enters a link) and each file is opened relative to its
    folder with O_NOFOLLOW and checked to be a regular file of the folder's owner. A file swapped
    for a link, or a hard link to someone else's file, is never read: not a byte of anything the
    tenant could not read itself reaches the archive.
    """
    manifest.extensions = installed_extensions(ws.extensions_dir)
    manifest.created_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    count = 0
    with tarfile.open(fileobj=out, mode="w|gz", format=tarfile.PAX_FORMAT) as tar:
        body = json.dumps(asdict(manifest), indent=2).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mtime, info.mode = len(body), int(time.time()), 0o600
        tar.addfile(info, io.BytesIO(body))
        for top, folder, skip in (("files", ws.files_dir, frozenset[str]()), ("data", ws.data_dir, DATA_SKIP)):
            count += safetar.add_tree(tar, folder, top, skip)
    return count


def real_folders(unpacked: Path) -> None:
    """Invalid unless the backup's files/ and data/ are real folders (or absent): a link there would move whatever it names."""
    for name in ("files", "data"):
        try:
            st = (unpacked / name).lstat()
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise Invalid(f"this backup's {name}/ is not a folder (a link or a file stands there)", code="not_a_backup")


def restore_folder(unpacked: Path, manifest: Manifest) -> Path:
    """Gather what provisioning restores besides the files, in <unpacked>/.restore: data/ and extensions.json."""
    real_folders(unpacked)
    folder = unpacked / ".restore"
    try:
        folder.mkdir()
    except FileExistsError as exc:
        raise Invalid("this backup holds an unexpected .restore folder", code="not_a_backup") from exc
    if (unpacked / "data").is_dir():
        os.replace(unpacked / "data", folder / "data")
    (folder / "extensions.json").write_text(json.dumps(manifest.extensions))
    return folder


def manifest_of(row: WorkspaceRow) -> Manifest:
    """The manifest of a workspace row (extensions are listed when the archive is written)."""
    return Manifest(
        name=row.name,
        owner=row.owner.name,
        template=row.template,
        extension_groups=list(row.extension_groups or []),
        size=row.size,
        idle_timeout_s=row.idle_timeout_s,
    )


def file_name(name: str) -> str:
    """The file name a backup of workspace `name` gets: name and UTC time."""
    return f"{name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.tar.gz"


class Workspaces(Protocol):
    """What scheduled backups need of the lifecycle (and nothing more)."""

    async def all_rows(self) -> list[WorkspaceRow]: ...
    def spec(self, row: WorkspaceRow) -> WorkspaceSpec: ...


class Scheduler(Loop):
    """Backs up every provisioned workspace each `backup_interval_s` into <backups_dir>/<owner>/<name>/, keeping `backup_keep`."""

    def __init__(self, settings: Settings, local_files: bool, service: Workspaces) -> None:
        super().__init__()
        self.service, self.settings, self.local_files = service, settings, local_files
        self.every_s = float(settings.backup_interval_s)

    def start(self) -> None:
        """Begin the rounds, where the backend keeps workspaces' files on this machine (a warning otherwise)."""
        if not self.local_files:
            log.warning(
                "scheduled backups are off: the %s backend keeps workspaces' files in their volumes",
                self.settings.backend,
            )
            return
        super().start()

    async def tick(self) -> None:
        """One round: a backup of each workspace that is running or stopped."""
        for row in await self.service.all_rows():
            if row.provisioned_at is None or row.status not in (Status.running, Status.stopped):
                continue
            folder = self.settings.backups_dir / row.owner.name / row.name
            try:
                await asyncio.to_thread(
                    keep_one, folder, self.service.spec(row), manifest_of(row), self.settings.backup_keep
                )
            except Exception:  # one workspace's failure must not stop the others' backups
                log.exception("scheduled backup of %s/%s failed", row.owner.name, row.name)


def keep_one(folder: Path, ws: WorkspaceSpec, manifest: Manifest, keep: int | None) -> Path:
    """Write one backup into `folder` (under a temporary name until complete); with `keep`, remove the oldest beyond it."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for stale in folder.glob(".*.partial"):  # a manager stopped while writing one
        stale.unlink(missing_ok=True)
    final = folder / file_name(ws.name)
    partial = folder / f".{final.name}.partial"
    try:
        with partial.open("wb") as out:
            write(ws, manifest, out)
            out.flush()
            os.fsync(out.fileno())
        partial.replace(final)
    finally:
        partial.unlink(missing_ok=True)
    if keep is not None:
        kept = sorted(folder.glob(f"{ws.name}-*.tar.gz"))
        for old in kept[: max(0, len(kept) - keep)]:
            old.unlink(missing_ok=True)
    log.info("backed up %s/%s to %s", manifest.owner, manifest.name, final)
    return final
