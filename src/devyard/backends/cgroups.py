"""Memory, CPU and pids limits of local engines through Linux control groups: v2 where delegated, v1 where that is what the host has.

Written by hand: no maintained Python library manages cgroups for a process outside systemd
(cgroupspy is unmaintained; systemd-run needs a running systemd), and the interface is a few
files. Each limited engine gets its own group, `<the manager's group>/devyard/<uid>` (in v1 one
per controller). Its paths go into the engine's runtime record, so a later manager, perhaps in
another group, still finds them to count OOM kills and to clean up.

An OOM kill ends the whole workspace, as in Kubernetes: v2's `memory.oom.group` kills the group
together; in v1, which kills one process, the backend ends the rest when it sees the kill.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from devyard.backends.base import Limits

CPU_PERIOD_US = 100_000
REMOVE_WAIT_S = 1.0
GROUP = "devyard"


@dataclass(frozen=True)
class Support:
    """Whether this host lets the manager limit engines, and where their groups go."""

    version: int | None  # 2, 1, or None: unavailable
    memory: Path | None  # the folder each engine's memory group is made in (v2: the one folder for all)
    cpu: Path | None
    detail: str  # where, or why not
    pids: Path | None = None  # the folder of pids groups, where the host has that controller

    @property
    def available(self) -> bool:
        """Whether both memory and CPU limits can be applied."""
        return self.version is not None


def _mounts(mountinfo: str) -> list[tuple[str, str, str, set[str]]]:
    """(root, mount point, fs type, super options) of each cgroup mount in /proc/self/mountinfo."""
    found = []
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, after = left.split(), right.split()
        if len(fields) >= 5 and len(after) >= 3 and after[0] in ("cgroup", "cgroup2"):
            found.append((fields[3], fields[4], after[0], set(after[2].split(","))))
    return found


def _own_groups(proc_cgroup: str) -> dict[str, str]:
    """The manager's group in each hierarchy: controller name (or "" for v2) → path."""
    groups: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                groups[controller] = parts[2]
    return groups


def _inside(mount_root: str, mount_point: str, own: str) -> Path | None:
    """The folder of group `own` under a mount of the hierarchy's `mount_root`, when the mount shows it."""
    if own != mount_root and not own.startswith(mount_root.rstrip("/") + "/"):
        return None
    return Path(mount_point) / own[len(mount_root) :].lstrip("/")


def _writable(folder: Path) -> bool:
    return folder.is_dir() and os.access(folder, os.W_OK)


def detect(mountinfo: str | None = None, proc_cgroup: str | None = None) -> Support:
    """What this host offers, from /proc/self/mountinfo and /proc/self/cgroup (or the texts given)."""
    try:
        mountinfo = mountinfo if mountinfo is not None else Path("/proc/self/mountinfo").read_text()
        proc_cgroup = proc_cgroup if proc_cgroup is not None else Path("/proc/self/cgroup").read_text()
    except OSError as exc:
        return Support(None, None, None, f"cannot read the process's control groups: {exc.strerror}")
    mounts, own = _mounts(mountinfo), _own_groups(proc_cgroup)
    reasons = []
    for root, point, fstype, _ in mounts:
        if fstype != "cgroup2" or "" not in own:
            continue
        folder = _inside(root, point, own[""])
        if folder is None:
            continue
        controllers = set(_read(folder / "cgroup.controllers").split())
        if not {"memory", "cpu"} <= controllers:
            reasons.append(
                f"cgroup v2 at {point} does not delegate memory and cpu to {folder} (it has: {' '.join(sorted(controllers)) or 'none'})"
            )
        elif not _writable(folder) or not os.access(folder / "cgroup.subtree_control", os.W_OK):
            reasons.append(
                f"cgroup v2 group {folder} is not writable by this user (delegate it, e.g. systemd Delegate=yes)"
            )
        else:
            pids = folder / GROUP if "pids" in controllers else None
            return Support(2, folder / GROUP, folder / GROUP, f"cgroup v2 at {folder}", pids)
    found: dict[str, Path] = {}
    for controller in ("memory", "cpu", "pids"):
        for root, point, fstype, options in mounts:
            if fstype == "cgroup" and controller in options and controller in own:
                folder = _inside(root, point, own[controller])
                if folder is not None:
                    found[controller] = folder
    if "memory" in found and "cpu" in found:
        blocked = [str(f) for f in (found["memory"], found["cpu"]) if not _writable(f)]
        if not blocked:
            pids = found["pids"] / GROUP if "pids" in found and _writable(found["pids"]) else None
            return Support(
                1,
                found["memory"] / GROUP,
                found["cpu"] / GROUP,
                f"cgroup v1 at {found['memory']} and {found['cpu']}",
                pids,
            )
        reasons.append(f"cgroup v1 groups {', '.join(blocked)} are not writable by this user (run the manager as root)")
    elif not reasons:
        reasons.append("no cgroup v2 with memory and cpu, and no cgroup v1 memory and cpu hierarchies are mounted")
    return Support(None, None, None, "; ".join(reasons))


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path, value: str, required: bool = True) -> None:
    try:
        path.write_text(value)
    except OSError:
        if required:
            raise


