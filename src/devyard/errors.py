"""Every exception devyard raises on purpose, in one tree.

    DevyardError                 code, status, message
    ├── Invalid          422     bad input (names, fields, values)
    ├── Unauthorized     401     no or bad credentials
    ├── Forbidden        403     authenticated but not allowed
    ├── NotFound         404     e.g. WorkspaceNotFound, UserNotFound
    ├── Conflict         409     e.g. WorkspaceExists, UserExists
    ├── Throttled        429     too many attempts
    ├── BackendError     500     an engine could not be started, stopped or read
    ├── EngineError      500     the engine is not installed or failed to install
    └── ProvisionError   500     a workspace's files could not be made

One handler in api/errors.py renders them as {"error": {"code", "message"}}; the CLI prints
the message on one line and exits non-zero.
"""

from __future__ import annotations


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


class Unauthorized(DevyardError):
    status = 401
    code = "unauthorized"


class Forbidden(DevyardError):
    status = 403
    code = "forbidden"


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


class WorkspaceExists(Conflict):
    code = "workspace_exists"


class UserExists(Conflict):
    code = "user_exists"


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
