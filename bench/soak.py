"""Soak test: many users creating, opening, using, stopping and deleting workspaces on one manager for a long time.

One real `devyard up` on loopback; an admin creates `--users` users (POST /api/v1/users), each logs in and makes
a token (POST /api/v1/auth/login, POST /api/v1/tokens), then every user runs in a thread of its own for
`--minutes`, picking at random among:

    create     POST /api/v1/workspaces until the API says `running`                  → create→running
    open       GET /w/<user>/<name>/ (the engine's redirect), then the workbench page → gateway open
    write      a file written straight into the workspace's files/ folder, its content remembered
    websocket  the engine's own editor socket through the gateway, then VS Code's handshake
               (auth → sign, connectionType → ok)                                     → editor ws upgrade, round-trip
               and 10 messages of up to 64 KiB to an echo server via port forwarding  → echo ws round-trip
    stop       POST .../stop until `stopped`                                          → stop→stopped
    start      POST .../start until `running`                                         → start→running
    delete     DELETE, after checking the workspace's files are all there             → delete

A user keeps at most `--workspaces` workspaces, and all users together at most `--max-running` running
engines. Any non-2xx answer, timeout or wrong content is an error: counted, printed at the end, never fatal.

Checks, each PASS or FAIL (exit status 1 when one fails):
    no lost file        every file written to a workspace is there, with its content, until the workspace is deleted
    no orphan process   the engines on the machine are those the API says run; none at all once everything is deleted
    manager RSS growth  the manager's own RSS (engines not counted) at the end, with workspaces settled, is less than
                        10 % above its RSS after the warm-up (the first 10 % of the run or 2 minutes, whichever is
                        shorter, and at least until every operation has succeeded once)

Usage: .venv/bin/python bench/soak.py [--minutes 30] [--users 10] [--seed N] [--workspaces 2] [--max-running 8].
Prints tables, writes bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.soak_user import (
    ECHO,
    FAILURES,
    MEASURES,
    OPERATIONS,
    RSS_GROWTH_LIMIT_PCT,
    STATUS_TIMEOUT_S,
    TRANSITIONAL,  # noqa: E402
    WARMUP_FRACTION,
    WARMUP_MAX_S,
    Budget,
    Record,
    User,
    expect,
)
from bench.stats import report, scratch  # noqa: E402
from tests.support import (  # noqa: E402
    Manager,
    free_port,  # noqa: E402
    kill_tree,
    peer,
    start_manager,
    wait_for,
)


def make_users(m: Manager, count: int) -> list[tuple[str, str]]:
    """`count` users made by the admin over the API, each with a token it made itself after logging in."""
    users = []
    with httpx.Client(base_url=m.url + "/api/v1", timeout=60) as admin:
        admin.headers["authorization"] = f"Bearer {m.token()}"
        for i in range(count):
            name, password = f"soak-{i}", f"soak-password-{i}"
            expect(admin.post("/users", json={"name": name, "password": password}), 201)
            with httpx.Client(base_url=m.url + "/api/v1", timeout=60) as c:
                expect(c.post("/auth/login", json={"username": name, "password": password}), 200)
                users.append((name, expect(c.post("/tokens", json={"name": "soak"}), 201).json()["token"]))
    return users


def rss_mb(pid: int, samples: int = 3) -> float:
    """The median of a few RSS readings of process `pid`, one second apart, in MB."""
    readings = []
    for i in range(samples):
        readings.append(psutil.Process(pid).memory_info().rss / (1 << 20))
        if i < samples - 1:
            time.sleep(1)
    return statistics.median(readings)


def engine_processes(m: Manager) -> dict[int, psutil.Process]:
    """Live processes of this data dir's engines (their arguments or working folder point into it), manager excluded."""
    root, found = str(m.data_dir), {}
    for p in psutil.process_iter(["pid", "cmdline", "cwd", "status"]):
        if p.pid in (os.getpid(), m.proc.pid) or p.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if any(root in arg for arg in p.info["cmdline"] or ()) or (p.info["cwd"] or "").startswith(root):
            found[p.pid] = p
    return found


def engine_roots(m: Manager) -> set[int]:
    """The engine processes whose parent is not an engine process."""
    procs = engine_processes(m)
    roots = set()
    for pid, p in procs.items():
        try:
            if p.ppid() not in procs:
                roots.add(pid)
        except psutil.NoSuchProcess:
            pass
    return roots


