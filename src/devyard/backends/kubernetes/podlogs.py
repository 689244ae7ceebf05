"""An engine pod's log for the kubernetes backend: its tail after devyard's own notes, and following it as it grows."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

from devyard.backends.base import WorkspaceSpec
from devyard.backends.kubernetes import manifests, pods
from devyard.backends.kubernetes.client import status_of, translate
from devyard.backends.kubernetes.watcher import PodWatcher
from devyard.logfiles import tail

log = logging.getLogger("devyard.kubernetes")
FOLLOW_RETRY_S = 1.0


async def tail_of(core: Any, namespace: str, watcher: PodWatcher, ws: WorkspaceSpec, lines: int) -> list[str]:
    """devyard's notes on the workspace (provisioning, crashes), then the last `lines` of the engine pod's log."""
    notes = await asyncio.to_thread(tail, ws.log_file, lines)
    if ws.uid not in watcher.pods:
        return notes[-lines:]
    try:
        said = await core.read_namespaced_pod_log(
            manifests.name_of(ws.uid), namespace, container=manifests.ENGINE, tail_lines=lines
        )
    except Exception as exc:
        if status_of(exc) not in (400, 404):
            raise translate(exc, "reading the engine's log") from exc
        said = None
    return [*notes, *(str(said or "").splitlines())][-lines:]


async def follow(core: Any, namespace: str, watcher: PodWatcher, ws: WorkspaceSpec) -> AsyncIterator[str]:
    """The engine container's log as it grows (the API server's follow), from now on; a restarted engine's from its start."""
    name = manifests.name_of(ws.uid)
    following, first = pods.engine_run(watcher.pods.get(ws.uid)), True
    while True:
        run = pods.engine_run(watcher.pods.get(ws.uid))
        if run is None:  # no engine running: wait for one
            await watcher.changed(5.0)
            continue
        options: dict[str, Any] = {"container": manifests.ENGINE, "follow": True, "_preload_content": False}
        if run != following:
            following = run  # a new run of the engine: its whole log is news
        elif first:
            options["tail_lines"] = 0
        else:
            options["since_seconds"] = 2  # the stream broke: pick up again (a line may come twice)
        first = False
        try:
            answer = cast(Any, await core.read_namespaced_pod_log(name, namespace, **options))
            try:
                async for raw in answer.content:
                    yield raw.decode("utf-8", "replace").rstrip("\r\n")
            finally:
                answer.release()
        except Exception as exc:  # the container is not there yet, or the API went away: look again shortly
            log.debug("following the log of %s: %s", name, exc)
        await asyncio.sleep(FOLLOW_RETRY_S)
