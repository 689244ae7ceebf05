"""Logging in and out with the password form; the static files."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from devyard.api.auth import refuse_cross_site_login, set_session_cookie
from devyard.api.deps import authenticator, client_address
from devyard.auth.identity import SESSION_COOKIE
from devyard.errors import DevyardError
from devyard.web.render import render

router = APIRouter(include_in_schema=False)
static = StaticFiles(directory=Path(__file__).parent / "static")


def safe_next(target: str | None) -> str:
    """A local path to go to after login; anything else (other hosts, //x) becomes '/'."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str = "/") -> HTMLResponse:
    """The login form."""
    return HTMLResponse(
        render("login.html", next=safe_next(next), error=None, username=None, sso=request.app.state.oidc is not None)
    )


@router.post("/login", response_model=None)
async def login_form(
    request: Request, username: str = Form(""), password: str = Form(""), next: str = Form("/")
) -> Response:
    """Check the form (sent from this site); on success set the cookie and go on to `next`."""
    try:
        refuse_cross_site_login(request)
        cookie, _ = await authenticator(request).login(username, password, client_address(request))
    except DevyardError as exc:
        page = render(
            "login.html",
            next=safe_next(next),
            error=exc.message,
            username=username,
            sso=request.app.state.oidc is not None,
        )
        return HTMLResponse(page, status_code=exc.status, headers=exc.headers)
    response = RedirectResponse(safe_next(next), status_code=303)
    set_session_cookie(request, response, cookie)
    return response


@router.post("/logout", response_model=None)
async def logout_form(request: Request) -> Response:
    """End the session and go back to the login page."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        await authenticator(request).logout(cookie)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
