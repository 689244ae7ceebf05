"""Gateway micro-benchmark: one upstream behind nothing, devyard's gateway, nginx and configurable-http-proxy.

All on loopback, same upstream (bench/upstream.py: unix socket and TCP), one after the other:

    GET c=1        2,000 sequential small GETs on one keep-alive connection (httpx): p50, p99
    GET c=64       wrk, 64 connections, 2 threads, 5 s: requests/s, p50, p99
    10 MB          wrk, 1 connection, 5 s of 10 MiB downloads: MB/s
    WS round trip  2,000 sequential 32-byte echoes on one WebSocket: p50, p99
    WS one-way     100 MiB in 64 KiB messages to a sink that answers the total: MB/s
    500 idle WS    500 WebSockets opened and held: the proxy processes' RSS growth, MB

Every figure is also given against the direct run of the same session ("added" latency =
proxied − direct; throughput as % of direct); absolute numbers are context. devyard is reached
with a real login session (cookie), so every request is authenticated on the way. Needs Debian's
nginx and wrk (`make bench-deps` as root) and npm (configurable-http-proxy is installed from it).

Usage: .venv/bin/python bench/gateway.py [--quick]. Prints a markdown table, writes bench/results/gateway.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect as aconnect
from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.proxies import Proxy, chp, devyard, nginx  # noqa: E402
from bench.stats import percentile, scratch, write_results  # noqa: E402
from tests.support import free_port, kill_tree  # noqa: E402

UPSTREAM = Path(__file__).resolve().parent / "upstream.py"
MB = 1 << 20


def http_latency(base: str, headers: dict[str, str], n: int, uds: str | None = None) -> list[float]:
    """Seconds of each of `n` sequential small GETs on one connection (after a warm-up)."""
    transport = httpx.HTTPTransport(uds=uds) if uds else None
    with httpx.Client(headers=headers, transport=transport, timeout=30) as client:
        for _ in range(200):
            client.get(base + "/small").raise_for_status()
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            response = client.get(base + "/small")
            times.append(time.perf_counter() - t0)
            assert response.status_code == 200 and len(response.content) == 100, response.status_code
    return times


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}
_BYTES = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}


def wrk(url: str, headers: dict[str, str], connections: int, threads: int, seconds: int) -> dict[str, float]:
    """requests/s, bytes/s, p50 and p99 (seconds) from wrk; non-2xx answers fail the run."""
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors against {url}:\n{out}")

    def latency(p: str) -> float:
        found = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
        assert found, out
        return float(found[1]) * _UNITS[found[2]]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(B|KB|MB|GB)", out)
    assert rps and transfer, out
    return {
        "rps": float(rps[1]),
        "bytes_per_s": float(transfer[1]) * _BYTES[transfer[2]],
        "p50": latency("50"),
        "p99": latency("99"),
    }


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://", 1)


def ws_round_trips(base: str, headers: dict[str, str], n: int) -> list[float]:
    """Seconds of each of `n` sequential 32-byte echoes on one WebSocket."""
    message = b"k" * 32
    with connect(ws_url(base) + "/ws", additional_headers=headers, compression=None, max_size=None) as ws:
        for _ in range(200):
            ws.send(message)
            ws.recv()
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            ws.send(message)
            assert ws.recv() == message
            times.append(time.perf_counter() - t0)
    return times


def ws_one_way(base: str, headers: dict[str, str], total: int) -> float:
    """Bytes per second of `total` bytes sent in 64 KiB messages until the upstream confirms them all."""
    chunk = b"s" * (64 << 10)
    with connect(ws_url(base) + "/sink", additional_headers=headers, compression=None, max_size=None) as ws:
        t0 = time.perf_counter()
        for _ in range(total // len(chunk)):
            ws.send(chunk)
        ws.send("done")
        got = int(ws.recv())
        elapsed = time.perf_counter() - t0
    assert got == total // len(chunk) * len(chunk), got
    return got / elapsed


def idle_websockets(proxy: Proxy, count: int) -> float:
    """Growth of the proxy processes' RSS, in bytes, with `count` WebSockets open and idle through it."""

    async def hold() -> float:
        before = proxy.rss_bytes()
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(count):
                await stack.enter_async_context(
                    aconnect(ws_url(proxy.base) + "/ws", additional_headers=proxy.headers, compression=None)
                )
            await asyncio.sleep(2)
            after = proxy.rss_bytes()
        return float(after - before)

    return asyncio.run(hold())


def measure(proxy: Proxy, quick: bool, uds: str | None = None) -> dict[str, Any]:
    """Every figure for one way of reaching the upstream."""
    n = 500 if quick else 2000
    seconds = 2 if quick else 5
    c1 = http_latency(proxy.base, proxy.headers, n, uds)
    result: dict[str, Any] = {"get_c1_p50": percentile(c1, 50), "get_c1_p99": percentile(c1, 99)}
    if uds:  # wrk and WebSocket clients speak TCP only: the unix-socket row has the one figure
        return result
    c64 = wrk(proxy.base + "/small", proxy.headers, 64, 2, seconds)
    big = wrk(proxy.base + "/big", proxy.headers, 1, 1, seconds)
    rt = ws_round_trips(proxy.base, proxy.headers, n)
    result.update(
        {
            "get_c64_rps": c64["rps"],
            "get_c64_p50": c64["p50"],
            "get_c64_p99": c64["p99"],
            "download_mb_s": big["bytes_per_s"] / MB,
            "ws_rtt_p50": percentile(rt, 50),
            "ws_rtt_p99": percentile(rt, 99),
            "ws_one_way_mb_s": ws_one_way(proxy.base, proxy.headers, (32 if quick else 100) * MB) / MB,
            "idle_ws_500_mb": idle_websockets(proxy, 100 if quick else 500) / MB,
        }
    )
    return result


