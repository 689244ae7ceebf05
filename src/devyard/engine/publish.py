"""A copy of the engine that unprivileged accounts can run, when the cache they would use is private.

As root the engine is cached under /root/.cache, which no other account may enter; engines that
run as per-user accounts need it somewhere they can read. The tree is hard-linked (copied only
across filesystems) into /var/cache/devyard/engine/<version>, built in a staging folder and renamed
into place, so a reader never sees half a tree. It is rebuilt when the cache's engine.json is a
different file with different content (a new install).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from filelock import FileLock

from devyard.engine.install import MARKER, Engine
from devyard.osaccounts import traversal_blocker

SHARED_ENGINE_DIR = Path("/var/cache/devyard/engine")


def for_accounts(engine: Engine, shared_dir: Path = SHARED_ENGINE_DIR) -> Engine:
    """`engine` itself when every account can reach it, else its published copy under `shared_dir`."""
    if traversal_blocker(engine.entry) is None:
        return engine
    target = shared_dir / engine.version
    if not _current(engine.root, target):
        mkdir_public(shared_dir)
        with FileLock(str(shared_dir / f"{engine.version}.lock")):
            if not _current(engine.root, target):
                _publish(engine.root, target)
    return Engine(
        version=engine.version,
        root=target,
        node=target / engine.node.relative_to(engine.root),
        entry=target / engine.entry.relative_to(engine.root),
    )


def _current(source: Path, target: Path) -> bool:
    try:
        return (
            os.path.samefile(source / MARKER, target / MARKER)
            or (source / MARKER).read_bytes() == (target / MARKER).read_bytes()
        )
    except OSError:
        return False


def mkdir_public(path: Path) -> None:
    """Make `path` and its missing parents with mode 0755, whatever the umask (every account passes through)."""
    for d in reversed([path, *path.parents]):
        if not d.exists():
            d.mkdir()
            os.chmod(d, 0o755)  # not left to the umask: every account must pass through


def _publish(source: Path, target: Path) -> None:
    staging = target.with_name(f".{target.name}.{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _link_tree(source, staging)
        if target.exists():
            old = target.with_name(f".{target.name}.old.{os.getpid()}")
            target.rename(old)
            staging.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _link_tree(source: Path, dest: Path) -> None:
    """Mirror `source` at `dest`: folders made, files hard-linked (copied across filesystems), links kept."""
    dest.mkdir()
    os.chmod(dest, 0o755)
    for dirpath, dirnames, filenames in os.walk(source):
        rel = Path(dirpath).relative_to(source)
        for name in dirnames:
            src, dst = Path(dirpath, name), dest / rel / name
            if src.is_symlink():
                _relink(src, dst, source, dest)
            else:
                dst.mkdir()
                os.chmod(dst, src.stat().st_mode & 0o7777 | 0o555)
        for name in filenames:
            src, dst = Path(dirpath, name), dest / rel / name
            if src.is_symlink():
                _relink(src, dst, source, dest)
                continue
            try:
                os.link(src, dst, follow_symlinks=False)
            except OSError:
                shutil.copy2(src, dst)
                os.chmod(dst, src.stat().st_mode & 0o7777 | 0o444)


def _relink(src: Path, dst: Path, source: Path, dest: Path) -> None:
    target = os.readlink(src)
    if os.path.isabs(target) and Path(target).is_relative_to(source):
        target = str(dest / Path(target).relative_to(source))  # an absolute link into the tree follows it
    os.symlink(target, dst)
