"""The tables devyard keeps; every change to them comes with a migration in migrations/versions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC and always hands back aware datetimes (SQLite forgets the zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.astimezone(UTC).replace(tzinfo=None) if value else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=UTC) if value else None


class Base(DeclarativeBase):
    pass


class UserRow(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("oidc_subject", name="uq_users_oidc_subject"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # "<issuer> <sub>" of a user who signs in with OIDC: the link is by subject, never by name.
    oidc_subject: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Quotas set for this user by an admin; None: the manager's default (max_*_per_user).
    max_workspaces: Mapped[int | None] = mapped_column(Integer)
    max_running: Mapped[int | None] = mapped_column(Integer)
    max_disk_mb: Mapped[int | None] = mapped_column(Integer)
    timezone: Mapped[str | None] = mapped_column(String(64))  # IANA name for their schedules; None: default_timezone
    # The names of the groups they are in, kept current by auth/groups.py: what each means is read from the
    # settings (`groups`) at use, so a reload changes it at once.
    groups: Mapped[list[str]] = mapped_column(JSON, default=list)


class SessionRow(Base):
    """A browser login; only the SHA-256 of the cookie value is stored."""

    __tablename__ = "sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TokenRow(Base):
    """An API token; only its SHA-256 is stored, the token itself is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(16), default="write", server_default="write")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WorkspaceRow(Base):
    __tablename__ = "workspaces"
    __table_args__ = (UniqueConstraint("owner_id", "name", name="uq_workspace_owner_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Short random id: names sockets and runtime records without leaking owner or name.
    uid: Mapped[str] = mapped_column(String(16), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    template: Mapped[str | None] = mapped_column(String(255))
    extension_groups: Mapped[list[str]] = mapped_column(JSON, default=list)
    git_url: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_activity_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    provisioned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    idle_timeout_s: Mapped[int | None] = mapped_column(Integer)  # None: the manager's idle_timeout_s; 0: never
    size: Mapped[str | None] = mapped_column(String(32))  # a preset of `sizes`; None: no limits
    reason: Mapped[str | None] = mapped_column(String(32))  # why it failed, as a code (out_of_memory, crash_loop, ...)
    address: Mapped[str | None] = mapped_column(
        String(255)
    )  # where its engine answers while running: a socket path or host:port
    busy_replica: Mapped[str | None] = mapped_column(
        String(128)
    )  # the manager replica in the middle of changing it (provisioning, starting, ...)
    # What provisioning took from the files' devcontainer.json (provision/devcontainer.py); None: none.
    devcontainer: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Why it last started and stopped (reasons.Because as JSON); its working-hours schedule (schedules.Schedule).
    last_start: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    last_stop: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    schedule: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    dormant_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # marked dormant (stopped, due for deletion)

    owner: Mapped[UserRow] = relationship(lazy="joined")


class ShareRow(Base):
    """A workspace its owner shared with another user, who may then open it."""

    __tablename__ = "shares"

    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PortRow(Base):
    """A forwarded port of a workspace whose owner chose who may open it at its own origin (default private)."""

    __tablename__ = "workspace_ports"

    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    port: Mapped[int] = mapped_column(Integer, primary_key=True)
    visibility: Mapped[str] = mapped_column(String(16), default="private")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class HandoffRow(Base):
    """A one-time code that carries a dashboard login to one workspace's origin (only its SHA-256 is kept)."""

    __tablename__ = "handoff_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_uid: Mapped[str] = mapped_column(String(32))
    port: Mapped[int | None] = mapped_column(Integer)
    session_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class AuditRow(Base):
    """One security-relevant event: who did what to what, from where, and whether it worked."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str | None] = mapped_column(String(255))
    success: Mapped[bool] = mapped_column(Boolean, default=True)
    address: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)


class SecretRow(Base):
    """A user's secret: encrypted value, injected into their engines as an environment variable or a file."""

    __tablename__ = "secrets"
    __table_args__ = (UniqueConstraint("user_id", "name", name="uq_secret_user_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    file: Mapped[str | None] = mapped_column(String(255))  # a path in the workspace's home, instead of a variable
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UsageRow(Base):
    """What one workspace used during one span of time: 5 minutes while recent, an hour once older (workspaces/usage.py).

    Keyed by the workspace's uid and named by owner and name as they were, so a deleted
    workspace's use still counts in reports.
    """

    __tablename__ = "usage"
    __table_args__ = (UniqueConstraint("uid", "start", "span_s", name="uq_usage_span"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(64))
    size: Mapped[str | None] = mapped_column(String(32))
    start: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    span_s: Mapped[int] = mapped_column(Integer)
    running_s: Mapped[float] = mapped_column(Float, default=0.0)
    cpu_s: Mapped[float] = mapped_column(Float, default=0.0)
    memory_byte_s: Mapped[float] = mapped_column(
        Float, default=0.0
    )  # resident bytes × seconds: an average once divided
    memory_peak: Mapped[int] = mapped_column(BigInteger, default=0)
    disk_bytes: Mapped[int] = mapped_column(BigInteger, default=0)  # the last measured in the span
    starts: Mapped[int] = mapped_column(Integer, default=0)


class GroupRow(Base):
    """A group of users: local (managed here) or from the identity provider (its members come with each sign-in)."""

    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MemberRow(Base):
    """A user in a group, and where that came from: `local` (an admin) or `oidc` (the last sign-in's claim)."""

    __tablename__ = "group_members"

    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    source: Mapped[str] = mapped_column(String(8), default="local")
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class GroupShareRow(Base):
    """A workspace its owner shared with a group: every member may open it, as members come and go."""

    __tablename__ = "group_shares"

    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
