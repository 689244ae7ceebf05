"""Pydantic shapes at the edges: request bodies and JSON responses of the REST API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from devyard.fields import (
    Body,
    Count,
    Duration,
    Megabytes,
    Seconds,
    UserName,
    WorkspaceName,
)
from devyard.reasons import Because, DueStop
from devyard.schedules import Schedule, ZoneName
from devyard.workspaces.states import Status as Status  # shown by the API's models, owned by the state rules


class LoginRequest(Body):
    """Body of POST /api/v1/auth/login."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class User(BaseModel):
    """A user as the API shows it (never the password hash)."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    is_admin: bool
    disabled: bool = False
    created_at: datetime
    timezone: str | None = Field(default=None, description="Time zone of their schedules; null: the manager's default")
    groups: Annotated[list[str], BeforeValidator(lambda v: v or [])] = Field(
        default=[], description="The groups they are in (local, and their identity provider's)"
    )


class UserUpdate(Body):
    """Body of PATCH /api/v1/users/{name} (admins): only the fields given change."""

    disabled: bool | None = None
    is_admin: bool | None = None
    password: str | None = Field(None, min_length=8, max_length=1024)


class PasswordChange(Body):
    """Body of POST /api/v1/me/password."""

    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=8, max_length=1024)


class MeUpdate(Body):
    """Body of PATCH /api/v1/me: only the fields given change."""

    timezone: ZoneName | None = Field(
        default=None, description="IANA time zone of your schedules; null: the manager's default"
    )


class UserCreate(Body):
    """Body of POST /api/v1/users."""

    name: UserName
    password: str = Field(min_length=8, max_length=1024)
    is_admin: bool = False


class TokenCreate(Body):
    """Body of POST /api/v1/tokens; expires_in like '30d', '12h', '15m' or seconds."""

    name: str = Field("cli", min_length=1, max_length=64)
    expires_in: Duration | None = Field(default=None, description="none: never expires")
    scope: Literal["read", "write", "admin"] = "write"


class TokenInfo(BaseModel):
    """A token as listed: never the token itself."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    scope: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenInfo):
    """A new API token; `token` is shown only in this response."""

    token: str


class ShareCreate(Body):
    """Body of POST /api/v1/workspaces/{name}/shares."""

    user: UserName


class Share(BaseModel):
    """Someone a workspace is shared with."""

    user: str
    created_at: datetime


class AuditEntry(BaseModel):
    """One line of the audit log."""

    model_config = ConfigDict(from_attributes=True)

    at: datetime
    actor: str | None
    action: str
    target: str | None
    success: bool
    address: str | None
    detail: dict[str, Any] | None


class WorkspaceCreate(Body):
    """Body of POST /api/v1/workspaces."""

    name: WorkspaceName
    template: str | None = None
    extension_groups: list[str] = Field(default_factory=list)
    git_url: str | None = None
    start: bool = True
    idle_timeout_s: Seconds | None = Field(
        default=None, description="Stop it after this many seconds without use (0: never; none: the manager's default)."
    )
    size: str | None = Field(
        default=None, description="A size preset (GET /api/v1/sizes); none: the manager's default_size."
    )


class WorkspaceUpdate(Body):
    """Body of PATCH /api/v1/workspaces/{name}: only the fields given change."""

    idle_timeout_s: Seconds | None = Field(
        default=None, description="Seconds without use before it is stopped; 0: never; null: the manager's default."
    )
    size: str | None = Field(
        default=None,
        description="A size preset; only while the workspace is stopped (or failed); null: the manager's default_size.",
    )
    schedule: Schedule | None = Field(
        default=None, description="When it starts and stops by itself, in its owner's time zone; null: never."
    )


class SizeInfo(BaseModel):
    """A size preset a workspace can have."""

    name: str
    memory_mb: int | None
    cpus: float | None
    disk_mb: int | None
    pids_max: int
    description: str
    default: bool
    cost_per_hour: float | None = None  # what a running hour costs, for usage estimates (None: not set)


class QuotaUpdate(Body):
    """Body of PUT /api/v1/users/{name}/quota: the user's own limits; null: the manager's default."""

    max_workspaces: Count | None = None
    max_running: Count | None = None
    max_disk_mb: Megabytes | None = None


class QuotaInfo(BaseModel):
    """A user's limits: their own (null where the default applies), those in force, and what they use."""

    own: QuotaUpdate
    effective: QuotaUpdate
    workspaces: int
    running: int
    disk_mb: float


@dataclass(frozen=True)
class Template:
    """A template card: a git URL to clone and extension groups to install (or `empty`)."""

    # A plain dataclass, the one shape of a template: provisioning finds them (provision.templates), the API shows them.
    name: str
    description: str
    tab: str
    extension_groups: list[str]
    git_url: str | None
    thumbnail_url: str | None
    icon_links: Any = None


class BulkCreate(Body):
    """Body of POST /api/v1/workspaces/bulk: one workspace per user (a workshop)."""

    users: list[UserName] = Field(min_length=1, max_length=1000)
    name: WorkspaceName
    template: str | None = None
    git_url: str | None = None
    extension_groups: list[str] = Field(default_factory=list)
    start: bool = True
    size: str | None = None


class BulkDelete(Body):
    """Body of POST /api/v1/workspaces/bulk/delete."""

    users: list[UserName] = Field(min_length=1, max_length=1000)
    name: WorkspaceName
    keep_files: bool = False


