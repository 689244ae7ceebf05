"""What a Pod's status means for its workspace: ready, still coming up, ending, or failed and why.

Kubernetes reports trouble in several places (a PodScheduled condition, a container's waiting or
terminated state, the phase); the user should see one reason code and Kubernetes' own message:
out_of_memory for an OOMKilled container (the engine or the init container), image_pull_failed,
unschedulable, engine_start_failed for a container that cannot be created or an init step that
failed, and engine_exited for an engine that ended by itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from devyard.backends.kubernetes.manifests import ENGINE

Phase = Literal["pending", "ready", "terminating", "failed"]
IMAGE_PULL = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable", "SignatureValidationFailed"})
CANNOT_RUN = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError", "CrashLoopBackOff", "PreCreateHookError",
                        "PostStartHookError"})


@dataclass(frozen=True, slots=True)
class PodState:
    """One pod, read: where it is, and for a failed one the reason code and Kubernetes' message."""

    phase: Phase
    reason: str | None = None
    detail: str | None = None
    exit_code: int | None = None
    started_at: float | None = None  # unix time the pod started
    pod_ip: str | None = None


def read(pod: Mapping[str, Any]) -> PodState:
    """Interpret a pod (the API's JSON shape, camelCase)."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    started = _time(status.get("startTime"))
    ip = status.get("podIP")
    if meta.get("deletionTimestamp"):
        return PodState("terminating", started_at=started)
    images = {c.get("name"): c.get("image") for c in [*((pod.get("spec") or {}).get("initContainers") or []),
                                                     *((pod.get("spec") or {}).get("containers") or [])]}
    inits = status.get("initContainerStatuses") or []
    mains = status.get("containerStatuses") or []
    for cs in [*inits, *mains]:
        failed = _container_failure(cs, images.get(cs.get("name")), init=cs in inits)
        if failed is not None:
            return PodState("failed", failed[0], failed[1], failed[2], started)
    phase = status.get("phase")
    if phase in ("Failed", "Succeeded"):
        message = status.get("message") or status.get("reason") or f"the pod ended ({phase})"
        code = "out_of_memory" if status.get("reason") == "OOMKilled" else "engine_exited"
        return PodState("failed", code, message, None, started)
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
            return PodState("failed", "unschedulable", f"the workspace's pod cannot be scheduled: {cond.get('message') or 'no node fits it'}",
                            None, started)
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return PodState("ready" if ready and phase == "Running" else "pending", started_at=started, pod_ip=ip)


def _container_failure(cs: Mapping[str, Any], image: str | None, init: bool) -> tuple[str, str, int | None] | None:
    """(reason code, message, exit code) when this container's state dooms the pod; None otherwise."""
    state = cs.get("state") or {}
    name = cs.get("name")
    waiting = state.get("waiting") or {}
    why = waiting.get("reason")
    if why in IMAGE_PULL:
        return "image_pull_failed", f"the engine image {image or cs.get('image')} could not be pulled ({why}): {waiting.get('message') or why}", None
    if why in CANNOT_RUN:
        return "engine_start_failed", f"container {name} cannot run ({why}): {waiting.get('message') or why}", None
    ended = state.get("terminated")
    if not ended:
        return None
    code = ended.get("exitCode")
    if ended.get("reason") == "OOMKilled":
        where = "the engine" if name == ENGINE else f"container {name}"
        return "out_of_memory", f"{where} ran out of memory and was killed", code
    if init and code == 0:
        return None  # done, as it should be
    said = ended.get("message") or ended.get("reason") or ""
    if init:
        return "engine_start_failed", f"preparing the workspace failed (exit code {code}){': ' + said if said else ''}", code
    return "engine_exited", f"the engine exited with code {code}{' (' + said + ')' if said else ''}", code


def _time(stamp: Any) -> float | None:
    if isinstance(stamp, datetime):
        return stamp.timestamp()
    if isinstance(stamp, str) and stamp:
        try:
            return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None
