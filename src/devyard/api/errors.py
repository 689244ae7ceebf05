"""One place that turns errors into responses: JSON ({"error": {"code", "message"}}) for the API, a page for the browser.

A page request (anything outside /api/ that accepts HTML) never gets a raw JSON body: without a
session it goes to the login page, and any other error is shown as a readable page.

A full disk is translated here too: an OSError ENOSPC or SQLite's "database or disk is full" from
any route becomes 507 `storage_full` with a sentence saying so (SQLite has rolled the write back,
so the database is as it was), not a 500 with a traceback.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException

from devyard.errors import DevyardError, StorageFull, is_storage_full
from devyard.web.render import render

log = logging.getLogger("devyard")
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden"}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON error body every devyard endpoint uses."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _describe(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts) or "invalid request"


_TITLES = {401: "Please log in", 403: "Not allowed", 404: "Not found", 409: "Conflict", 422: "That did not work", 507: "The disk is full"}


def _is_page(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


def _respond(request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    if not _is_page(request):
        return error_response(status, code, message, headers)
    if status == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
    page = render("error.html", me=getattr(request.state, "identity", None), title=_TITLES.get(status, "Something went wrong"),
                  message=message[:1].upper() + message[1:] + ("" if message.endswith(".") else "."))
    return HTMLResponse(page, status_code=status, headers=headers)


def install_handlers(app: FastAPI) -> None:
    """Register the handlers on `app`."""

    @app.exception_handler(DevyardError)
    async def _devyard(request: Request, exc: DevyardError) -> Response:
        return _respond(request, exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        return _respond(request, 422, "invalid", _describe(exc))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = "no such page" if _is_page(request) else "no such endpoint"
        return _respond(request, exc.status_code, code, message, getattr(exc, "headers", None))

    @app.exception_handler(OSError)
    async def _os(request: Request, exc: OSError) -> Response:
        return _storage_full(request, exc, "writing devyard's data")

    @app.exception_handler(OperationalError)
    async def _database(request: Request, exc: OperationalError) -> Response:
        return _storage_full(request, exc, "writing to the database")


def _storage_full(request: Request, exc: Exception, doing: str) -> Response:
    """507 for a full disk; any other error goes on to the server's 500 handling, unchanged."""
    if not is_storage_full(exc):
        raise exc
    log.warning("%s %s: the disk is full: %s", request.method, request.url.path, exc)
    full = StorageFull.during(doing)
    return _respond(request, full.status, full.code, full.message)
