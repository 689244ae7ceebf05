"""Stopping a process together with everything it started.

Engines start terminals and language servers, some in sessions of their own (so outside the
engine's process group): signalling the group alone would leave them behind.
"""

from __future__ import annotations

import os
import signal

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
