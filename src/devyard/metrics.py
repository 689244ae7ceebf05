"""Prometheus metrics (prometheus-client), served at /metrics to admins.

Counters and histograms are updated where things happen (engine starts, crashes, gateway
requests, WebSockets); gauges of workspaces by status and of engine memory and CPU are filled at
scrape time from what the manager already holds in memory (routes, the last stats sample).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """One manager's metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.starts = Counter("devyard_workspace_starts", "Engines started and answering.", registry=r)
        self.start_failures = Counter("devyard_workspace_start_failures", "Engine starts that failed.", registry=r)
        self.crashes = Counter("devyard_engine_crashes", "Engines that exited by themselves.", registry=r)
        self.start_seconds = Histogram(
            "devyard_workspace_start_seconds",
            "From starting an engine to it answering.",
            registry=r,
            buckets=(0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 120),
        )
        self.requests = Counter(
            "devyard_gateway_requests", "HTTP requests through the gateway, by status code.", ["code"], registry=r
        )
        self.request_seconds = Histogram(
            "devyard_gateway_request_seconds",
            "HTTP requests through the gateway, until the response ended.",
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self._by_code: dict[int, Counter] = {}
        self.websockets = Gauge(
            "devyard_gateway_open_websockets", "WebSockets relayed to engines right now.", registry=r
        )
        self.workspaces = Gauge("devyard_workspaces", "Workspaces by status.", ["status"], registry=r)
        self.memory = Gauge(
            "devyard_engine_memory_bytes",
            "RSS of each running engine's processes (last sample).",
            ["owner", "workspace"],
            registry=r,
        )
        self.cpu = Gauge(
            "devyard_engine_cpu_percent",
            "CPU of each running engine's processes (last sample).",
            ["owner", "workspace"],
            registry=r,
        )
        self.leader = Gauge(
            "devyard_leader",
            "1 while this manager replica runs the background work (crash restarts, idle stop, backups).",
            registry=r,
        )

    def request(self, code: int, seconds: float) -> None:
        """Count one gateway HTTP request (the gateway's hot path: one dict lookup, no label parsing)."""
        child = self._by_code.get(code)
        if child is None:
            child = self._by_code[code] = self.requests.labels(str(code))
        child.inc()
        self.request_seconds.observe(seconds)

    def render(
        self,
        statuses: Mapping[str, int],
        running: Iterable[tuple[str, str]],
        latest: Mapping[tuple[str, str], dict[str, Any]],
    ) -> bytes:
        """The text exposition, with the gauges filled from the manager's current state.

        `statuses`: how many workspaces are in each status (every status named); `running`: the
        (owner, name) of each running workspace; `latest`: the last stats sample of each.
        """
        for status, n in statuses.items():
            self.workspaces.labels(status).set(n)
        self.memory.clear()
        self.cpu.clear()
        for key in set(running) & latest.keys():
            self.memory.labels(*key).set(latest[key]["memory_bytes"])
            self.cpu.labels(*key).set(latest[key]["cpu_percent"])
        return generate_latest(self.registry)
