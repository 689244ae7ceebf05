"""A workspace's states and the rules between them, with no I/O: what the API, the lifecycle and a new leader decide from.

Kept free of devyard imports beyond errors, so the API's models, the state machine and its
millisecond tests all share one definition.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from devyard.errors import Conflict


class Status(StrEnum):
    """Lifecycle states of a workspace (design.md §5)."""

    creating = "creating"
    provisioning = "provisioning"
    starting = "starting"
    running = "running"
    stopping = "stopping"
    stopped = "stopped"
    failed = "failed"
    deleting = "deleting"


# A replica in the middle of one of these changes names itself on the row (`busy_replica`).
BUSY = frozenset({Status.creating, Status.provisioning, Status.starting, Status.stopping, Status.deleting})
# While the files are being made or removed, nothing else may happen to a workspace.
CHANGING_FILES = (Status.deleting, Status.creating, Status.provisioning)
REASON_CHARS = 32


def refuse_while(name: str, status: str, *states: Status) -> None:
    """Conflict (`workspace_busy`, 409) when the workspace is in one of `states`."""
    if status in states:
        raise Conflict(f"workspace '{name}' is {status}; try again when that is done", code="workspace_busy")


def values_for(status: str, address: str | None, fields: dict[str, Any]) -> dict[str, Any]:
    """The columns a change to `status` writes: an engine address only while running, a failure's reason only while failed."""
    values = {**fields, "status": status, "address": address if status == Status.running else None}
    if status != Status.failed:
        values["reason"] = None
    elif values.get("reason"):
        values["reason"] = str(values["reason"])[:REASON_CHARS]  # a code, kept to its column
    return values


def after_restart(status: str, running: bool) -> tuple[str, dict[str, Any]]:
    """What a workspace's status becomes when a manager starts and finds its engine `running` or not."""
    if running:
        return Status.running, {} if status == Status.running else {"error": None}
    if status in (Status.running, Status.starting, Status.stopping):
        note = "the engine was not running when the manager started" if status == Status.running else None
        return Status.stopped, {"error": note} if note else {}
    if status in (Status.creating, Status.provisioning, Status.deleting):
        return Status.failed, {"error": f"interrupted while {status} by a manager restart"}
    return status, {}


def backoff_s(crashes: int, base_s: float, max_s: float) -> float:
    """Wait before restarting after the `crashes`-th crash in the window: base, 2×base, 4×base… up to max."""
    return float(min(max_s, base_s * 2 ** max(0, crashes - 1)))
