"""/api/v1/auth/* and /api/v1/me: logging in and out, and who am I."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from devyard.api.deps import CurrentUser, authenticator
from devyard.auth.identity import SESSION_COOKIE
from devyard.auth.users import get_user
from devyard.models import LoginRequest, User
from devyard.store.tables import utcnow

router = APIRouter(tags=["auth"])


def client_address(request: Request) -> str:
    """The peer address throttling counts against."""
    return request.client.host if request.client else "unknown"


def set_session_cookie(request: Request, response: Response, cookie: str) -> None:
    """Attach the session cookie: HttpOnly, SameSite=Lax, Secure under TLS."""
    settings = request.app.state.settings
    response.set_cookie(
        SESSION_COOKIE, cookie, max_age=settings.session_ttl_s, httponly=True, samesite="lax",
        secure=settings.secure_cookies or request.url.scheme == "https", path="/",
    )


@router.post("/auth/login", response_model=User, summary="Log in with a password; sets the session cookie")
async def login(body: LoginRequest, request: Request, response: Response) -> User:
    """Log in; 401 on a wrong name or password, 429 when throttled."""
    cookie, ident = await authenticator(request).login(body.username, body.password, client_address(request))
    set_session_cookie(request, response, cookie)
    return User(name=ident.name, is_admin=ident.is_admin, created_at=utcnow())


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
    row = await get_user(request.app.state.db, ident.name)
    return User.model_validate(row)
