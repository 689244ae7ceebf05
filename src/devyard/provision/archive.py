"""Unpacking an uploaded .zip, .tar or .tar.gz into a new folder, refusing anything that could escape it.

tarfile's `data` filter and zipfile cover part of this; the rest (entry and size limits counted on
the bytes actually written, links checked against what is already on disk, nothing left behind
on refusal) needs the walk below. Entries are written one by one through a folder checked to
be inside the destination, with O_EXCL so an existing link is never followed. A disk that fills
up while unpacking is StorageFull, with what was written already removed.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from devyard.errors import ArchiveRefused, StorageFull, is_storage_full

CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Limits:
    """How much an archive may hold, and which kinds (`kind()`'s words) are taken; none given: every kind."""

    max_entries: int
    max_bytes: int
    kinds: frozenset[str] = frozenset()
    kinds_setting: str = ""  # the setting that chose `kinds`, named when an archive is refused


def kind(path: Path) -> str:
    """`zip`, `tar.gz` or `tar`, from the file's first bytes; ArchiveRefused for anything else."""
    with path.open("rb") as f:
        head = f.read(512)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "tar.gz"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    raise ArchiveRefused("the upload is not a .zip, .tar or .tar.gz archive")


def extract(archive: Path, dest: Path, limits: Limits) -> int:
    """Unpack `archive` into the new folder `dest`; the number of files.

    ArchiveRefused for an archive devyard will not unpack, StorageFull when the disk fills; no `dest` after either.
    """
    dest.mkdir(parents=True)
    try:
        unpacker = _Unpacker(dest, limits)
        found = kind(archive)
        if limits.kinds and found not in limits.kinds:
            taken = ", ".join(sorted(f".{k}" for k in limits.kinds))
            raise ArchiveRefused(
                f"the upload is a .{found} archive; this server takes {taken} ({limits.kinds_setting})"
            )
        if found == "zip":
            unpacker.zip(archive)
        else:
            unpacker.tar(archive)
        unpacker.check_links()
        return unpacker.files
    except ArchiveRefused:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, UnicodeDecodeError, ValueError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise ArchiveRefused(f"the archive is corrupt or truncated: {exc}") from exc
    except OSError as exc:
        shutil.rmtree(dest, ignore_errors=True)  # first: it frees the space the error is about
        if is_storage_full(exc):
            raise StorageFull.during("unpacking the archive", "upload it again") from exc
        raise
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


class _Unpacker:
    def __init__(self, dest: Path, limits: Limits) -> None:
        self.dest = dest
        self.real = os.path.realpath(dest)
        self.limits = limits
        self.entries = 0
        self.bytes = 0
        self.files = 0

    # -- formats ----------------------------------------------------------------------------
    def tar(self, archive: Path) -> None:
        with tarfile.open(archive, mode="r|*") as tar:
            for member in tar:
                rel = self._entry(member.name)
                if rel is None:
                    continue
                if member.isdir():
                    self._dir(rel)
                elif member.isreg():
                    self._grow(member.size)
                    source = tar.extractfile(member)
                    assert source is not None
                    self._file(rel, source, member.mode, member.size)
                elif member.issym():
                    self._symlink(rel, member.linkname)
                elif member.islnk():
                    self._hardlink(rel, member.linkname)
                else:
                    raise ArchiveRefused(
                        f"'{member.name}' is a device file or pipe; archives may hold only files, folders and links"
                    )

    def zip(self, archive: Path) -> None:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            if len(infos) > self.limits.max_entries:
                raise ArchiveRefused(f"the archive has {len(infos)} entries; the limit is {self.limits.max_entries}")
            declared = sum(i.file_size for i in infos)
            if declared > self.limits.max_bytes:
                raise ArchiveRefused(
                    f"the archive would expand to {declared >> 20} MB; the limit is {self.limits.max_bytes >> 20} MB"
                )
            for info in infos:
                rel = self._entry(info.filename)
                if rel is None:
                    continue
                mode = info.external_attr >> 16
                kind_bits = stat.S_IFMT(mode)
                if info.is_dir():
                    self._dir(rel)
                elif kind_bits == stat.S_IFLNK:
                    with zf.open(info) as f:
                        self._symlink(rel, f.read(4097).decode())
                elif kind_bits not in (0, stat.S_IFREG):
                    raise ArchiveRefused(
                        f"'{info.filename}' is a device file or pipe; archives may hold only files, folders and links"
                    )
                else:
                    with zf.open(info) as f:
                        self._file(rel, f, mode or 0o644, None)

    # -- entries ----------------------------------------------------------------------------
    def _entry(self, name: str) -> str | None:
        """The entry's safe relative path (None for the root itself), counting it."""
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise ArchiveRefused(f"the archive has more than {self.limits.max_entries} entries")
        if "\0" in name:
            raise ArchiveRefused("an entry name holds a NUL byte")
        if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
            raise ArchiveRefused(f"'{name}' is an absolute path")
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise ArchiveRefused(f"'{name}' points outside the archive's folder ('..')")
        return "/".join(parts) or None

    def _grow(self, size: int) -> None:
        self.bytes += size
        if self.bytes > self.limits.max_bytes:
            raise ArchiveRefused(f"the archive expands to more than {self.limits.max_bytes >> 20} MB")

    def _parent(self, rel: str) -> Path:
        """The entry's folder, made if needed and checked to lie inside the destination."""
        parent = self.dest / posixpath.dirname(rel) if "/" in rel else self.dest
        parent.mkdir(parents=True, exist_ok=True)
        if not self._inside(os.path.realpath(parent)):
            raise ArchiveRefused(f"'{rel}' would be written through a link that leaves the archive's folder")
        return parent

    def _clear(self, path: Path) -> None:
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.exists():
            raise ArchiveRefused(f"'{path.relative_to(self.dest)}' is both a folder and a file in the archive")

    def _dir(self, rel: str) -> None:
        path = self._parent(rel) / posixpath.basename(rel)
        if path.is_symlink():
            raise ArchiveRefused(f"'{rel}' is both a link and a folder in the archive")
        path.mkdir(exist_ok=True)

    def _file(self, rel: str, source: IO[bytes], mode: int, size: int | None) -> None:
        path = self._parent(rel) / posixpath.basename(rel)
        self._clear(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, (mode & 0o755) | 0o600)
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(CHUNK):
                if size is None:
                    self._grow(len(chunk))  # zip sizes are claims: count what really comes out
                out.write(chunk)
        self.files += 1

    def _inside(self, real: str) -> bool:
        return real == self.real or real.startswith(self.real + os.sep)

    def _symlink(self, rel: str, target: str) -> None:
        if not target or "\0" in target or target.startswith("/"):
            raise ArchiveRefused(f"link '{rel}' points to an absolute path")
        path = self._parent(rel) / posixpath.basename(rel)
        # Resolved against the folders really on disk, where earlier links (`x -> .`) already stand:
        # the text alone (`x/x/x/data -> ../../../t`) says nothing of where it leads.
        if not self._inside(os.path.realpath(os.path.join(os.path.realpath(path.parent), target))):
            raise ArchiveRefused(f"link '{rel}' points outside the archive's folder")
        self._clear(path)
        os.symlink(target, path)

    def check_links(self) -> None:
        """ArchiveRefused when any link, as the whole tree finally stands, leads outside it (a later entry may change where one leads)."""
        for dirpath, dirnames, filenames in os.walk(self.dest):
            for name in (*dirnames, *filenames):
                path = os.path.join(dirpath, name)
                if os.path.islink(path) and not self._inside(os.path.realpath(path)):
                    raise ArchiveRefused(
                        f"link '{os.path.relpath(path, self.dest)}' points outside the archive's folder"
                    )

    def _hardlink(self, rel: str, target: str) -> None:
        source_rel = self._entry(target)
        self.entries -= 1  # the target was counted when it came
        source = self.dest / source_rel if source_rel else self.dest
        real = os.path.realpath(source)
        if real == self.real or not self._inside(real) or not os.path.isfile(real):
            raise ArchiveRefused(f"hard link '{rel}' points outside the archive's folder or at no file in it")
        size = os.path.getsize(real)
        self._grow(size)
        with open(real, "rb") as f:  # a copy: the link's target stays the one file it was
            self._file(rel, f, os.stat(real).st_mode, size)
