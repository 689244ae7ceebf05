"""Why a workspace started or stopped, and why a running one has not stopped yet: the shapes the API, CLI and pages show.

Kept apart from the lifecycle and free of I/O, so the models, the stored rows and the audit log
share one list of reasons (and the API's enum is exactly what the manager can write).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

StopReason = Literal[
    "user",  # its owner (or someone it is shared with) stopped it
    "admin",  # an admin stopped it, or disabled its owner's account
    "idle",  # nobody used it for its idle timeout
    "schedule",  # its schedule's stop time
    "max_lifetime",  # the longest session an admin allows
    "quota",  # over its disk quota past the grace time
    "crash",  # its engine exited and was not restarted (crash loop, out of memory)
    "failover",  # its engine was gone when a manager (or a new leader) took over
    "manager_exit",  # the manager stopped, told to stop every engine with it
    "dormant",  # not opened for dormant_after_days
]
StartReason = Literal[
    "user",  # its owner (or someone it is shared with) started it
    "admin",  # an admin started it
    "opened",  # someone who may opened it in a browser while it was stopped
    "created",  # the first start after provisioning
    "restart",  # a restart asked for by a user
    "crash_restart",  # the supervisor restarted a crashed engine
    "schedule",  # its schedule's start time
]
DueReason = Literal["idle", "schedule", "max_lifetime"]
STOP_REASONS: frozenset[str] = frozenset(get_args(StopReason))
START_REASONS: frozenset[str] = frozenset(get_args(StartReason))


class Because(BaseModel):
    """Why a workspace last started or stopped: a code, who asked (for user and admin), when, and a sentence."""

    reason: StopReason | StartReason = Field(description="Why, as a code (docs/api.md lists them)")
    at: datetime
    by: str | None = Field(default=None, description="The user who asked, when a user did")
    detail: str = Field(description="What happened, as a sentence (idle stops name the last activity seen)")


class DueStop(BaseModel):
    """A stop that will happen to a running workspace unless something changes, and when."""

    reason: DueReason
    at: datetime
    detail: str


@dataclass(frozen=True)
class Cause:
    """Why a start or stop is asked for: a reason code, a sentence, and who asked (None: the manager itself)."""

    reason: str
    detail: str
    by: str | None = None

    def stored(self, at: datetime) -> dict[str, Any]:
        """The Because this cause leaves on the workspace row (JSON), at `at`."""
        return Because(reason=self.reason, at=at, by=self.by, detail=self.detail).model_dump(mode="json")  # type: ignore[arg-type]


CREATED = Cause("created", "the first start after provisioning")


def asked(verb: str, who: str, owner: str, as_admin: bool) -> Cause:
    """The cause of a start, stop or restart a user asked for: `admin` when an admin acted on someone else's workspace."""
    return Cause("admin" if as_admin and who != owner else "user", f"{verb} asked for by {who}", by=who)


def read(stored: dict[str, Any] | None) -> Because | None:
    """A stored Because, or None (a row written before reasons were kept, or one that never started)."""
    return Because.model_validate(stored) if stored else None


def spoken(seconds: float) -> str:
    """`seconds` for a person: "40 s", "5 minutes", "3 hours"."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} minutes" if seconds < 3 * 3600 else f"{seconds / 3600:.0f} hours"