def settle(admin: httpx.Client) -> list[dict[str, Any]]:
    """Every workspace, once none is between two states."""

    def steady() -> tuple[list[dict[str, Any]]] | None:
        spaces: list[dict[str, Any]] = expect(admin.get("/workspaces", params={"all": 1}), 200).json()
        return None if any(w["status"] in TRANSITIONAL for w in spaces) else (spaces,)  # a tuple: true even when empty

    found: tuple[list[dict[str, Any]]] = wait_for(steady, STATUS_TIMEOUT_S, "workspaces to settle", interval=0.5)
    return found[0]


def log_problems(m: Manager, lines: int = 50) -> list[str]:
    """The last warnings and errors the manager logged."""
    try:
        text = m.log
    except OSError:
        return []
    return [line for line in text.splitlines() if any(w in line for w in ("WARNING", "ERROR", "Traceback"))][-lines:]


def run_users(
    m: Manager, args: argparse.Namespace, record: Record, echo_port: int, seed: int
) -> tuple[list[User], dict[str, Any]]:
    """Run every user for the configured time; the users, and the manager's RSS after the warm-up and along the way."""
    budget = Budget(args.max_running)
    ctx = {"budget": budget, "record": record, "echo_port": echo_port}
    users = [User(m, name, token, seed + i, args, ctx) for i, (name, token) in enumerate(make_users(m, args.users))]
    duration = args.minutes * 60
    start = time.monotonic()
    deadline, stop = start + duration, threading.Event()
    threads = [threading.Thread(target=u.run, args=(deadline, stop), name=u.name, daemon=True) for u in users]
    for t in threads:
        t.start()
    warm_at, warm_latest = start + min(WARMUP_FRACTION * duration, WARMUP_MAX_S), start + duration / 2
    warm: float | None = None
    warm_s = 0.0
    series: list[tuple[float, float]] = []
    try:
        while any(t.is_alive() for t in threads):
            now = time.monotonic()
            series.append((round(now - start, 1), round(psutil.Process(m.proc.pid).memory_info().rss / (1 << 20), 1)))
            if len(series) % 6 == 1:
                Console().print(
                    f"[dim]{now - start:4.0f} s: {sum(record.done.values())} operations, {len(record.errors)} errors, "
                    f"manager RSS {series[-1][1]:.1f} MB[/dim]"
                )
            if warm is None and now >= warm_at and (all(record.done[op] for op in OPERATIONS) or now >= warm_latest):
                warm, warm_s = rss_mb(m.proc.pid), round(now - start, 1)
                Console().print(f"[dim]warm-up over after {now - start:.0f} s: manager RSS {warm:.1f} MB[/dim]")
            for t in threads:
                t.join(timeout=10 / len(threads))
    finally:
        stop.set()
    return users, {"warm_mb": warm if warm is not None else series[0][1], "warm_at_s": warm_s, "series": series}


def finish(m: Manager, admin: httpx.Client, users: list[User], spaces: list[dict[str, Any]]) -> dict[str, Any]:
    """Check the files of every workspace left, compare engines with the API, delete everything: the orphan check."""
    running = {(w["owner"], w["name"]) for w in spaces if w["status"] == "running"}
    roots, records = engine_roots(m), set(m.engine_pids())
    for u in users:
        for ws in list(u.spaces.values()):  # checked, then deleted like any other
            try:
                u.op_delete(ws)
                u.rec.ok("delete")
            except FAILURES as exc:
                u.rec.error(u.name, "delete", f"{ws.name} (at the end): {type(exc).__name__}: {exc}")
        u.http.close()
    for w in expect(admin.get("/workspaces", params={"all": 1}), 200).json():  # any the users lost track of
        try:
            expect(admin.delete(f"/workspaces/{w['name']}", params={"owner": w["owner"]}), 204)
        except FAILURES as exc:
            users[0].rec.error("admin", "delete", f"{w['owner']}/{w['name']} (at the end): {type(exc).__name__}: {exc}")
    try:
        wait_for(lambda: not engine_processes(m) and not m.engine_pids(), 30, "every engine gone", interval=0.5)
    except AssertionError:
        pass
    left, left_records = engine_processes(m), m.engine_pids()
    return {
        "pass": roots == records and len(records) == len(running) and not left and not left_records,
        "detail": f"{len(running)} running per API, {len(records)} engine records, {len(roots)} engine processes; "
        f"after deleting all {len(spaces)}: {len(left)} processes, {len(left_records)} records",
    }


