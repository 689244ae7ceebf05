"""Small helpers shared by the benchmarks: percentiles, tables, JSON results."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from devyard.engine.command import engine_env
from devyard.engine.install import Engine

RESULTS = Path(__file__).parent / "results"


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summary(values: list[float]) -> dict[str, float]:
    """p50, p95, mean, min and max, in the unit of `values`."""
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
        "runs": len(values),
    }


def write_results(name: str, data: dict[str, Any]) -> dict[str, Any]:
    """Write bench/results/<name>.json: `data` with the benchmark's name, time and machine."""
    full = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        **data,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(full, indent=2))
    return full


def report(
    name: str, title: str, rows: dict[str, list[float]], unit: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Print a table of `rows` and write bench/results/<name>.json."""
    table = Table(title=title)
    for col in ("measure", "runs", f"p50 {unit}", f"p95 {unit}", f"mean {unit}", f"min {unit}", f"max {unit}"):
        table.add_column(col, justify="left" if col == "measure" else "right")
    results: dict[str, Any] = {}
    for measure, values in rows.items():
        s = summary(values)
        results[measure] = {**s, "values": values}
        table.add_row(measure, str(s["runs"]), *(f"{s[k]:.3f}" for k in ("p50", "p95", "mean", "min", "max")))
    Console().print(table)
    return write_results(name, {"unit": unit, "results": results, **(extra or {})})


@contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temporary folder, passable (0711) so engines run as per-user accounts (as root) can reach their folders."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o711)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def start_bare(engine: Engine, argv: list[str], folder: Path) -> subprocess.Popen[bytes]:
    """Start code-server as a user runs it alone (no manager): `argv`, with HOME and its runtime folder in `folder`."""
    return subprocess.Popen(
        argv,
        env=engine_env(engine, home=folder / "home", runtime_dir=folder / "rt"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
