"""The single sign-on pages: /auth/oidc/login sends the browser to the issuer, /auth/oidc/callback brings it back."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from devyard.api.auth import set_session_cookie
from devyard.api.deps import audit_log, authenticator, client_address
from devyard.auth.groups import Groups, claimed
from devyard.auth.oidc import OidcLogin
from devyard.errors import DevyardError, Forbidden, NotFound
from devyard.web.render import render
from devyard.web.views import safe_next

router = APIRouter(include_in_schema=False)


def callback_url(request: Request) -> str:
    """The redirect_uri the issuer sends the browser back to: under public_url when it is set."""
    public_url: str | None = request.app.state.settings.public_url
    if public_url:
        # Never from the request's Host, which whoever sends the request chooses.
        return public_url.rstrip("/") + str(request.app.url_path_for("sso_callback"))
    return str(request.url_for("sso_callback"))


def _sso(request: Request) -> OidcLogin:
    sso: OidcLogin | None = request.app.state.oidc
    if sso is None:
        raise NotFound("single sign-on is not configured", code="oidc_not_configured")
    return sso


@router.get("/auth/oidc/login", response_model=None)
async def sso_login(request: Request, next: str = "/") -> Response:
    """Remember where to go afterwards and send the browser to the issuer."""
    sso = _sso(request)
    request.session["next"] = safe_next(next)
    return await sso.start(request, callback_url(request))


@router.get("/auth/oidc/callback", name="sso_callback", response_model=None)
async def sso_callback(request: Request) -> Response:
    """Finish the sign-in: check the ID token and the allow-lists, open a session, go on."""
    sso = _sso(request)
    address = client_address(request)
    audit = audit_log(request)
    try:
        claims = await sso.finish(request)
        user, created = await sso.user_for(request.app.state.db, claims)
        if created:
            await audit.record("sso", "user.create", user.name, address=address, detail={"issuer": sso.issuer})
        if user.disabled:
            raise Forbidden("this account is disabled", code="account_disabled")
        # The identity provider says which groups the user is in now: joins and leaves take effect here.
        groups: Groups = request.app.state.groups
        if any(await groups.sync(user, claimed(claims.get(sso.settings.oidc_groups_claim)))):
            authenticator(request).invalidate()
    except DevyardError as exc:
        await audit.record(None, "login", success=False, address=address, detail={"via": "oidc", "reason": exc.code})
        page = render("login.html", next="/", error=exc.message, username=None, sso=True)
        return HTMLResponse(page, status_code=exc.status)
    cookie = await authenticator(request).open_session(user.id)
    await audit.record(user.name, "login", address=address, detail={"via": "oidc"})
    response = RedirectResponse(request.session.pop("next", "/"), status_code=303)
    set_session_cookie(request, response, cookie)
    return response
