"""The value types of the API's request bodies: names, durations and bounded integers, as the schema states them.

Each type carries its rule twice, on purpose: as JSON Schema (a pattern, bounds) for the OpenAPI
description, and as a check whose refusal says the rule in words. Bodies are strict (`Body`):
values of exactly the types the schema gives. models.py builds the bodies from these.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

WORKSPACE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,38}$")
USER_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,38}$")
DURATION = re.compile(r"([1-9][0-9]{0,4})([smhdw]?)")  # up to 99999 weeks: an expiry within datetime's years


def _matching(pattern: re.Pattern[str], rule: str) -> AfterValidator:
    """A validator that accepts strings matching `pattern` and otherwise states `rule`."""

    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(rule)
        return value

    return AfterValidator(check)


# The schema states the pattern; the check says it in words (pydantic's own message would quote the regex).
WorkspaceName = Annotated[
    str,
    _matching(
        WORKSPACE_NAME,
        "workspace names are 1-39 characters: lower-case letters, digits and '-', starting with a letter or digit",
    ),
    Field(json_schema_extra={"pattern": WORKSPACE_NAME.pattern, "minLength": 1, "maxLength": 39}),
]


def _json_integer(value: Any) -> Any:
    """An integer as JSON Schema counts one: 3 and 3.0, never true or "3" (request bodies are strict)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be a whole number")
        return int(value)
    return value


# The bounds first: after a validator, pydantic would not put them in the schema as minimum and maximum.
Seconds = Annotated[int, Field(strict=False, ge=0, le=10**9), BeforeValidator(_json_integer)]
Count = Annotated[int, Field(strict=False, ge=0, le=10**6), BeforeValidator(_json_integer)]
Megabytes = Annotated[int, Field(strict=False, ge=0, le=2**40), BeforeValidator(_json_integer)]
Duration = Annotated[
    str,
    _matching(DURATION, "a duration is a positive number (up to 5 digits) with s, m, h, d or w, e.g. 30d"),
    Field(json_schema_extra={"pattern": f"^{DURATION.pattern}$"}),
]
UserName = Annotated[
    str,
    _matching(
        USER_NAME,
        "user names are 1-39 characters: lower-case letters, digits, '_', '.', '-', starting with a letter or digit",
    ),
    Field(json_schema_extra={"pattern": USER_NAME.pattern, "minLength": 1, "maxLength": 39}),
]


class Body(BaseModel):
    """A request body: values of exactly the types the schema gives (no "5" for 5, no 0 for false)."""

    model_config = ConfigDict(strict=True)


MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2}))?")


def _moment(value: Any) -> Any:
    # pydantic would also take a number (Unix time) or a time without a zone; the schema says RFC 3339.
    if not isinstance(value, str) or not MOMENT.fullmatch(value):
        raise ValueError("a date (2026-12-01) or a date and time with its zone (2026-12-01T09:00:00Z)")
    return value


# A query's point in time: an RFC 3339 date, or date and time with a zone (a date is its midnight UTC).
Moment = Annotated[
    datetime,
    BeforeValidator(_moment),
    WithJsonSchema({"type": "string", "anyOf": [{"format": "date-time"}, {"format": "date"}]}),
]
