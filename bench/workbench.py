"""Workbench benchmark: the first load of the VS Code workbench in headless Chromium, direct vs through devyard.

    time to workbench   from page.goto until `.monaco-workbench` is in the page, each run on a fresh
                        Chromium profile (cold browser cache), 1400×900 viewport
    bytes transferred   sum of CDP Network.loadingFinished encodedDataLength until that moment
                        (WebSocket frames not counted; for devyard, counting starts after the login)
    x-devyard-cache     responses whose x-devyard-cache header says hit / miss (the gateway's asset cache)

    direct    a bare code-server (the engine devyard runs) listening on 127.0.0.1:<port>, opened at /
    devyard   a workspace of `devyard up`, opened at <manager>/w/admin/<name>/ after the password login

Runs alternate (direct, devyard, direct, ...) so machine noise hits both alike. Target: devyard's median
time ≤ 0.8× direct's.

Usage: .venv/bin/python bench/workbench.py [--runs 5]. Prints tables, writes bench/results/workbench.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playwright.sync_api import BrowserContext, Page, Response  # noqa: E402

from bench.stats import percentile, report, scratch, start_bare  # noqa: E402
from devyard.config import load_settings  # noqa: E402
from devyard.engine import install  # noqa: E402
from devyard.engine.command import ENGINE_CONFIG, engine_argv  # noqa: E402
from tests.browser import WORKBENCH_TIMEOUT_MS, chromium, login  # noqa: E402
from tests.support import ADMIN_PASSWORD, Manager, free_port, kill_tree, start_manager, wait_for  # noqa: E402

TARGET = 0.8
TOP = 5  # the biggest responses kept per run


@contextmanager
def bare_engine(root: Path) -> Iterator[str]:
    """A bare code-server on a free loopback port; yields its URL and stops it afterwards."""
    engine = install.require(load_settings().engine_dir)
    d = root / "direct"
    for sub in ("files", "data", "ext", "home", "rt"):
        (d / sub).mkdir(parents=True)
    (d / "cfg.yaml").write_text(ENGINE_CONFIG)
    argv = engine_argv(
        engine,
        socket=d / "s.sock",
        folder=d / "files",
        user_data=d / "data",
        extensions=d / "ext",
        config=d / "cfg.yaml",
        base_path="/",
        session_socket=d / "rt" / "session.sock",
    )
    port = free_port()
    i = argv.index("--socket")
    argv[i : i + 2] = ["--bind-addr", f"127.0.0.1:{port}"]
    del argv[argv.index("--socket-mode") : argv.index("--socket-mode") + 2]
    assert "--abs-proxy-base-path" not in argv  # base path "/": served at /, as code-server is by default
    proc = start_bare(engine, argv, d)
    url = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the bare engine exited with {proc.returncode}")
            try:
                r = httpx.get(url + "/", timeout=5)
            except httpx.TransportError:
                return False
            return r.status_code == 302 and r.headers["location"].startswith("./?folder=")

        wait_for(up, 120, "the bare engine", interval=0.05)
        yield url
    finally:
        kill_tree(proc.pid)
        proc.wait()


def devyard_workspace(root: Path, name: str) -> tuple[Manager, str]:
    """A manager with one running workspace `name`; returns the manager and the workspace's URL."""
    manager = start_manager(root / "data")
    try:
        with httpx.Client(
            base_url=manager.url, headers={"authorization": f"Bearer {manager.token()}"}, timeout=60
        ) as c:
            assert c.post("/api/v1/workspaces", json={"name": name}).status_code == 201
        manager.wait_status(name, "running")
    except BaseException:
        manager.stop()
        raise
    return manager, f"{manager.url}/w/admin/{name}/"


def load(profile: Path, url: str, login_to: str | None = None) -> dict[str, Any]:
    """One cold load of the workbench at `url` on a fresh profile: seconds, bytes, requests, cache hits/misses, biggest responses."""
    with chromium(profile) as context:  # its default viewport, 1400×900, every run
        page = context.new_page()
        if login_to:
            login(page, login_to, "admin", ADMIN_PASSWORD)
        return measure(context, page, url)


