"""/api/v1/auth/*, /api/v1/me: logging in and out, who am I, changing my password."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from devyard.api.deps import CurrentUser, authenticator, client_address, record
from devyard.auth.csrf import cross_site
from devyard.auth.identity import SESSION_COOKIE
from devyard.auth.passwords import verify_password_async
from devyard.auth.users import get_user, set_timezone, update_user
from devyard.errors import Forbidden, Unauthorized
from devyard.models import LoginRequest, MeUpdate, PasswordChange, User

router = APIRouter(tags=["auth"])


def set_session_cookie(request: Request, response: Response, cookie: str) -> None:
    """Attach the session cookie: HttpOnly, SameSite=Lax, Secure under TLS."""
    settings = request.app.state.settings
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=settings.session_ttl_s,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies or request.url.scheme == "https",
        path="/",
    )


def refuse_cross_site_login(request: Request) -> None:
    """Forbidden (csrf_refused) when a browser sends a login from another site; without Origin (curl, the CLI) it passes."""
    # Login CSRF: another site could log the victim's browser into the attacker's account, whose
    # workspaces would then receive whatever the victim types or uploads.
    if cross_site(request.headers.get("origin"), request.headers.get("host")):
        raise Forbidden("cross-site login refused: log in from devyard's own login page", code="csrf_refused")


@router.post("/auth/login", response_model=User, summary="Log in with a password; sets the session cookie")
async def login(body: LoginRequest, request: Request, response: Response) -> User:
    """Log in; 401 on a wrong name or password, 403 for a disabled account or from another site, 429 when throttled."""
    refuse_cross_site_login(request)
    cookie, ident = await authenticator(request).login(body.username, body.password, client_address(request))
    set_session_cookie(request, response, cookie)
    return User.model_validate(await get_user(request.app.state.db, ident.name))


@router.post("/auth/logout", status_code=204, summary="End the browser session")
async def logout(request: Request) -> Response:
    """End the session behind the cookie, if any."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        await authenticator(request).logout(cookie)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/me", response_model=User, summary="The authenticated user")
async def me(ident: CurrentUser, request: Request) -> User:
    """Who the credentials belong to."""
    return User.model_validate(await get_user(request.app.state.db, ident.name))


@router.patch("/me", response_model=User, summary="Change your own settings (your time zone)")
async def update_me(body: MeUpdate, ident: CurrentUser, request: Request) -> User:
    """You, as changed; a field sent as null goes back to the manager's default."""
    row = await get_user(request.app.state.db, ident.name)
    if "timezone" in body.model_fields_set:
        row = await set_timezone(request.app.state.db, ident.name, body.timezone)
        await record(request, "user.timezone", ident.name, detail={"timezone": body.timezone})
    return User.model_validate(row)


@router.post("/me/password", status_code=204, summary="Change your password; ends all your sessions")
async def change_password(body: PasswordChange, ident: CurrentUser, request: Request) -> Response:
    """Check the current password, set the new one, end every session (this one gets a new cookie)."""
    if ident.via != "session":
        raise Forbidden("change your password from a logged-in browser session", code="session_required")
    user = await get_user(request.app.state.db, ident.name)
    if not await verify_password_async(user.password_hash, body.current_password):
        await record(request, "user.password", ident.name, success=False)
        raise Unauthorized("the current password is wrong", code="invalid_credentials")
    await update_user(request.app.state.db, ident.name, password=body.new_password)
    auth = authenticator(request)
    await auth.end_sessions(ident.user_id)
    response = Response(status_code=204)
    set_session_cookie(request, response, await auth.open_session(ident.user_id))
    await record(request, "user.password", ident.name)
    return response