def _enable_v2(parent: Path, pids: bool) -> None:
    """Let `parent` (<own>/devyard) hand memory, cpu (and pids) to its children.

    v2 allows controllers below a group only when no process sits in it, so the manager's own
    group first moves its processes into a leaf, `<own>/manager` — what systemd asks of a
    delegated service.
    """
    own = parent.parent
    wanted = ["memory", "cpu", *(["pids"] if pids else [])]
    enable = " ".join(f"+{c}" for c in wanted)
    if not set(wanted) <= set(_read(own / "cgroup.subtree_control").split()):
        leaf = own / "manager"
        leaf.mkdir(exist_ok=True)
        for pid in _read(own / "cgroup.procs").split():
            with contextlib.suppress(OSError):  # a process that just exited
                (leaf / "cgroup.procs").write_text(pid)
        (own / "cgroup.subtree_control").write_text(enable)
    parent.mkdir(exist_ok=True)
    if not set(wanted) <= set(_read(parent / "cgroup.subtree_control").split()):
        (parent / "cgroup.subtree_control").write_text(enable)


def create(support: Support, uid: str, limits: Limits) -> list[str]:
    """Make the engine's groups with `limits` written; their paths (OSError when the host refuses)."""
    assert support.memory is not None and support.cpu is not None
    if support.version == 2:
        _enable_v2(support.memory, support.pids is not None)
        group = support.memory / uid
        group.mkdir(exist_ok=True)
        if limits.memory_bytes:
            _write(group / "memory.max", str(limits.memory_bytes))
            _write(group / "memory.swap.max", "0", required=False)  # no swapping past the limit
            _write(group / "memory.oom.group", "1", required=False)
        if limits.cpus:
            _write(group / "cpu.max", f"{int(limits.cpus * CPU_PERIOD_US)} {CPU_PERIOD_US}")
        if limits.pids_max and support.pids is not None:
            _write(group / "pids.max", str(limits.pids_max))
        return [str(group)]
    memory, cpu = support.memory / uid, support.cpu / uid
    folders = [memory, cpu]
    if limits.pids_max and support.pids is not None:
        pids = support.pids / uid
        pids.mkdir(parents=True, exist_ok=True)
        _write(pids / "pids.max", str(limits.pids_max))
        folders.append(pids)
    for folder in (memory, cpu):
        folder.mkdir(parents=True, exist_ok=True)
    if limits.memory_bytes:
        _write(memory / "memory.limit_in_bytes", str(limits.memory_bytes))
        # Swap accounting may be off (no such file): then swap is not limited, which the kernel allows.
        _write(memory / "memory.memsw.limit_in_bytes", str(limits.memory_bytes), required=False)
    if limits.cpus:
        _write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
        _write(cpu / "cpu.cfs_quota_us", str(int(limits.cpus * CPU_PERIOD_US)))
    return [str(f) for f in folders]


def enter_all(groups: list[str], pids: list[int]) -> None:
    """Move processes `pids` (their later children follow) into the groups."""
    for group in groups:
        for pid in pids:
            (Path(group) / "cgroup.procs").write_text(str(pid))


def oom_kills(groups: list[str]) -> int:
    """How many processes the kernel killed in the groups for want of memory."""
    total = 0
    for group in groups:
        for name in ("memory.events", "memory.oom_control"):  # v2, v1
            for line in _read(Path(group) / name).splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and value.strip().isdigit():
                    total += int(value)
    return total


def remove(groups: list[str]) -> None:
    """Remove the groups of an engine that has exited, killing what is still in them first.

    A group holding a process cannot be removed: one still exiting after its tree was ended, or one
    that left the tree (a daemon a terminal started) but not the group. Everything in an engine's
    group is the engine's, so it ends with it; a group still busy after REMOVE_WAIT_S stays.
    """
    deadline = time.monotonic() + REMOVE_WAIT_S
    for group in groups:
        while True:
            try:
                os.rmdir(group)
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    break
                for pid in _read(Path(group) / "cgroup.procs").split():
                    with contextlib.suppress(OSError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)
                time.sleep(0.02)
