"""Every engine pod in the namespace, kept current by a watch: the backend reads status from here, never by polling.

One list, then a watch from the list's resourceVersion; when the watch ends (the API server's
timeout, a dropped connection, 410 Gone) the list is read again and replaces what was known, so a
deletion missed in between is not kept. Waiters (a start waiting for its pod to be ready, a stop
waiting for it to be gone) are woken on every change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from kubernetes_asyncio import client, watch

from devyard.backends.kubernetes.manifests import SELECTOR, owned_by

log = logging.getLogger("devyard.kubernetes")
WATCH_TIMEOUT_S = (
    240  # asked of the API server, within the client's own 5-minute limit; the watch is opened again after it
)
RETRY_S = (0.5, 1.0, 2.0, 5.0)


class PodWatcher:
    """The engine pods of one namespace by workspace uid, as the API's JSON (dicts)."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.core = client.CoreV1Api(api)
        self.pods: dict[str, dict[str, Any]] = {}
        self.synced = asyncio.Event()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.listeners: list[Callable[[str], None]] = []  # told the uid of each pod that changed

    def start(self) -> None:
        """Begin listing and watching in the background."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="devyard-pod-watch")

    async def close(self) -> None:
        """End the watch."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def changed(self, timeout_s: float) -> None:
        """Return on the next change to any pod, or after `timeout_s`."""
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout_s)
        except TimeoutError:
            pass

    def _notify(self, uids: set[str]) -> None:
        self._changed.set()
        self._changed = asyncio.Event()  # the next waiters wait for the next change
        for uid in uids:
            for listener in self.listeners:
                listener(uid)

    def _json(self, obj: Any) -> dict[str, Any]:
        found: dict[str, Any] = obj if isinstance(obj, dict) else self.api.sanitize_for_serialization(obj)
        return found

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                listing = await self.core.list_namespaced_pod(self.namespace, label_selector=SELECTOR)
                fresh = {}
                for item in listing.items or []:
                    pod = self._json(item)
                    uid = owned_by(pod)  # also checked here: a selector is a request, not a promise
                    if uid is not None:
                        fresh[uid] = pod
                gone_or_new = set(fresh) ^ set(self.pods) | {u for u in fresh if fresh[u] != self.pods.get(u)}
                self.pods = fresh
                self.synced.set()
                self._notify(gone_or_new)
                failures = 0
                version = listing.metadata.resource_version if listing.metadata else None
                await self._follow(version)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the API went away or refused: keep what is known, try again
                delay = RETRY_S[min(failures, len(RETRY_S) - 1)]
                failures += 1
                log.warning("watching pods in namespace %s: %s; again in %.1f s", self.namespace, exc, delay)
                await asyncio.sleep(delay)

    async def _follow(self, version: str | None) -> None:
        stream = watch.Watch()
        kwargs: dict[str, Any] = {"label_selector": SELECTOR, "timeout_seconds": WATCH_TIMEOUT_S}
        if version:
            kwargs["resource_version"] = version
        try:
            async for event in stream.stream(self.core.list_namespaced_pod, self.namespace, **kwargs):
                kind, pod = event.get("type"), event.get("raw_object") or self._json(event.get("object"))
                uid = owned_by(pod)
                if uid is None:
                    continue
                if kind == "DELETED":
                    if self.pods.get(uid, {}).get("metadata", {}).get("name") == pod.get("metadata", {}).get("name"):
                        self.pods.pop(uid, None)
                else:
                    self.pods[uid] = pod
                self._notify({uid})
        finally:
            stream.stop()
            await stream.close()
