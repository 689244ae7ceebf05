"""Density and control-plane benchmark: what an idle engine and a busy registry cost.

    manager RSS, empty            the `devyard up` process on a fresh data dir, before any workspace
    manager RSS, N registered     the same once N workspaces (default 1,000, spread over 10 users) are
                                  registered with start=false and provisioned (all `stopped`, none running)
    GET /api/v1/workspaces?all=1  as the admin, the full list of N: 10 warm-up then 200 timed requests in
                                  sequence on one keep-alive connection (ms); also the admin's own list
    engine RSS after a closed tab the engine's process tree once the only workbench tab was closed normally
                                  (the browser says goodbye) and a 5 s reconnection grace plus --settle passed

Targets: manager RSS <= 120 MB with 1,000 registered workspaces; list p95 <= 50 ms.
Usage: .venv/bin/python bench/density.py [--workspaces 1000] [--users 10] [--requests 200] [--settle 20].
Prints a table, writes bench/results/density.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stats import percentile, report, scratch  # noqa: E402
from devyard.processes import process_tree  # noqa: E402
from tests.browser import WORKBENCH_TIMEOUT_MS, chromium, login  # noqa: E402
from tests.support import ADMIN_PASSWORD, Manager, start_manager, wait_for  # noqa: E402

RSS_TARGET_MB = 120.0
LIST_P95_TARGET_MS = 50.0
WARMUP = 10
THREADS = 8
GC_SETTLE_S = 5.0
MB = 1 << 20


def tree_mb(pid: int, skip: frozenset[int] = frozenset()) -> float:
    """MB of resident memory of `pid` and its descendants, leaving out the trees rooted at `skip`."""
    procs = process_tree(psutil.Process(pid))
    skipped = {p.pid for s in skip if psutil.pid_exists(s) for p in process_tree(psutil.Process(s))}
    rss = 0
    for p in procs:
        if p.pid not in skipped:
            try:
                rss += p.memory_info().rss
            except psutil.Error:
                pass
    return rss / MB


def manager_mb(m: Manager) -> float:
    """MB of the manager and its non-engine children, after letting it settle."""
    time.sleep(GC_SETTLE_S)
    return tree_mb(m.proc.pid, frozenset(m.engine_pids()))


def register(m: Manager, count: int, users: int) -> float:
    """Register `count` stopped workspaces over the admin and `users - 1` others; seconds until all are provisioned."""
    with m.api() as admin:
        for i in range(1, users):
            assert admin.post("/users", json={"name": f"dens-{i}", "password": "density-password"}).status_code == 201
    tokens = [m.token()] + [m.token(f"dens-{i}") for i in range(1, users)]

    def create(batch: int) -> None:
        clients = [m.api(t) for t in tokens]
        try:
            for n in range(batch, count, THREADS):
                r = clients[n % users].post("/workspaces", json={"name": f"ws-{n:04d}", "start": False})
                assert r.status_code == 201, r.text
        finally:
            for c in clients:
                c.close()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(create, range(THREADS)))
    with m.api() as admin:

        def settled() -> bool:
            found = admin.get("/workspaces", params={"all": 1}).json()
            return len(found) == count and all(w["status"] == "stopped" for w in found)

        wait_for(settled, 600, f"{count} workspaces stopped", interval=0.5)
    return time.perf_counter() - t0


def time_list(c: httpx.Client, params: dict[str, Any], runs: int) -> tuple[list[float], int, int]:
    """Milliseconds of `runs` sequential GET /workspaces after a warm-up; also the items and bytes of the answer."""
    for _ in range(WARMUP):
        c.get("/workspaces", params=params).raise_for_status()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = c.get("/workspaces", params=params)
        times.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
    return times, len(r.json()), len(r.content)


def bench_manager(root: Path, count: int, users: int, runs: int) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Manager RSS empty and with `count` registered workspaces, and list latencies (ms)."""
    m = start_manager(root / "manager")
    try:
        empty = manager_mb(m)
        took = register(m, count, users)
        full = manager_mb(m)
        with m.api() as c:
            all_ms, items, size = time_list(c, {"all": 1}, runs)
            own_ms, own_items, _ = time_list(c, {}, runs)
        after = manager_mb(m)
    finally:
        m.stop()
    rows = {
        f"GET /workspaces?all=1, {items} items (ms)": all_ms,
        f"GET /workspaces, admin's own {own_items} (ms)": own_ms,
    }
    extra = {
        "workspaces": count,
        "users": users,
        "register_s": round(took, 2),
        "list_bytes": size,
        "manager_rss_mb": {
            "empty": round(empty, 1),
            "registered": round(full, 1),
            "after_list_requests": round(after, 1),
        },
        "list_all_ms": {"p50": percentile(all_ms, 50), "p95": percentile(all_ms, 95), "p99": percentile(all_ms, 99)},
    }
    return rows, extra