@contextlib.contextmanager
def upstream(root: Path) -> Iterator[tuple[int, str, int]]:
    """The upstream server: (pid, unix socket, TCP port)."""
    sock, port = str(root / "up.sock"), free_port()
    proc = subprocess.Popen(
        [sys.executable, str(UPSTREAM), sock, str(port)], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc.pid, sock, port
    finally:
        kill_tree(proc.pid)
        proc.wait()


def run(quick: bool) -> dict[str, dict[str, Any]]:
    """Measure direct (TCP and unix socket), devyard, nginx and configurable-http-proxy in one session."""
    for tool in ("wrk", "npm"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed: make bench-deps (as root) installs wrk; npm comes with Node.js")
    rows: dict[str, dict[str, Any]] = {}
    with scratch("dybench-gw-") as root, upstream(root) as (pid, sock, port):
        direct = Proxy("direct", f"http://127.0.0.1:{port}")
        rows["direct (TCP)"] = measure(direct, quick)
        rows["direct (unix socket)"] = measure(Proxy("direct-uds", "http://upstream"), quick, uds=sock)
        starts: list[tuple[str, Callable[[], Any]]] = [
            ("devyard", lambda: devyard(root, pid, sock)),
            ("nginx", lambda: nginx(root, sock)),
            ("configurable-http-proxy", lambda: chp(root, port)),
        ]
        for name, start in starts:
            print(f"measuring {name}…", flush=True)
            with start() as proxy:
                rows[name] = measure(proxy, quick)
    return rows


COLUMNS = [  # key, heading, scale, format
    ("get_c1_p50", "GET c=1 p50 ms", 1e3, ".3f"),
    ("get_c1_p99", "GET c=1 p99 ms", 1e3, ".3f"),
    ("get_c64_rps", "GET c=64 req/s", 1, ".0f"),
    ("get_c64_p99", "GET c=64 p99 ms", 1e3, ".2f"),
    ("download_mb_s", "10 MB MB/s", 1, ".0f"),
    ("ws_rtt_p50", "WS RTT p50 ms", 1e3, ".3f"),
    ("ws_rtt_p99", "WS RTT p99 ms", 1e3, ".3f"),
    ("ws_one_way_mb_s", "WS one-way MB/s", 1, ".0f"),
    ("idle_ws_500_mb", "500 idle WS MB", 1, ".1f"),
]


def table(rows: dict[str, dict[str, Any]]) -> str:
    """The markdown table: absolute figures, then each proxy against direct."""
    lines = ["| | " + " | ".join(c[1] for c in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, r in rows.items():
        lines.append(
            f"| {name} | " + " | ".join(format(r[k] * s, f) if k in r else "" for k, _, s, f in COLUMNS) + " |"
        )
    base = rows["direct (TCP)"]
    lines += [
        "",
        "| against direct (TCP) | GET c=1 added p50 ms | req/s c=64 | 10 MB | WS RTT added p50 ms | WS one-way |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        if name.startswith("direct"):
            continue
        lines.append(
            f"| {name} | {(r['get_c1_p50'] - base['get_c1_p50']) * 1e3:.3f} | {r['get_c64_rps'] / base['get_c64_rps']:.0%} | "
            f"{r['download_mb_s'] / base['download_mb_s']:.0%} | {(r['ws_rtt_p50'] - base['ws_rtt_p50']) * 1e3:.3f} | "
            f"{r['ws_one_way_mb_s'] / base['ws_one_way_mb_s']:.0%} |"
        )
    return "\n".join(lines)


def targets(rows: dict[str, dict[str, Any]]) -> dict[str, bool]:
    """The issue's gateway targets, met or not."""
    base, dy, ng, ch = rows["direct (TCP)"], rows["devyard"], rows["nginx"], rows["configurable-http-proxy"]

    def added(r: dict[str, Any], k: str) -> float:
        return float(r[k] - base[k])

    return {
        "GET added p50 ≤ 1.5× nginx's": added(dy, "get_c1_p50") <= 1.5 * added(ng, "get_c1_p50"),
        "GET added p50 < configurable-http-proxy's": added(dy, "get_c1_p50") < added(ch, "get_c1_p50"),
        "req/s at c=64 ≥ configurable-http-proxy's": dy["get_c64_rps"] >= ch["get_c64_rps"],
        "WS RTT added p50 ≤ 0.2 ms": added(dy, "ws_rtt_p50") <= 0.2e-3,
        "WS one-way ≥ 90 % of direct": dy["ws_one_way_mb_s"] >= 0.9 * base["ws_one_way_mb_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="fewer requests and shorter runs (a smoke test of the benchmark)"
    )
    args = parser.parse_args()
    rows = run(args.quick)
    met = targets(rows)
    print(table(rows))
    print()
    for target, ok in met.items():
        print(f"{'MET    ' if ok else 'NOT MET'}  {target}")
    write_results("gateway", {"rows": rows, "targets": met, "quick": args.quick})


if __name__ == "__main__":
    main()