class BulkOutcome(BaseModel):
    """One user's result: their workspace, or why there is none."""

    user: str
    workspace: Workspace | None = None
    error: str | None = None


class SecretPut(Body):
    """Body of PUT /api/v1/secrets/{name}."""

    value: str = Field(max_length=65536, repr=False)
    file: str | None = Field(
        None,
        description="Write the value to this path in each workspace's home (mode 0600) instead of a variable.",
        # usersecrets.check_file in the schema's words: relative, inside home, no backslash or NUL.
        json_schema_extra={"pattern": r"^(?!/)(?!(\./*)+$)(?!(.*/)?\.\.(/|$))[^\\\x00]{1,255}$"},
    )


class SecretInfo(BaseModel):
    """A secret as listed: never its value."""

    name: str
    file: str | None
    created_at: datetime
    updated_at: datetime


class ExtensionGroupsAdd(Body):
    """Body of POST /api/v1/workspaces/{name}/extension-groups."""

    groups: list[str] = Field(min_length=1)


class ExtensionOutcome(BaseModel):
    """What became of one extension: installed (detail: its version) or not (detail: why)."""

    id: str
    installed: bool
    detail: str


class ExtensionGroupsAdded(BaseModel):
    """The workspace after adding groups, and each extension's outcome."""

    workspace: Workspace
    extensions: list[ExtensionOutcome]


class Progress(BaseModel):
    """Where a workspace's provisioning is: the step, and how far into it (0/0 when it cannot tell)."""

    step: str
    current: int
    total: int


class DevContainerInfo(BaseModel):
    """What the workspace's devcontainer.json asked for that devyard could not do."""

    path: str = Field(description="Where it is in the workspace's files")
    image: str | None = Field(description="The image it names")
    image_used: bool = Field(description="Whether the workspace runs in its image, named or built (kubernetes only)")
    build: str | None = Field(default=None, description="The Dockerfile its `build` names, in the workspace's files")
    built_image: str | None = Field(
        default=None,
        description="The image built from it for this workspace, by digest (kubernetes.devcontainer_build)",
    )
    unsupported: list[str] = Field(description="Its keys devyard does not support, left out")


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
    progress: Progress | None = None  # while provisioning
    idle_timeout_s: int | None = None  # its own idle timeout; None: the manager's default
    size: str | None = None  # its size preset (the manager's default_size when it chose none); None: no limits
    reason: str | None = None  # while failed: why, as a code (out_of_memory, crash_loop, engine_start_failed, ...)
    devcontainer: DevContainerInfo | None = None  # from its files' devcontainer.json, when they hold one
    last_start: Because | None = None  # why it last started
    last_stop: Because | None = None  # why it last stopped (or failed)
    stops_due: list[DueStop] = Field(default=[], description="While running: why it has not stopped, soonest first")
    schedule: Schedule | None = None
    dormant_at: datetime | None = Field(default=None, description="When it was marked dormant (stopped for disuse)")
    delete_at: datetime | None = Field(
        default=None, description="While dormant: when it will be deleted, unless opened"
    )
    ssh_login: str | None = Field(
        default=None,
        description="The account SSH sessions log in as (`devyard ssh`); null where workspaces serve no SSH",
    )


PortVisibility = Literal["private", "shared", "public"]


class WorkspacePort(BaseModel):
    """A forwarded port of a workspace: who may open it at its own origin, and where."""

    port: int = Field(ge=1, le=65535)
    visibility: PortVisibility = Field(
        description="private: the owner; shared: the owner and the users the workspace is shared with; public: anyone with the link"
    )
    listening: bool = Field(
        description="Whether a process of the workspace listens on it now (read from outside the engine)"
    )
    label: str | None = Field(
        default=None, description="Its name in the workspace's devcontainer.json (portsAttributes)"
    )
    url: str = Field(description="Where it opens")


class PortChange(Body):
    """A new visibility for a forwarded port."""

    model_config = ConfigDict(extra="forbid")

    visibility: PortVisibility


@dataclass(frozen=True, slots=True)
class Stats:
    """Resource use of a workspace's engine and folder."""

    # A plain dataclass, the one shape of these figures: backends measure them (Backend.stats), the API shows them.
    cpu_percent: float
    memory_bytes: int
    uptime_s: float
    disk_bytes: int
    cpu_seconds: float = 0.0  # CPU time of the engine's processes since it started (0: the backend cannot tell)


class LogLines(BaseModel):
    """The tail of a workspace's engine log."""

    lines: list[str]


ExtensionGroupsAdded.model_rebuild()  # they name Workspace, defined after them
BulkOutcome.model_rebuild()


class ReloadResult(BaseModel):
    """What `POST /api/v1/reload` applied."""

    applied: list[str] = Field(description="The settings that changed and now apply (empty: the file is as before).")
    ignored: list[str] = Field(description="The config file's keys devyard has no use for.")


class ErrorDetail(BaseModel):
    """What went wrong."""

    code: str = Field(description="What kind of error, in snake_case (e.g. workspace_not_found)", examples=["invalid"])
    message: str = Field(description="A sentence saying what is wrong and, where it helps, what to do")


class ErrorBody(BaseModel):
    """The body of every error answer."""

    error: ErrorDetail
