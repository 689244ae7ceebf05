"""POST /api/v1/workspaces/upload: a workspace from an uploaded .zip, .tar or .tar.gz.

The multipart body is parsed as it arrives (python-multipart's push parser) and the archive part
written straight to disk, counting bytes: an upload over `ui.workspace.max_upload_size_mb` is cut
off with 413 at that point, not after it was all received, and nothing is buffered whole in
memory (Starlette's form parser would spool the entire file first). The archive is unpacked and
checked before the workspace exists, so every refusal is an immediate 4xx.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
from typing import Any, BinaryIO

from fastapi import APIRouter, Request
from pydantic import ValidationError
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from devyard.api.deps import CurrentUser, Workspaces, record
from devyard.errors import Invalid, Malformed, TooLarge
from devyard.fields import WORKSPACE_NAME
from devyard.models import Workspace, WorkspaceCreate
from devyard.provision import archive

router = APIRouter(prefix="/workspaces", tags=["workspaces"])
MAX_FIELD = 64 * 1024


@router.post(
    "/upload",
    response_model=Workspace,
    status_code=201,
    summary="Create a workspace from an uploaded archive",
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["name", "archive"],
                        "properties": {
                            "name": {"type": "string", "pattern": WORKSPACE_NAME.pattern, "maxLength": 39},
                            "archive": {"type": "string", "contentMediaType": "application/octet-stream"},
                            "extension_groups": {"type": "array", "items": {"type": "string"}},
                            "start": {"type": "boolean", "default": True},
                            "size": {"type": "string"},
                        },
                    }
                }
            }
        }
    },
)
async def upload_workspace(request: Request, ident: CurrentUser, service: Workspaces) -> Workspace:
    """201 with the new workspace, whose files are the archive's; 413 over the size limit, 422 for a refused archive."""
    settings = service.settings
    limit = settings.ui.workspace.max_upload_size_mb << 20
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + MAX_FIELD:
        raise TooLarge(
            f"the upload is {int(declared) >> 20} MB; the limit is {settings.ui.workspace.max_upload_size_mb} MB"
        )
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise Invalid("send the archive as multipart/form-data with fields name and archive", code="multipart_required")
    settings.uploads_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    token = secrets.token_hex(8)
    received = settings.uploads_dir / f".received-{token}"
    unpacked = settings.uploads_dir / f".unpacked-{token}"
    try:
        with received.open("wb") as sink:
            form = _Form(boundary, sink, limit)
            try:
                async for chunk in request.stream():
                    form.feed(chunk)
                form.finish()
            except MultipartParseError as exc:
                raise Malformed(f"the multipart form is malformed: {exc}") from exc
        req = form.workspace_request()
        limits = archive.Limits(
            settings.archive_max_entries,
            settings.archive_max_expanded_mb << 20,
            settings.ui.workspace.archive_kinds(),
            "ui.workspace.supported_archive_types",
        )
        files = await asyncio.to_thread(archive.extract, received, unpacked, limits)
        received.unlink()
        row = await service.create(ident, req, unpacked=unpacked)
    finally:
        received.unlink(missing_ok=True)
        shutil.rmtree(unpacked, ignore_errors=True)
    await record(request, "workspace.create", f"{ident.name}/{req.name}", detail={"source": "archive", "files": files})
    return service.to_model(row)


class _Form:
    """The fields of a multipart body, with the `archive` part written to `sink` up to `limit` bytes."""

    def __init__(self, boundary: bytes, sink: BinaryIO, limit: int) -> None:
        self.sink, self.limit = sink, limit
        self.size = 0
        self.fields: dict[str, list[str]] = {}
        self.has_archive = False
        self._name: str | None = None
        self._is_file = False
        self._value = bytearray()
        self._header = (bytearray(), bytearray())
        self._headers: dict[bytes, bytes] = {}
        callbacks: Any = {
            "on_part_begin": self._begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_done,
            "on_part_data": self._data,
            "on_part_end": self._end,
        }
        self.parser = MultipartParser(boundary, callbacks)

    def feed(self, chunk: bytes) -> None:
        """Parse the next piece of the body."""
        self.parser.write(chunk)

    def finish(self) -> None:
        """The body is complete."""
        self.parser.finalize()

    def workspace_request(self) -> WorkspaceCreate:
        """The create request the fields describe; Invalid naming what is wrong."""
        if not self.has_archive:
            raise Invalid("the upload has no `archive` file part", code="archive_missing")
        name = self.fields.get("name", [""])[0]
        groups = [g for value in self.fields.get("extension_groups", []) for g in value.split(",") if g.strip()]
        start = self.fields.get("start", ["true"])[0].lower() not in ("0", "false", "no", "off")
        size = self.fields.get("size", [""])[0].strip() or None
        try:
            return WorkspaceCreate(name=name, extension_groups=[g.strip() for g in groups], start=start, size=size)
        except ValidationError as exc:
            problem = exc.errors()[0]
            raise Invalid(
                f"{'.'.join(str(p) for p in problem['loc'])}: {problem['msg']}", code="invalid_field"
            ) from exc

    # -- parser callbacks -------------------------------------------------------------------
    def _begin(self) -> None:
        self._headers, self._value, self._name, self._is_file = {}, bytearray(), None, False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header[0].extend(data[start:end])

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._header[1].extend(data[start:end])

    def _header_end(self) -> None:
        self._headers[bytes(self._header[0]).lower()] = bytes(self._header[1])
        self._header = (bytearray(), bytearray())

    def _headers_done(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        self._is_file = self._name == "archive"
        if self._is_file:
            if self.has_archive:
                raise Invalid("send one archive per upload", code="archive_twice")
            self.has_archive = True

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self.size += end - start
            if self.size > self.limit:
                raise TooLarge(
                    f"the archive is larger than the limit of {self.limit >> 20} MB (ui.workspace.max_upload_size_mb)"
                )
            self.sink.write(data[start:end])
        else:
            self._value.extend(data[start:end])
            if len(self._value) > MAX_FIELD:
                raise Invalid(f"form field {self._name!r} is too long", code="field_too_long")

    def _end(self) -> None:
        if self._name and not self._is_file:
            self.fields.setdefault(self._name, []).append(self._value.decode("utf-8", "replace"))
