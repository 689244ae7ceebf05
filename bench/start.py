"""Start-up benchmark: how long until a workspace answers through the gateway.

    create→ready       POST /api/v1/workspaces until GET /w/admin/<name>/ gets the engine's answer
    … warm pool        the same with `pool.size: 2` (engines of one shared account: os_accounts off),
                       each create once the pool has refilled
    stop→start→ready   POST .../start on a stopped workspace until the same
    … sandboxed / not  as root: stop→start→ready with per-user accounts, with and without the
                       sandbox (bubblewrap + slirp4netns), two managers, runs interleaved, both with
                       the default size's limits (the rows above have none, like the bare boot)
    bare code-server   the same engine binary and flags started by hand until it answers on its socket

Usage: .venv/bin/python bench/start.py [--runs 10]. Prints a table, writes bench/results/start.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stats import percentile, report, scratch, start_bare  # noqa: E402
from devyard.config import load_settings  # noqa: E402
from devyard.engine import install  # noqa: E402
from devyard.engine.command import ENGINE_CONFIG, engine_argv  # noqa: E402
from tests.support import Manager, kill_tree, start_manager, wait_for  # noqa: E402

POLL_S = 0.01


def gateway_ready(client: httpx.Client, name: str) -> bool:
    """The engine itself answered through the gateway (its redirect to ./?folder=)."""
    r = client.get(f"/w/admin/{name}/")
    return r.status_code == 302 and r.headers["location"].startswith("./?folder=")


def pool_ready(manager: Manager, count: int) -> bool:
    """The manager has logged `count` pool engines ready, all told."""
    return manager.log.count("warm pool: an engine is ready") >= count


def bench_pool(runs: int, root: Path, size: int = 2) -> list[float]:
    """create→ready with a warm pool of `size`, waiting for it to refill between creates."""
    # The pool serves engines of one shared account (as root, devyard otherwise gives each user their own).
    manager = start_manager(root / "pool", extra_env={"DEVYARD_POOL__SIZE": str(size), "DEVYARD_OS_ACCOUNTS": "off"})
    times = []
    try:
        with httpx.Client(
            base_url=manager.url, headers={"authorization": f"Bearer {manager.token()}"}, timeout=60
        ) as c:
            for i in range(runs):
                wait_for(lambda: pool_ready(manager, size + i), 120, "the pool refilled")
                t0 = time.perf_counter()
                assert c.post("/api/v1/workspaces", json={"name": f"pooled-{i}"}).status_code == 201
                wait_for(lambda: gateway_ready(c, f"pooled-{i}"), 120, f"pooled-{i} ready", interval=POLL_S)
                times.append(time.perf_counter() - t0)
    finally:
        manager.stop()
    return times


def bench_manager(runs: int, root: Path) -> dict[str, list[float]]:
    # No size: the same engine, unlimited, as the bare boot it is compared with (devyard's own cost). The
    # sandbox rows below run with the default size's limits (1 CPU), which slow an engine's boot itself.
    manager = start_manager(root / "data", extra_env={"DEVYARD_DEFAULT_SIZE": "none"})
    create, restart = [], []
    try:
        token = manager.token()
        with httpx.Client(base_url=manager.url, headers={"authorization": f"Bearer {token}"}, timeout=60) as c:
            for i in range(runs):
                name = f"bench-{i}"
                t0 = time.perf_counter()
                assert c.post("/api/v1/workspaces", json={"name": name}).status_code == 201
                wait_for(lambda: gateway_ready(c, name), 120, f"{name} ready", interval=POLL_S)
                create.append(time.perf_counter() - t0)

                c.post(f"/api/v1/workspaces/{name}/stop")
                wait_for(lambda: c.get(f"/api/v1/workspaces/{name}").json()["status"] == "stopped", 60, "stopped")
                t0 = time.perf_counter()
                c.post(f"/api/v1/workspaces/{name}/start")
                wait_for(lambda: gateway_ready(c, name), 120, f"{name} ready again", interval=POLL_S)
                restart.append(time.perf_counter() - t0)
                assert c.delete(f"/api/v1/workspaces/{name}").status_code == 204
    finally:
        manager.stop()
    return {"create→ready (devyard)": create, "stop→start→ready (devyard)": restart}


SANDBOXED, UNSANDBOXED = "stop→start→ready (accounts, sandboxed)", "stop→start→ready (accounts, no sandbox)"


def bench_sandbox(runs: int, root: Path) -> dict[str, list[float]]:
    """What the sandbox adds to a start: the same start with per-user accounts, sandbox on and off, runs interleaved (root only)."""
    if os.geteuid() != 0:
        print("sandbox: not measured (needs root: per-user accounts and bwrap)")
        return {}
    managers = {
        SANDBOXED: start_manager(root / "sandboxed", extra_env={"DEVYARD_OS_ACCOUNTS": "on", "DEVYARD_SANDBOX": "on"}),
        UNSANDBOXED: start_manager(root / "plain", extra_env={"DEVYARD_OS_ACCOUNTS": "on", "DEVYARD_SANDBOX": "off"}),
    }
    times: dict[str, list[float]] = {name: [] for name in managers}
    clients = {
        name: httpx.Client(base_url=m.url, headers={"authorization": f"Bearer {m.token()}"}, timeout=60)
        for name, m in managers.items()
    }
    try:
        for c in clients.values():
            assert c.post("/api/v1/workspaces", json={"name": "sbx"}).status_code == 201
        for c in clients.values():
            wait_for(lambda: gateway_ready(c, "sbx"), 120, "sbx ready")
        for _ in range(runs):
            for name, c in clients.items():
                c.post("/api/v1/workspaces/sbx/stop")
                wait_for(lambda: c.get("/api/v1/workspaces/sbx").json()["status"] == "stopped", 60, "stopped")
                t0 = time.perf_counter()
                c.post("/api/v1/workspaces/sbx/start")
                wait_for(lambda: gateway_ready(c, "sbx"), 120, "sbx ready again", interval=POLL_S)
                times[name].append(time.perf_counter() - t0)
    finally:
        for c in clients.values():
            c.close()
        for m in managers.values():
            m.stop()
    return times


def bench_bare(runs: int, root: Path) -> list[float]:
    engine = install.require(load_settings().engine_dir)
    times = []
    for i in range(runs):
        d = root / f"bare-{i}"
        for sub in ("files", "data", "ext", "home", "rt"):
            (d / sub).mkdir(parents=True)
        (d / "cfg.yaml").write_text(ENGINE_CONFIG)
        sock = d / "s.sock"
        argv = engine_argv(
            engine,
            socket=sock,
            folder=d / "files",
            user_data=d / "data",
            extensions=d / "ext",
            config=d / "cfg.yaml",
            base_path=f"/w/bench/bare-{i}/",
            session_socket=d / "rt" / "session.sock",
        )
        t0 = time.perf_counter()
        proc = start_bare(engine, argv, d)
        try:
            with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://engine") as c:

                def up() -> bool:
                    try:
                        return c.get("/").status_code == 302
                    except httpx.TransportError:
                        return False

                wait_for(up, 120, "bare engine", interval=POLL_S)
            times.append(time.perf_counter() - t0)
        finally:
            kill_tree(proc.pid)
            proc.wait()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with scratch("dybench-") as root:
        rows = bench_manager(args.runs, root)
        rows["create→ready (devyard, warm pool)"] = bench_pool(args.runs, root)
        rows.update(bench_sandbox(args.runs, root))
        rows["bare code-server boot"] = bench_bare(args.runs, root)
    p50 = {name: percentile(values, 50) for name, values in rows.items()}
    bare = p50["bare code-server boot"]
    targets = {
        "create→ready p50 ≤ 1.2× bare boot": p50["create→ready (devyard)"] <= 1.2 * bare,
        "create→ready with a warm pool p50 ≤ 150 ms": p50["create→ready (devyard, warm pool)"] <= 0.150,
    }
    extra: dict[str, object] = {}
    if SANDBOXED in p50:
        added = p50[SANDBOXED] - p50[UNSANDBOXED]
        targets["sandboxed start adds ≤ 100 ms p50"] = added <= 0.100
        extra["sandbox_added_ms"] = round(added * 1e3, 1)
        print(f"the sandbox adds {added * 1e3:.0f} ms to a start (p50)")
    report(
        "start",
        f"Workspace start-up, {args.runs} runs (seconds)",
        rows,
        "s",
        {
            "code_server": install.CODE_SERVER_VERSION,
            "create_over_bare": round(p50["create→ready (devyard)"] / bare, 3),
            "targets": targets,
            **extra,
        },
    )
    print(f"create→ready / bare boot: {p50['create→ready (devyard)'] / bare:.2f}×")
    for target, ok in targets.items():
        print(f"{'MET    ' if ok else 'NOT MET'}  {target}")


if __name__ == "__main__":
    main()
