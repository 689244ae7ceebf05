"""Lifecycle benchmark: how fast a crashed engine is noticed and back, and what a short reconnection grace saves.

    crash→noticed        kill -9 of a running engine until the API no longer says `running`
    crash→running again  the same kill until the restarted engine answers through the gateway
    healthz→reachable    after kill -9 of the manager and a new `devyard up`: from its first /healthz
                         answer until the adopted engine answers through the gateway
    engine RSS after a dropped tab   the engine's process tree (extension host included) once the
                                  browser that opened the workbench is gone without saying goodbye
                                  (SIGKILL: a laptop lid closed, a network drop) and the grace time
                                  passed, with a 5 s reconnection grace and code-server's 3 h default.
                                  A tab closed normally tells the engine, which frees its extension host
                                  at once whatever the grace.

Usage: .venv/bin/python bench/lifecycle.py [--runs 10] [--settle 20]. Prints tables, writes
bench/results/lifecycle.json and bench/results/grace.json.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playwright.sync_api import Error as PlaywrightError  # noqa: E402

from bench.start import POLL_S, gateway_ready  # noqa: E402
from bench.stats import report, scratch  # noqa: E402
from devyard.processes import process_tree  # noqa: E402
from tests.browser import WORKBENCH_TIMEOUT_MS, _pids_using, chromium, login  # noqa: E402
from tests.support import ADMIN_PASSWORD, start_manager, wait_for  # noqa: E402


def bench_crash(runs: int, root: Path) -> dict[str, list[float]]:
    m = start_manager(
        root / "crash",
        extra_env={
            "DEVYARD_CRASH_RESTARTS": str(runs + 5),
            "DEVYARD_CRASH_BACKOFF_S": "0.1",
            "DEVYARD_CRASH_BACKOFF_MAX_S": "0.1",
        },
    )
    noticed, back = [], []
    try:
        with httpx.Client(base_url=m.url, headers={"authorization": f"Bearer {m.token()}"}, timeout=60) as c:
            assert c.post("/api/v1/workspaces", json={"name": "crashy"}).status_code == 201
            wait_for(lambda: gateway_ready(c, "crashy"), 120, "crashy ready")
            for _ in range(runs):
                pid = m.engine_pids()[0]
                t0 = time.perf_counter()
                os.kill(pid, signal.SIGKILL)
                wait_for(
                    lambda: c.get("/api/v1/workspaces/crashy").json()["status"] != "running",
                    30,
                    "the crash noticed",
                    interval=POLL_S,
                )
                noticed.append(time.perf_counter() - t0)
                wait_for(
                    lambda: m.engine_pids() not in ([], [pid]) and gateway_ready(c, "crashy"),
                    120,
                    "back",
                    interval=POLL_S,
                )
                back.append(time.perf_counter() - t0)
    finally:
        m.stop()
    return {"crash→noticed": noticed, "crash→running again": back}


def bench_adopt(runs: int, root: Path) -> list[float]:
    m = start_manager(root / "adopt")
    token = m.token()
    data_dir = m.data_dir
    times = []
    try:
        with httpx.Client(base_url=m.url, headers={"authorization": f"Bearer {token}"}, timeout=60) as c:
            assert c.post("/api/v1/workspaces", json={"name": "kept"}).status_code == 201
            wait_for(lambda: gateway_ready(c, "kept"), 120, "kept ready")
        for _ in range(runs):
            m.proc.kill()
            m.proc.wait()
            m = start_manager(data_dir)  # returns once /healthz answers
            t0 = time.perf_counter()
            with httpx.Client(base_url=m.url, headers={"authorization": f"Bearer {token}"}, timeout=60) as c:
                wait_for(lambda: gateway_ready(c, "kept"), 60, "kept reachable", interval=POLL_S)
            times.append(time.perf_counter() - t0)
    finally:
        m.stop()
    return times


def engine_rss_after_tab_dropped(root: Path, grace_s: int, wait_s: float) -> float:
    """MB of the engine's process tree `wait_s` after the only workbench's browser was killed, with a reconnection grace of `grace_s`."""
    m = start_manager(root / f"grace-{grace_s}", extra_env={"DEVYARD_RECONNECTION_GRACE_S": str(grace_s)})
    try:
        profile = root / f"profile-{grace_s}"
        with contextlib.suppress(PlaywrightError), chromium(profile) as browser:
            page = browser.new_page()
            login(page, m.url, "admin", ADMIN_PASSWORD)
            with httpx.Client(
                base_url=m.url + "/api/v1", headers={"authorization": f"Bearer {m.token()}"}, timeout=60
            ) as c:
                assert c.post("/workspaces", json={"name": "tab"}).status_code == 201
                wait_for(lambda: c.get("/workspaces/tab").json()["status"] == "running", 120, "tab running")
            page.goto(m.url + "/w/admin/tab/")
            page.wait_for_selector(".monaco-workbench", timeout=WORKBENCH_TIMEOUT_MS)
            page.wait_for_timeout(5000)  # the extension host is up and has loaded its extensions
            for pid in _pids_using(profile):  # gone without a goodbye: no Disconnect message reaches the engine
                os.kill(pid, signal.SIGKILL)
        time.sleep(wait_s)
        rss = 0
        for p in process_tree(psutil.Process(m.engine_pids()[0])):
            try:
                rss += p.memory_info().rss
            except psutil.Error:
                pass
        return rss / (1 << 20)
    finally:
        m.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--settle", type=float, default=20.0, help="seconds to wait after the grace time before measuring"
    )
    args = parser.parse_args()
    with scratch("dybench-life-") as root:
        rows = bench_crash(args.runs, root)
        rows["manager kill -9, healthz→reachable"] = bench_adopt(args.runs, root)
        report("lifecycle", f"Crash detection, restart and adoption, {args.runs} runs (seconds)", rows, "s")
        # Both measured the same time after the tab closed: past the short grace, well within the default one.
        short = engine_rss_after_tab_dropped(root, 5, 5 + args.settle)
        default = engine_rss_after_tab_dropped(root, 10800, 5 + args.settle)
        report(
            "grace",
            "Engine RSS once its only browser dropped (MB)",
            {"reconnection grace 5 s (devyard)": [short], "reconnection grace 3 h (code-server default)": [default]},
            "MB",
            {"saved_mb": round(default - short, 1)},
        )


if __name__ == "__main__":
    main()
