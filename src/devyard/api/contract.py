"""The OpenAPI description made the truth about every answer, not only the happy one.

FastAPI describes each route's success and a 422 of its own validation shape; devyard's errors are
one shape for every status (`{"error": {"code", "message"}}`, errors.error_body). This adds, to
every operation, each error status it can answer with that shape, by what the operation is: a
route behind a login can answer 401 and 403; one with a body, 400 (not JSON) and 422; one naming a
resource in its path, 404; one that changes state, 409 (the resource's state forbids it, or it is
busy) and 507 (the disk is full); an upload, 413; the login, 429. Written by hand, as FastAPI has
no hook that adds responses by a rule, and listing them on each of forty-odd routes would drift.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from devyard.config import Settings
from devyard.models import ErrorBody
from devyard.provision import templates
from devyard.provision.git import MAX_URL, url_pattern

ERROR_SCHEMA = "ErrorBody"
DESCRIPTIONS = {
    400: "The body is not well-formed (not JSON, or not the multipart form asked for)",
    401: "No credentials, or they are not valid (expired, revoked, wrong)",
    403: "Authenticated, but not allowed (another user's workspace, an admin route, a quota)",
    404: "What the path names does not exist, or is not visible to the caller",
    409: "The current state forbids it (a workspace busy or in the wrong state, a name taken)",
    413: "The upload is over its size limit",
    422: "A value is refused; the message names it",
    429: "Too many attempts; try again later (Retry-After)",
    507: "The disk is full; nothing was changed",
}
PUBLIC = {("/healthz", "get"), ("/api/v1/auth/login", "post")}  # answered without credentials
UPLOADS = {"/api/v1/workspaces/upload", "/api/v1/workspaces/restore"}
CHANGES = {"post", "put", "patch", "delete"}


def body_of(media_type: str, description: str, schema: dict[str, Any] | None = None) -> dict[int | str, Any]:
    """A route's 200 answer when it is not JSON: a stream of events, a download, text."""
    return {200: {"description": description, "content": {media_type: {"schema": schema or {"type": "string"}}}}}


# Each event of a stream, as a client parses it: its name, and its data (JSON for /events, a log line for logs).
SSE_EVENT = {
    "type": "object",
    "properties": {"event": {"type": "string"}, "data": {"type": "string"}, "id": {"type": "string"}},
    "required": ["data"],
}
EVENT_STREAM = body_of("text/event-stream", "Server-sent events, until the client goes away", SSE_EVENT)
GZIP = body_of("application/gzip", "A .tar.gz archive", {"type": "string", "format": "binary"})
# A request body of raw bytes: a backup as it was downloaded (the content is checked, not its type).
BINARY_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            media: {"schema": {"type": "string", "format": "binary"}}
            for media in ("application/gzip", "application/octet-stream")
        },
    }
}


def errors_of(path: str, method: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses an operation can answer with, by what it is."""
    if path == "/healthz":
        return set()
    found = {403} if (path, method) in PUBLIC else {401, 403}
    if path == "/api/v1/auth/login":
        found |= {401, 429}
    if "requestBody" in operation:
        found |= {400, 422}
    if operation.get("parameters"):
        found.add(422)
    if "{" in path:
        found.add(404)
    if method in CHANGES:
        found |= {409, 507}
    if path in UPLOADS:
        found.add(413)
    return found


def offer_choices(schema: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """`schema` naming the values this manager's configuration takes: sizes, templates, extension groups.

    They change with devyard.yaml (a reload makes the schema again: `forget`).
    """
    sizes, groups = list(settings.sizes), list(settings.extension_groups)
    names = [t.name for t in templates(settings)]
    components = schema.get("components", {}).get("schemas", {})
    upload = schema["paths"].get("/api/v1/workspaces/upload", {}).get("post", {})
    form = upload.get("requestBody", {}).get("content", {}).get("multipart/form-data", {}).get("schema", {})
    for properties in [components.get(m, {}).get("properties", {}) for m in CHOOSING] + [form.get("properties", {})]:
        for name, values in (("size", sizes), ("template", names)):
            if name in properties:
                _one_of(properties[name], values)
        for name in ("extension_groups", "groups"):
            if name in properties:
                _one_of(properties[name].setdefault("items", {}), groups)
        if "git_url" in properties:
            for branch in properties["git_url"].get("anyOf", [properties["git_url"]]):
                if branch.get("type") == "string":
                    branch.update(pattern=url_pattern(settings.git_file_roots), maxLength=MAX_URL)
    return schema


# The request bodies that name sizes, templates or extension groups.
CHOOSING = ("WorkspaceCreate", "WorkspaceUpdate", "BulkCreate", "ExtensionGroupsAdd")


def _one_of(prop: dict[str, Any], values: list[str]) -> None:
    """Make the string in `prop` (or in its `anyOf` with null) one of `values` (none: no string at all)."""
    strings = [branch for branch in prop.get("anyOf", [prop]) if branch.get("type") == "string"]
    for branch in strings:
        if values:
            branch["enum"] = values
        else:
            branch.clear()
            branch["not"] = {}


def describe_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with every operation's error answers, all of the one error shape (FastAPI's 422 shape replaced)."""
    ref = {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components[ERROR_SCHEMA] = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in components[ERROR_SCHEMA].pop("$defs", {}).items():
        components.setdefault(name, sub)
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            answers = operation.setdefault("responses", {})
            for status in sorted(errors_of(path, method, operation)):
                answers[str(status)] = {
                    "description": DESCRIPTIONS[status],
                    "content": {"application/json": {"schema": ref}},
                }
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema


def install(app: FastAPI) -> None:
    """Make `app.openapi()` give the described schema (made once, until `forget`)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            made = get_openapi(title=app.title, version=app.version, routes=app.routes, description=app.description)
            app.openapi_schema = offer_choices(describe_errors(made), app.state.settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def forget(app: FastAPI) -> None:
    """Make the schema again on its next use (a reload changed what it lists: extension groups, sizes)."""
    app.openapi_schema = None
