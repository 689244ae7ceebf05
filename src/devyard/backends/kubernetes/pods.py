"""What a Pod's status means for its workspace: ready, still coming up, ending, or failed and why.

Kubernetes reports trouble in several places (a PodScheduled condition, a container's waiting or
terminated state, the phase); the user should see one reason code and Kubernetes' own message:
out_of_memory for an OOMKilled container (the engine or the init container), image_pull_failed,
unschedulable, engine_start_failed for a container that cannot be created or an init step that
failed, and engine_exited for an engine that ended by itself.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from devyard.backends.base import Endpoint, RuntimeStatus
from devyard.backends.kubernetes.manifests import ENGINE, name_of

log = logging.getLogger("devyard.kubernetes")

Phase = Literal["pending", "ready", "terminating", "failed"]
IMAGE_PULL = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "RegistryUnavailable",
        "SignatureValidationFailed",
    }
)
CANNOT_RUN = frozenset(
    {
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "CrashLoopBackOff",
        "PreCreateHookError",
        "PostStartHookError",
    }
)


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
    images = {
        c.get("name"): c.get("image")
        for c in [
            *((pod.get("spec") or {}).get("initContainers") or []),
            *((pod.get("spec") or {}).get("containers") or []),
        ]
    }
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
        if (
            cond.get("type") == "PodScheduled"
            and cond.get("status") == "False"
            and cond.get("reason") == "Unschedulable"
        ):
            return PodState(
                "failed",
                "unschedulable",
                f"the workspace's pod cannot be scheduled: {cond.get('message') or 'no node fits it'}",
                None,
                started,
            )
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return PodState("ready" if ready and phase == "Running" else "pending", started_at=started, pod_ip=ip)


def _container_failure(cs: Mapping[str, Any], image: str | None, init: bool) -> tuple[str, str, int | None] | None:
    """(reason code, message, exit code) when this container's state dooms the pod; None otherwise."""
    state = cs.get("state") or {}
    name = cs.get("name")
    waiting = state.get("waiting") or {}
    why = waiting.get("reason")
    if why in IMAGE_PULL:
        return (
            "image_pull_failed",
            f"the engine image {image or cs.get('image')} could not be pulled ({why}): {waiting.get('message') or why}",
            None,
        )
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
        return (
            "engine_start_failed",
            f"preparing the workspace failed (exit code {code}){': ' + said if said else ''}",
            code,
        )
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


def runtime(uid: str, pod: dict[str, Any] | None, endpoint: Endpoint) -> RuntimeStatus:
    """A workspace's RuntimeStatus from its pod: running (ready or coming up, at `endpoint`), stopped (none, or ending), failed."""
    if pod is None:
        return RuntimeStatus(uid=uid, state="stopped")
    state = read(pod)
    name = name_of(uid)
    if state.phase in ("ready", "pending"):
        return RuntimeStatus(
            uid=uid, state="running", started_at=state.started_at, endpoint=endpoint, detail=f"pod {name}"
        )
    if state.phase == "terminating":
        return RuntimeStatus(uid=uid, state="stopped", detail=f"pod {name} is ending")
    return RuntimeStatus(uid=uid, state="failed", exit_code=state.exit_code, detail=state.detail, reason=state.reason)


def engine_run(pod: dict[str, Any] | None) -> str | None:
    """Which run of the engine a pod is (its start time): a new one's whole log is new."""
    if pod is None:
        return None
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == ENGINE and (cs.get("state") or {}).get("running"):
            return str(cs["state"]["running"].get("startedAt") or (pod.get("status") or {}).get("startTime") or "")
    return None


_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_SUFFIX = {
    "": 1.0,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 1024.0,
    "Mi": 1024.0**2,
    "Gi": 1024.0**3,
    "Ti": 1024.0**4,
}


def quantity(text: str) -> float:
    """A Kubernetes quantity (`250m`, `12345678n`, `512Mi`) as a plain number (CPUs, bytes); 0 when unreadable."""
    match = _QUANTITY.match(str(text).strip())
    if not match or match.group(2) not in _SUFFIX:
        return 0.0
    return float(match.group(1)) * _SUFFIX[match.group(2)]


def progress(pod: dict[str, Any]) -> str:
    """Where a pod that is not ready yet is, in Kubernetes' words."""
    status = pod.get("status") or {}
    for cs in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting:
            return f"container {cs.get('name')} is waiting ({waiting.get('reason')}{': ' + waiting['message'] if waiting.get('message') else ''})"
    unready = [c for c in status.get("conditions") or [] if c.get("status") != "True"]
    if unready:
        c = unready[0]
        return f"{c.get('type')} is {c.get('status')}{' (' + c['message'] + ')' if c.get('message') else ''}"
    return f"the pod is {status.get('phase') or 'not scheduled yet'}"


async def usage(metrics: Any, namespace: str, name: str) -> tuple[float, int]:
    """CPU (percent of one core) and memory (bytes) of a pod from the cluster's metrics API; zeros where it has none."""
    cpu, memory = 0.0, 0
    try:
        found = await metrics.get_namespaced_custom_object("metrics.k8s.io", "v1beta1", namespace, "pods", name)
        for container in found.get("containers") or []:
            cpu += quantity(container.get("usage", {}).get("cpu", "0")) * 100.0
            memory += int(quantity(container.get("usage", {}).get("memory", "0")))
    except Exception as exc:  # no metrics-server, or not yet sampled: the figures are unknown, not an error
        log.debug("no metrics for %s: %s", name, exc)
    return cpu, memory
