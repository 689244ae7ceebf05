"""The settings of workspace time: schedules, the longest session, dormancy, usage records and the policies' clock.

A mixin of Settings (config.py), so each stays a top-level key of the `devyard:` block and a
DEVYARD_* variable like every other; kept here to keep config.py within its size.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, field_validator

from devyard import schedules


class TimeSettings(BaseModel):
    """Fields of Settings about time; each is documented in docs/config.md."""

    default_timezone: str = Field(
        "UTC", description="Time zone (IANA name) of schedules for users who chose none (`PATCH /api/v1/me`)."
    )
    max_session_hours: float = Field(
        0, ge=0, description="Stop a workspace this many hours after it started, even if in use; 0: never."
    )
    session_warning_minutes: int = Field(
        15, ge=0, description="Warn on the dashboard this many minutes before a maximum-lifetime or scheduled stop."
    )
    timers_interval_s: float = Field(
        30.0, gt=0, description="How often schedules and the maximum session lifetime are checked, in seconds."
    )
    clock_offset_file: Path | None = Field(
        None,
        description="A file holding seconds to move the policies' clock forward by (tests and drills; never credentials).",
    )
    dormant_after_days: int = Field(
        0, ge=0, description="Stop and mark dormant a workspace nobody opened for this many days; 0: never."
    )
    delete_dormant_after_days: int = Field(
        0, ge=0, description="Delete a workspace dormant this many days more (after a backup); 0: never."
    )
    dormancy_dry_run: bool = Field(
        False, description="Only log and report what dormancy would do (GET /api/v1/dormancy), never act."
    )

    usage_sample_s: float = Field(
        15.0, gt=0, description="How often running workspaces' CPU, memory and disk are sampled for usage, in seconds."
    )
    usage_keep_days: int = Field(400, ge=1, description="How long usage records are kept, in days.")

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        schedules.zone(value)
        return value
