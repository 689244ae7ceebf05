"""Every exception devyard raises on purpose, in one tree.

    DevyardError                 code, status, message
    ├── Invalid          422     bad input (names, fields, values), e.g. ArchiveRefused
    ├── Unauthorized     401     no or bad credentials, e.g. LoginRequired (a page: go to /login)
    ├── Forbidden        403     authenticated but not allowed, e.g. QuotaExceeded
    ├── NotFound         404     e.g. WorkspaceNotFound, UserNotFound
    ├── Conflict         409     e.g. WorkspaceExists, UserExists, NotOnThisBackend
    ├── Malformed        400     a body that cannot be parsed
    ├── TooLarge         413     an upload over its limit
    ├── Throttled        429     too many attempts
    ├── BackendError     500     an engine could not be started, stopped or read
    ├── EngineError      500     the engine is not installed or failed to install
    ├── ProvisionError   500     a workspace's files could not be made
    ├── StoreError       500     the database could not be migrated
    ├── StorageFull      507     the disk holding the data dir (or the database on it) is full
    └── ApiError         any     the CLI's view of an error answer from the manager (status and code as sent)

    EngineUnreachable            the gateway could not reach an engine (the browser gets 502)
    StreamCut                    an engine's answer ended in the middle of its body

The last two never leave the gateway: they are not DevyardErrors because no handler renders
them (the gateway answers 502, or cuts the response short once its head is sent).

One handler in api/errors.py renders them as {"error": {"code", "message"}} (`error_body`, the one
writer of that body, which the gateway and its WebSocket tunnel use too); the CLI prints the
message on one line and exits non-zero. `is_storage_full` recognises a full disk in the foreign
errors it surfaces as (OSError, SQLite's, a tool's output), so the boundary that translates them
can say so plainly instead of passing on a traceback.

The bottom layer: nothing here imports from devyard, so every module may import this one.
"""

from __future__ import annotations

import errno
import json
import os


class DevyardError(Exception):
    """Base of every devyard error; carries an HTTP status and a snake_case code."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = headers or {}


class Invalid(DevyardError):
    status = 422
    code = "invalid"


class ArchiveRefused(Invalid):
    """The archive holds something devyard will not unpack (provision/archive.py)."""

    code = "archive_refused"


class Unauthorized(DevyardError):
    status = 401
    code = "unauthorized"


class LoginRequired(Unauthorized):
    """A page was asked for without a session: the error handler sends the browser to /login."""

    code = "login_required"


class Forbidden(DevyardError):
    status = 403
    code = "forbidden"


class QuotaExceeded(Forbidden):
    """A per-user limit would be passed (workspaces/quotas.py)."""

    code = "quota_exceeded"


class NotFound(DevyardError):
    status = 404
    code = "not_found"


class WorkspaceNotFound(NotFound):
    code = "workspace_not_found"


class UserNotFound(NotFound):
    code = "user_not_found"


class Conflict(DevyardError):
    status = 409
    code = "conflict"


class RestartNeeded(Conflict):
    """A reload changed settings that are only read at start: nothing was applied."""

    code = "restart_needed"


class WorkspaceExists(Conflict):
    code = "workspace_exists"


class UserExists(Conflict):
    code = "user_exists"


class NotOnThisBackend(Conflict):
    """What the configured backend cannot do (a backup of a workspace whose files are in a cluster volume)."""

    code = "not_on_this_backend"


class Malformed(DevyardError):
    """The body is not what it claims to be (not JSON, a broken multipart form)."""

    status = 400
    code = "malformed_body"


class TooLarge(DevyardError):
    status = 413
    code = "upload_too_large"


class Throttled(DevyardError):
    status = 429
    code = "too_many_attempts"


class BackendError(DevyardError):
    status = 500
    code = "backend_error"


class EngineError(DevyardError):
    status = 500
    code = "engine_error"


class ProvisionError(DevyardError):
    status = 500
    code = "provision_error"


class StoreError(DevyardError):
    status = 500
    code = "store_error"


class StorageFull(DevyardError):
    """No space left on the disk that holds the data dir: nothing was half-written, freeing space and retrying works."""

    status = 507
    code = "storage_full"

    @classmethod
    def during(cls, doing: str, then: str = "try again") -> StorageFull:
        """The error for a full disk met while `doing`, telling what to do `then` once space is freed."""
        return cls(f"no space left on device while {doing}: free some space, then {then}")


class ApiError(DevyardError):
    """An error answer from the manager, carrying its status and code (the CLI's client)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, code=code)
        self.status = status


class EngineUnreachable(Exception):
    """The engine did not take the request or answer it."""


class StreamCut(Exception):
    """The engine's connection ended in the middle of an answer's body."""


def error_body(code: str, message: str) -> bytes:
    """The JSON body of every error answer: {"error": {"code": ..., "message": ...}}."""
    # As Starlette's JSONResponse renders: compact, UTF-8 (the API's errors were its bytes before).
    body = {"error": {"code": code, "message": message}}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# What a full disk looks like from here: the OS's errno, SQLite's result code, and the text tools print.
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_SQLITE_FULL = 13
FULL_DISK_TEXTS = (os.strerror(errno.ENOSPC), "database or disk is full")


def is_storage_full(exc: BaseException | None) -> bool:
    """Whether `exc`, or an error it was raised from, means the disk is full.

    Recognised: OSError ENOSPC or EDQUOT, SQLite's SQLITE_FULL (also wrapped by SQLAlchemy, whose
    `orig` is the driver's error), StorageFull itself, and a ProvisionError quoting a tool (git)
    that printed "No space left on device".
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, StorageFull):
            return True
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return True
        if getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL:
            return True
        # Text only where it is a tool's or the driver's own report, never text a user chose (a name, a path).
        if isinstance(exc, ProvisionError) or type(exc).__module__ == "sqlite3":
            if any(text in str(exc) for text in FULL_DISK_TEXTS):
                return True
        orig = getattr(exc, "orig", None)
        if isinstance(orig, BaseException) and orig is not exc and is_storage_full(orig):
            return True
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return False