def check_table(rss: dict[str, Any], record: Record, checks: dict[str, dict[str, Any]]) -> None:
    """Print operation counts, errors, RSS and the checks."""
    table = Table(title="Soak: operations, manager memory and checks")
    table.add_column("what")
    table.add_column("value", justify="right")
    for op in OPERATIONS:
        errs = sum(1 for e in record.errors if e["op"] == op)
        table.add_row(f"{op}: done / errors", f"{record.done[op]} / {errs}")
    table.add_row("resync errors", str(sum(1 for e in record.errors if e["op"] == "resync")))
    table.add_row(
        "files written / checked / lost", f"{record.files_written} / {record.files_checked} / {record.files_lost}"
    )
    table.add_row(
        "manager RSS warm / end / max (MB)",
        f"{rss['warm_mb']:.1f} / {rss['end_mb']:.1f} / {max(v for _, v in rss['series']):.1f}",
    )
    table.add_row("manager RSS growth", f"{rss['growth_pct']:+.1f} %")
    for name, c in checks.items():
        table.add_row(name, ("[green]PASS[/green] " if c["pass"] else "[red]FAIL[/red] ") + c["detail"])
    Console().print(table)
    for e in record.errors[:50]:
        Console().print(f"[red]error[/red] {e['t']} {e['user']} {e['op']}: {e['detail']}", highlight=False)
    if len(record.errors) > 50:
        Console().print(f"... and {len(record.errors) - 50} more errors (all in bench/results/soak.json)")


def main() -> None:
    """Run the soak and exit 1 when a check fails."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="how long the users work")
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of the users' random choices (default: a random one, printed)"
    )
    parser.add_argument("--workspaces", type=int, default=2, help="workspaces a user keeps at most")
    parser.add_argument("--max-running", type=int, default=8, help="running engines of all users together, at most")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    Console().print(f"soak: {args.users} users, {args.minutes:g} minutes, seed {seed}")
    record, checks = Record(), {}
    with scratch("dybench-soak-") as root:
        echo_port = free_port()
        m = start_manager(root / "data")
        try:
            with (
                peer([sys.executable, str(ECHO), str(echo_port)]),
                httpx.Client(base_url=m.url + "/api/v1", timeout=60) as admin,
            ):
                admin.headers["authorization"] = f"Bearer {m.token()}"
                users, rss = run_users(m, args, record, echo_port, seed)
                spaces = settle(admin)
                rss["end_mb"] = rss_mb(m.proc.pid)
                rss["growth_pct"] = (rss["end_mb"] - rss["warm_mb"]) / rss["warm_mb"] * 100
                checks["no orphan process"] = finish(m, admin, users, spaces)
        finally:
            m.stop()  # first: a running manager would restart the engines killed below
            for pid in engine_processes(m):
                kill_tree(pid)
            problems = log_problems(m)
    checks["no lost file"] = {
        "pass": record.files_lost == 0,
        "detail": f"{record.files_checked} checked, {record.files_lost} lost",
    }
    checks["manager RSS growth < 10 %"] = {
        "pass": rss["growth_pct"] < RSS_GROWTH_LIMIT_PCT,
        "detail": f"{rss['growth_pct']:+.1f} %",
    }
    title = f"Soak, {args.users} users for {args.minutes:g} minutes (seconds)"
    rows = {k: record.latencies[k] for k in MEASURES if record.latencies.get(k)}
    report(
        "soak",
        title,
        rows,
        "s",
        {
            "minutes": args.minutes,
            "users": args.users,
            "seed": seed,
            "workspaces_per_user": args.workspaces,
            "max_running": args.max_running,
            "operations": record.done,
            "error_count": len(record.errors),
            "errors": record.errors[:500],
            "files": {
                "written": record.files_written,
                "checked": record.files_checked,
                "lost": record.files_lost,
                "lost_paths": record.lost,
            },
            "manager_rss_mb": {k: (round(v, 1) if isinstance(v, float) else v) for k, v in rss.items()},
            "manager_log_problems": problems,
            "checks": checks,
            "passed": all(c["pass"] for c in checks.values()),
        },
    )
    check_table(rss, record, checks)
    sys.exit(0 if all(c["pass"] for c in checks.values()) else 1)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # the manager and its engines were stopped on the way out
        Console().print("soak interrupted; manager and engines stopped, nothing written")
        sys.exit(130)
