"""Pydantic shapes at the edges: request bodies and JSON responses of the REST API."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

WORKSPACE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,38}$")
USER_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,38}$")


def _matching(pattern: re.Pattern[str], rule: str) -> AfterValidator:
    """A validator that accepts strings matching `pattern` and otherwise states `rule`."""

    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(rule)
        return value

    return AfterValidator(check)


WorkspaceName = Annotated[str, _matching(WORKSPACE_NAME, "workspace names are 1-39 characters: lower-case letters, digits and '-', starting with a letter or digit")]
UserName = Annotated[str, _matching(USER_NAME, "user names are 1-39 characters: lower-case letters, digits, '_', '.', '-', starting with a letter or digit")]


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


class LoginRequest(BaseModel):
    """Body of POST /api/v1/auth/login."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class User(BaseModel):
    """A user as the API shows it (never the password hash)."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    is_admin: bool
    created_at: datetime


class UserCreate(BaseModel):
    """Body of POST /api/v1/users."""

    name: UserName
    password: str = Field(min_length=8, max_length=1024)
    is_admin: bool = False



class TokenCreate(BaseModel):
    """Body of POST /api/v1/tokens; expires_in like '30d', '12h', '15m' or seconds."""

    name: str = Field("cli", min_length=1, max_length=64)
    expires_in: str | None = None


class TokenCreated(BaseModel):
    """A new API token; `token` is shown only in this response."""

    name: str
    token: str
    expires_at: datetime | None


class WorkspaceCreate(BaseModel):
    """Body of POST /api/v1/workspaces."""

    name: WorkspaceName
    template: str | None = None
    extension_groups: list[str] = Field(default_factory=list)
    git_url: str | None = None
    start: bool = True



class Workspace(BaseModel):
    """A workspace as the API shows it (design.md §5)."""

    name: str
    owner: str
    status: Status
    url: str
    template: str | None
    extension_groups: list[str]
    created_at: datetime
    started_at: datetime | None
    last_activity_at: datetime | None
    error: str | None


class Stats(BaseModel):
    """Resource use of a workspace's engine and folder."""

    cpu_percent: float
    memory_bytes: int
    uptime_s: float
    disk_bytes: int


class LogLines(BaseModel):
    """The tail of a workspace's engine log."""

    lines: list[str]
