"""One place that turns errors into responses: JSON ({"error": {"code", "message"}}) for the API, a page for the browser.

A page request (anything outside /api/ that accepts HTML) never gets a raw JSON body: without a
session it goes to the login page, and any other error is shown as a readable page.

The gateway (a plain ASGI app outside FastAPI) answers the same way with the helpers here:
`error_response` for the JSON body (devyard.errors.error_body), `wants_html` for whether a browser
asks for a page, and `login_redirect` for the trip to /login (303 See Other everywhere: after
logging in the browser GETs what it asked for, whatever the method was).

A full disk is translated here too: an OSError ENOSPC or SQLite's "database or disk is full" from
any route becomes 507 `storage_full` with a sentence saying so (SQLite has rolled the write back,
so the database is as it was), not a 500 with a traceback.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import Scope

from devyard.errors import DevyardError, StorageFull, error_body, is_storage_full
from devyard.web.render import render

log = logging.getLogger("devyard")
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden"}
LOGIN_REDIRECT = 303  # See Other: the login page is fetched with GET, whatever the refused request's method


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """The JSON error answer every devyard endpoint and the gateway use."""
    return Response(error_body(code, message), status_code=status, headers=headers, media_type="application/json")


def wants_html(scope: Scope) -> bool:
    """Whether the request is a browser asking for a page (an HTTP request that accepts HTML)."""
    if scope["type"] != "http":
        return False
    # The first Accept header, as the gateway has always read it (access.header).
    accept = next((value for name, value in scope["headers"] if name == b"accept"), b"")
    return b"text/html" in accept


def is_page(scope: Scope) -> bool:
    """Whether a request to the manager's own routes wants a page: /api/ answers JSON even to a browser."""
    return wants_html(scope) and not scope["path"].startswith("/api/")


def login_location(scope: Scope) -> str:
    """Where an unauthenticated browser is sent: the login page, coming back here after."""
    query = scope.get("query_string", b"").decode("latin-1")
    back = scope["path"] + (f"?{query}" if query else "")  # the full path: ASGI puts any root_path in it already
    return "/login?next=" + quote(back, safe="/")


def login_redirect(scope: Scope, location: str | None = None) -> Response:
    """The redirect that sends a browser to sign in: to /login, or to `location` (a workspace origin's trip to the dashboard)."""
    return RedirectResponse(location or login_location(scope), status_code=LOGIN_REDIRECT)


def _describe(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts) or "invalid request"


_TITLES = {
    401: "Please log in",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    422: "That did not work",
    507: "The disk is full",
}


def _respond(request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    if not is_page(request.scope):
        return error_response(status, code, message, headers)
    if status == 401:
        return login_redirect(request.scope)
    page = render(
        "error.html",
        me=getattr(request.state, "identity", None),
        title=_TITLES.get(status, "Something went wrong"),
        message=message[:1].upper() + message[1:] + ("" if message.endswith(".") else "."),
    )
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
        headers = getattr(exc, "headers", None)
        if exc.status_code == 404 and message == "Not Found":
            message = "no such page" if is_page(request.scope) else "no such endpoint"
        elif exc.status_code == 405:
            allowed = allowed_methods(request)
            message = (
                f"{request.method} is not allowed here; {', '.join(allowed)} {'is' if len(allowed) == 1 else 'are'}"
            )
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
        elif exc.status_code == 400 and message == "There was an error parsing the body":
            code, message = "malformed_body", "the request body is not valid JSON"
        return _respond(request, exc.status_code, code, message, headers)

    @app.exception_handler(OSError)
    async def _os(request: Request, exc: OSError) -> Response:
        return _storage_full(request, exc, "writing devyard's data")

    @app.exception_handler(OperationalError)
    async def _database(request: Request, exc: OperationalError) -> Response:
        return _storage_full(request, exc, "writing to the database")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route answers at this path (Starlette's own 405 names only the first route's)."""
    found: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"}) if hasattr(route, "methods") else (None, None)
        if match is not None and match != Match.NONE and route.methods:
            found |= route.methods
    return sorted(found)


def _storage_full(request: Request, exc: Exception, doing: str) -> Response:
    """507 for a full disk; any other error goes on to the server's 500 handling, unchanged."""
    if not is_storage_full(exc):
        raise exc
    log.warning("%s %s: the disk is full: %s", request.method, request.url.path, exc)
    full = StorageFull.during(doing)
    return _respond(request, full.status, full.code, full.message)