def engine_mb_after_tab_closed(root: Path, grace_s: int, wait_s: float) -> float:
    """MB of the engine's process tree `wait_s` after its only workbench tab was closed normally (grace `grace_s`)."""
    m = start_manager(root / "engine", extra_env={"DEVYARD_RECONNECTION_GRACE_S": str(grace_s)})
    try:
        with chromium(root / "profile") as browser:
            page = browser.new_page()
            login(page, m.url, "admin", ADMIN_PASSWORD)
            with m.api() as c:
                assert c.post("/workspaces", json={"name": "tab"}).status_code == 201
            m.wait_status("tab", "running")
            page.goto(m.url + "/w/admin/tab/")
            page.wait_for_selector(".monaco-workbench", timeout=WORKBENCH_TIMEOUT_MS)
            page.wait_for_timeout(5000)  # the extension host is up and has loaded its extensions
            page.close()  # a normal close: the engine hears the socket go
        time.sleep(wait_s)
        return tree_mb(m.engine_pids()[0])
    finally:
        m.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspaces", type=int, default=1000)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument(
        "--settle", type=float, default=20.0, help="seconds to wait after the grace time before measuring the engine"
    )
    args = parser.parse_args()
    os.environ.setdefault("COLUMNS", "150")  # a readable table when not on a terminal
    with scratch("dybench-density-") as root:
        rows, extra = bench_manager(root, args.workspaces, args.users, args.requests)
        engine = engine_mb_after_tab_closed(root, 5, 5 + args.settle)
    rss, lat = extra["manager_rss_mb"], extra["list_all_ms"]
    rows |= {
        "manager RSS, empty (MB)": [rss["empty"]],
        f"manager RSS, {args.workspaces} registered (MB)": [rss["registered"]],
        "manager RSS, after the list runs (MB)": [rss["after_list_requests"]],
        "idle engine RSS, tab closed, grace passed (MB)": [engine],
    }
    print(
        f"registered {args.workspaces} workspaces over {args.users} users in {extra['register_s']} s; "
        f"list ?all=1 answer {extra['list_bytes']} bytes, p50/p95/p99 {lat['p50']:.1f} / {lat['p95']:.1f} / {lat['p99']:.1f} ms"
    )
    peak = max(rss["registered"], rss["after_list_requests"])
    report(
        "density",
        f"Density and control plane: {args.workspaces} registered workspaces, {args.requests} list requests",
        rows,
        "ms|MB",
        {
            **extra,
            "engine_rss_after_tab_closed_mb": round(engine, 1),
            "targets": {"manager_rss_mb": RSS_TARGET_MB, "list_p95_ms": LIST_P95_TARGET_MS},
            "target_met": {"manager_rss": peak <= RSS_TARGET_MB, "list_p95": lat["p95"] <= LIST_P95_TARGET_MS},
        },
    )


if __name__ == "__main__":
    main()