def measure(context: BrowserContext, page: Page, url: str) -> dict[str, Any]:
    """Open `url` in `page` and count what it costs until the workbench is there."""
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    urls: dict[str, tuple[str, str]] = {}  # request id → (url, content-encoding)
    sizes: dict[str, float] = {}
    done: dict[str, float] = {}  # request id → CDP timestamp of its last byte
    first: list[float] = []  # CDP timestamp of the first request
    cache = {"hit": 0, "miss": 0}
    counting = [True]

    def sent(e: dict[str, Any]) -> None:
        first[:] = first or [e["timestamp"]]

    def received(e: dict[str, Any]) -> None:
        headers = {k.lower(): v for k, v in e["response"]["headers"].items()}
        urls[e["requestId"]] = (e["response"]["url"], headers.get("content-encoding", ""))

    def finished(e: dict[str, Any]) -> None:
        if counting[0]:
            sizes[e["requestId"]] = sizes.get(e["requestId"], 0) + e["encodedDataLength"]
            done[e["requestId"]] = e["timestamp"]

    def response(r: Response) -> None:
        value = r.headers.get("x-devyard-cache")
        if counting[0] and value in cache:
            cache[value] += 1

    cdp.on("Network.requestWillBeSent", sent)
    cdp.on("Network.responseReceived", received)
    cdp.on("Network.loadingFinished", finished)
    page.on("response", response)
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(".monaco-workbench", state="attached", timeout=WORKBENCH_TIMEOUT_MS)
    seconds = time.perf_counter() - t0
    counting[0] = False
    biggest = [
        {
            "url": urls.get(k, (k, ""))[0],
            "encoding": urls.get(k, (k, ""))[1],
            "bytes": int(v),
            "done_s": round(done[k] - first[0], 3),
        }
        for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])[:TOP]
    ]
    return {
        "seconds": seconds,
        "bytes": int(sum(sizes.values())),
        "requests": len(sizes),
        "cache_hit": cache["hit"],
        "cache_miss": cache["miss"],
        "biggest": biggest,
    }


def bench(runs: int, root: Path) -> dict[str, list[dict[str, Any]]]:
    """Alternate cold loads, direct then devyard, `runs` of each."""
    out: dict[str, list[dict[str, Any]]] = {"direct": [], "devyard": []}
    with bare_engine(root) as direct_url:
        manager, ws_url = devyard_workspace(root, "wb")
        try:
            for i in range(runs):
                out["direct"].append(load(root / f"profile-d{i}", direct_url + "/"))
                out["devyard"].append(load(root / f"profile-y{i}", ws_url, login_to=manager.url))
        finally:
            manager.stop()
    return out


def bytes_table(runs: dict[str, list[dict[str, Any]]]) -> None:
    """Print MB transferred, requests and cache hits per side."""
    table = Table(title="Bytes transferred until the workbench appears (MB)")
    for col in ("side", "median MB", "min MB", "max MB", "requests", "x-devyard-cache hit/miss"):
        table.add_column(col, justify="left" if col == "side" else "right")
    for side, rs in runs.items():
        mb = [r["bytes"] / 1e6 for r in rs]
        table.add_row(
            side,
            f"{statistics.median(mb):.2f}",
            f"{min(mb):.2f}",
            f"{max(mb):.2f}",
            f"{statistics.median([r['requests'] for r in rs]):.0f}",
            f"{sum(r['cache_hit'] for r in rs)}/{sum(r['cache_miss'] for r in rs)}",
        )
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with scratch("dybench-wb-") as root:
        runs = bench(args.runs, root)
    times = {side: [r["seconds"] for r in rs] for side, rs in runs.items()}
    ratio = percentile(times["devyard"], 50) / percentile(times["direct"], 50)  # the p50s of the table
    byte_ratio = statistics.median([r["bytes"] for r in runs["devyard"]]) / statistics.median(
        [r["bytes"] for r in runs["direct"]]
    )
    bytes_table(runs)
    report(
        "workbench",
        f"First workbench load, cold browser cache, {args.runs} runs each (seconds)",
        {f"{side}: time to workbench (s)": t for side, t in times.items()},
        "s",
        {
            "code_server": install.CODE_SERVER_VERSION,
            "runs": runs,
            "time_ratio_devyard_direct": round(ratio, 3),
            "bytes_ratio_devyard_direct": round(byte_ratio, 3),
            "target_ratio": TARGET,
            "target_met": ratio <= TARGET,
        },
    )
    print(
        f"median time devyard/direct: {ratio:.2f}× (target ≤ {TARGET}×: {'met' if ratio <= TARGET else 'not met'}); "
        f"median bytes devyard/direct: {byte_ratio:.2f}×"
    )


if __name__ == "__main__":
    main()
