"""Size presets: which one a workspace has, the limits it brings, and the disk it allows at start."""

from __future__ import annotations

import asyncio
from pathlib import Path

from devyard.backends.base import Limits
from devyard.config import DEFAULT_PIDS_MAX, Settings
from devyard.errors import Invalid, QuotaExceeded
from devyard.models import SizeInfo
from devyard.paths import disk_usage

MB = 1 << 20


def listed(settings: Settings) -> list[SizeInfo]:
    """Every preset, in the order of the config file."""
    return [
        SizeInfo(
            name=n,
            memory_mb=s.memory_mb,
            cpus=s.cpus,
            disk_mb=s.disk_mb,
            pids_max=s.pids_max,
            description=s.description,
            default=n == settings.default_size,
            cost_per_hour=s.cost_per_hour,
        )
        for n, s in settings.sizes.items()
    ]


def check(settings: Settings, name: str | None) -> str | None:
    """`name` when it is a preset (None stays None: the default); Invalid naming the presets otherwise."""
    if name is not None and name not in settings.sizes:
        raise Invalid(f"unknown size '{name}' (available: {', '.join(settings.sizes) or 'none'})", code="unknown_size")
    return name


def effective(settings: Settings, own: str | None) -> str | None:
    """The preset a workspace runs with: its own, else the manager's default_size (a removed preset: none)."""
    name = own if own is not None else settings.default_size
    return name if name in settings.sizes else None


def limits(settings: Settings, own: str | None) -> Limits:
    """What a workspace with preset `own` may use; without one (default_size: none) only the pids limit holds."""
    name = effective(settings, own)
    if name is None:
        return Limits(pids_max=DEFAULT_PIDS_MAX)
    size = settings.sizes[name]
    return Limits(
        memory_bytes=size.memory_mb * MB if size.memory_mb else None,
        cpus=size.cpus,
        disk_bytes=size.disk_mb * MB if size.disk_mb else None,
        pids_max=size.pids_max,
    )


async def check_disk(settings: Settings, own: str | None, workspace: str, root: Path) -> None:
    """QuotaExceeded when the workspace's folder is over its size's disk allowance (checked at start)."""
    allowed = limits(settings, own).disk_bytes
    if not allowed:
        return
    used = await asyncio.to_thread(disk_usage, root)
    if used > allowed:
        raise QuotaExceeded(
            f"workspace '{workspace}' uses {used / MB:.0f} MB of disk, more than its size "
            f"'{effective(settings, own)}' allows ({allowed // MB} MB); delete files or choose a larger size"
        )
