"""Working-hours schedules: a workspace starts and stops at set times on set days, in its owner's time zone.

Pure computations, no I/O: the API's models, the timers loop and the page's "stops at" all use
these. A schedule fires on an edge (the moment a start or stop time passes), as Coder's autostart
and autostop do, so a workspace a user starts at night is not stopped again by the next round, and
one stopped by hand in working hours stays stopped until the next start time. Times are wall-clock
times of the zone: on a day a clock change skips a time, `zoneinfo` puts it an hour on.
"""

from __future__ import annotations

import functools
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import AfterValidator, ConfigDict, Field, GetJsonSchemaHandler, model_validator

from devyard.fields import Body

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
Edge = Literal["start", "stop"]
SEARCH_DAYS = 8  # every day of the week once, and today again


class Schedule(Body):
    """When a workspace starts and stops by itself: wall-clock times in its owner's time zone, on the days listed."""

    # The schema says what the validator below does: a start, a stop, or both.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["start"], "properties": {"start": {"type": "string"}}},
                {"required": ["stop"], "properties": {"stop": {"type": "string"}}},
            ]
        }
    )

    days: list[Day] = Field(
        default=["mon", "tue", "wed", "thu", "fri"],
        min_length=1,
        max_length=7,
        description="Days it applies to, each once",
        json_schema_extra={"uniqueItems": True},
    )
    start: str | None = Field(default=None, pattern=HHMM, description="Start it at this time (HH:MM), if stopped")
    stop: str | None = Field(default=None, pattern=HHMM, description="Stop it at this time (HH:MM), if running")

    @model_validator(mode="after")
    def _something(self) -> Schedule:
        if self.start is None and self.stop is None:
            raise ValueError("a schedule needs a start time, a stop time or both")
        if len(set(self.days)) != len(self.days):
            raise ValueError("each day may be listed once")
        return self

    def edges(self, zone: ZoneInfo, around: datetime) -> list[tuple[datetime, Edge]]:
        """Every start and stop moment from a week before `around` to a week after, oldest first (aware UTC-comparable)."""
        found: list[tuple[datetime, Edge]] = []
        today = around.astimezone(zone).date()
        for offset in range(-SEARCH_DAYS, SEARCH_DAYS + 1):
            day = today + timedelta(days=offset)
            if DAYS[day.weekday()] not in self.days:
                continue
            for edge, at in (("start", self.start), ("stop", self.stop)):
                if at is not None:
                    found.append((_moment(day, at, zone), edge))  # type: ignore[arg-type]
        return sorted(found)

    def latest_edge(self, zone: ZoneInfo, after: datetime, until: datetime) -> tuple[datetime, Edge] | None:
        """The last start or stop moment in (after, until], or None: what a round that last looked at `after` must act on."""
        passed = [e for e in self.edges(zone, until) if after < e[0] <= until]
        return passed[-1] if passed else None

    def next_edge(self, zone: ZoneInfo, after: datetime, edge: Edge) -> datetime | None:
        """The first `edge` moment after `after`, within a week."""
        return next((at for at, kind in self.edges(zone, after) if kind == edge and at > after), None)


def _moment(day: date, hhmm: str, zone: ZoneInfo) -> datetime:
    hours, minutes = (int(part) for part in hhmm.split(":"))
    return datetime.combine(day, time(hours, minutes), tzinfo=zone)


@functools.cache
def _known() -> frozenset[str]:
    return frozenset(available_timezones())  # a walk over tzdata: once per process


def zone_names() -> list[str]:
    """Every IANA time zone name this machine knows, sorted (for a picker)."""
    return sorted(_known())


def _named_zone(name: str) -> str:
    zone(name)
    return name


class _EveryZone:
    """The schema of a time zone's name: every name this machine knows, listed when the schema is made (not at import)."""

    @classmethod
    def __get_pydantic_json_schema__(cls, core: Any, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        return {"type": "string", "enum": zone_names()}


# A time zone's name in a request: checked, and listed in the API's schema.
ZoneName = Annotated[str, AfterValidator(_named_zone), _EveryZone]


def zone(name: str) -> ZoneInfo:
    """The time zone named `name` (IANA, e.g. Europe/Paris); ValueError naming it when there is none."""
    if name not in _known():
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as Europe/Paris or UTC)")
    try:
        return ZoneInfo(name)
    except ZoneInfoNotFoundError as exc:  # listed but unreadable: a broken tzdata
        raise ValueError(f"time zone {name!r} cannot be read: {exc}") from exc
