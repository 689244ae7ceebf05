"""The whole benchmark suite in one run, then one markdown table of the targets, met or not.

    1. gateway     bench/gateway.py    devyard's gateway against nothing, nginx and configurable-http-proxy
    2. workbench   bench/workbench.py  first workbench load in Chromium, direct vs through devyard
    3. start       bench/start.py      create→ready, stop→start→ready, with a warm pool, bare engine boot
    4. density     bench/density.py    manager RSS and list latency with 1,000 workspaces; idle engine RSS

Each runs in its own process, one after the other (never two at once: they measure the same
machine), prints its own tables and writes bench/results/<name>.json; this then reads those files.
Every figure is a ratio against the direct or bare run of the same session where the target is one.

Usage: .venv/bin/python bench/all.py [--quick] [--only gateway,start]. Writes bench/results/summary.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stats import RESULTS, write_results  # noqa: E402

HERE = Path(__file__).resolve().parent
SUITE: dict[str, tuple[list[str], list[str]]] = {  # name: (arguments, arguments with --quick)
    "gateway": ([], ["--quick"]),
    "workbench": ([], ["--runs", "3"]),
    "start": ([], ["--runs", "3"]),
    "density": ([], ["--workspaces", "200", "--requests", "50", "--settle", "5"]),
}
Row = tuple[str, str, bool]  # target, measured, met


def gateway_rows(r: dict[str, Any]) -> list[Row]:
    """The gateway's five targets, with the figures behind each."""
    rows, met = r["rows"], list(r["targets"].values())
    base = rows["direct (TCP)"]

    def added_ms(name: str, key: str) -> float:
        return float(rows[name][key] - base[key]) * 1e3

    dy, ng, ch = (added_ms(n, "get_c1_p50") for n in ("devyard", "nginx", "configurable-http-proxy"))
    return [
        ("GET c=1 added p50 ≤ 1.5× nginx's", f"{dy:.3f} ms vs nginx {ng:.3f} ms ({dy / ng:.1f}×)", met[0]),
        ("GET c=1 added p50 < configurable-http-proxy's", f"{dy:.3f} ms vs {ch:.3f} ms", met[1]),
        (
            "req/s at c=64 ≥ configurable-http-proxy's",
            f"{rows['devyard']['get_c64_rps']:.0f} vs {rows['configurable-http-proxy']['get_c64_rps']:.0f} (nginx {rows['nginx']['get_c64_rps']:.0f})",
            met[2],
        ),
        ("WebSocket round trip added p50 ≤ 0.2 ms", f"{added_ms('devyard', 'ws_rtt_p50'):.3f} ms", met[3]),
        (
            "WebSocket one-way ≥ 90 % of direct",
            f"{rows['devyard']['ws_one_way_mb_s'] / base['ws_one_way_mb_s']:.0%}",
            met[4],
        ),
    ]


def workbench_rows(r: dict[str, Any]) -> list[Row]:
    """The workbench load target."""
    return [
        (
            "workbench first load ≤ 0.8× direct",
            f"{r['time_ratio_devyard_direct']:.2f}× "
            f"({r['results']['devyard: time to workbench (s)']['p50']:.2f} s vs {r['results']['direct: time to workbench (s)']['p50']:.2f} s)",
            bool(r["target_met"]),
        )
    ]


def start_rows(r: dict[str, Any]) -> list[Row]:
    """The start-up targets."""
    res, met = r["results"], list(r["targets"].values())
    return [
        (
            "create→ready p50 ≤ 1.2× bare engine boot",
            f"{r['create_over_bare']:.2f}× ({res['create→ready (devyard)']['p50']:.3f} s vs "
            f"{res['bare code-server boot']['p50']:.3f} s)",
            met[0],
        ),
        (
            "create→ready p50 with a warm pool ≤ 150 ms",
            f"{res['create→ready (devyard, warm pool)']['p50'] * 1e3:.0f} ms",
            met[1],
        ),
        *(
            [("sandboxed start adds ≤ 100 ms p50", f"{r['sandbox_added_ms']:.0f} ms", met[2])]
            if "sandbox_added_ms" in r
            else []
        ),
    ]


def density_rows(r: dict[str, Any]) -> list[Row]:
    """The control-plane targets."""
    return [
        (
            f"manager RSS ≤ 120 MB with {r['workspaces']} registered",
            f"{r['manager_rss_mb']['registered']:.1f} MB",
            bool(r["target_met"]["manager_rss"]),
        ),
        (
            f"GET /api/v1/workspaces p95 ≤ 50 ms ({r['workspaces']} listed)",
            f"{r['list_all_ms']['p95']:.1f} ms",
            bool(r["target_met"]["list_p95"]),
        ),
    ]


SUMMARIES: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "gateway": gateway_rows,
    "workbench": workbench_rows,
    "start": start_rows,
    "density": density_rows,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer runs of each (a smoke test of the suite)")
    parser.add_argument("--only", default=",".join(SUITE), help="comma-separated benchmarks to run (default: all)")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in SUITE]
    if unknown:
        raise SystemExit(f"unknown benchmark: {', '.join(unknown)} (choose from {', '.join(SUITE)})")
    failed, took = [], {}
    for name in names:
        began = time.monotonic()
        print(f"\n=== {name} ===", flush=True)
        extra = SUITE[name][1] if args.quick else SUITE[name][0]
        if subprocess.run([sys.executable, str(HERE / f"{name}.py"), *extra]).returncode != 0:
            failed.append(name)
        took[name] = round(time.monotonic() - began, 1)
    rows: list[Row] = []
    for name in names:
        if name not in failed:
            rows += SUMMARIES[name](json.loads((RESULTS / f"{name}.json").read_text()))
    lines = [
        "| target | measured | met |",
        "|---|---|---|",
        *(f"| {t} | {m} | {'yes' if ok else '**no**'} |" for t, m, ok in rows),
    ]
    print("\n" + "\n".join(lines))
    print(f"\n{sum(ok for *_, ok in rows)} of {len(rows)} targets met; seconds per benchmark: {took}")
    write_results(
        "summary",
        {
            "quick": args.quick,
            "targets": [{"target": t, "measured": m, "met": ok} for t, m, ok in rows],
            "seconds": took,
            "failed": failed,
        },
    )
    if failed:
        raise SystemExit(f"benchmarks that failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
