"""Stopping a process together with everything it started.

Engines start terminals and language servers, some in sessions of their own (so outside the
engine's process group): signalling the group alone would leave them behind.
"""

from __future__ import annotations

import os
import signal
import time

import psutil

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)


def process_tree(proc: psutil.Process) -> list[psutil.Process]:
    """`proc` and all its descendants (just `proc` when they cannot be read)."""
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return [proc]


def terminate_tree(proc: psutil.Process, timeout: float, signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> None:
    """Send each signal in turn to `proc`'s process group and every descendant, waiting `timeout` s between."""
    alive = process_tree(proc)
    for sig in signals:
        # Pick up children started since the last look, drop the ones that are gone.
        alive = [p for p in {*alive, *(c for p in alive if p.is_running() for c in process_tree(p))} if p.is_running()]
        if not alive:
            return
        try:
            os.killpg(proc.pid, sig)
        except OSError:
            pass
        alive = signal_and_wait(alive, sig, timeout)


def signal_and_wait(procs: list[psutil.Process], sig: signal.Signals, timeout: float) -> list[psutil.Process]:
    """Send `sig` to each process; the ones still alive `timeout` seconds later."""
    for p in procs:
        try:
            p.send_signal(sig)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return alive


def sample_tree(proc: psutil.Process | None, window_s: float = 0.2) -> tuple[float, int, float, float]:
    """(CPU percent over `window_s`, resident bytes, uptime in seconds, CPU seconds so far) of `proc` and its descendants.

    The CPU seconds include children that have exited and been waited for (a build's compilers),
    so usage adds up what the workspace really used; zeros for None.
    """
    if proc is None:
        return 0.0, 0, 0.0, 0.0
    procs = process_tree(proc)

    def cpu_seconds(with_children: bool = False) -> float:
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system + ((t.children_user + t.children_system) if with_children else 0.0)
            except psutil.Error:
                pass
        return total

    before, t0 = cpu_seconds(), time.monotonic()
    time.sleep(window_s)
    cpu = 100.0 * (cpu_seconds() - before) / max(time.monotonic() - t0, 1e-6)
    rss = 0
    for p in procs:
        try:
            rss += p.memory_info().rss
        except psutil.Error:
            pass
    try:
        uptime = time.time() - proc.create_time()
    except psutil.Error:
        uptime = 0.0
    return round(cpu, 1), rss, round(uptime, 1), round(cpu_seconds(with_children=True), 2)


def listening_ports(proc: psutil.Process | None) -> list[int]:
    """TCP ports the processes of `proc`'s tree listen on, read from /proc as the host sees them.

    Read from the kernel, not asked of the engine (a tenant controls it). Each network namespace
    the tree lives in (a sandbox has its own) is read once, and only sockets the tree holds count,
    so another tenant's listener on the same host is never listed.
    """
    if proc is None:
        return []
    inodes: set[str] = set()
    namespaces: dict[str, int] = {}
    for p in process_tree(proc):
        try:
            namespaces.setdefault(os.readlink(f"/proc/{p.pid}/ns/net"), p.pid)
            with os.scandir(f"/proc/{p.pid}/fd") as fds:
                for fd in fds:
                    try:
                        target = os.readlink(fd.path)
                    except OSError:
                        continue
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
        except OSError:
            continue
    ports: set[int] = set()
    for pid in namespaces.values():
        for table in ("tcp", "tcp6"):
            try:
                with open(f"/proc/{pid}/net/{table}") as f:
                    rows = f.read().splitlines()[1:]
            except OSError:
                continue
            for row in rows:
                fields = row.split()
                if len(fields) > 9 and fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return sorted(ports)
