"""OpenID Connect single sign-on (authlib): the redirect to the issuer and the way back.

A user signs in as the account linked to the issuer's subject (`sub`), created on first sign-in
with a name derived from `preferred_username` or the email; an existing local account with the
same name is never taken over (the new one gets a suffix). Only verified emails of the allowed
domains, or members of the allowed groups, get in.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import Response

from devyard.config import Settings
from devyard.errors import Forbidden, Invalid, Unauthorized
from devyard.store.tables import UserRow

_BAD = re.compile(r"[^a-z0-9_.-]+")


def check_settings(settings: Settings) -> None:
    """Invalid when SSO is half configured or would let anyone in."""
    if not settings.oidc_issuer:
        return
    if not settings.oidc_client_id or not settings.oidc_client_secret:
        raise Invalid("oidc_issuer needs oidc_client_id and oidc_client_secret", code="oidc_incomplete")
    if not settings.oidc_allowed_domains and not settings.oidc_allowed_groups:
        raise Invalid(
            "set oidc_allowed_domains or oidc_allowed_groups: who may sign in with SSO?", code="oidc_unrestricted"
        )


def user_name_for(claims: dict[str, Any]) -> str:
    """A devyard user name from the claims (lower-case, 1-39 of [a-z0-9_.-], starting alphanumeric)."""
    raw = str(claims.get("preferred_username") or str(claims.get("email") or "").split("@")[0] or "user").lower()
    name = _BAD.sub("-", raw).strip("-_.")[:39] or "user"
    return name if name[0].isalnum() else f"u{name}"[:39]


def is_allowed(claims: dict[str, Any], domains: list[str], groups: list[str], claim: str = "groups") -> bool:
    """Whether the claims show an allowed, verified email domain or an allowed group (in the claim named `claim`)."""
    email = str(claims.get("email") or "")
    if domains and claims.get("email_verified") is True and "@" in email:
        if email.rsplit("@", 1)[1].lower() in {d.lower() for d in domains}:
            return True
    member_of = claims.get(claim) or []
    return bool(groups) and isinstance(member_of, list) and bool(set(groups) & {str(g) for g in member_of})


def _authlib() -> tuple[Any, type[Exception]]:
    """authlib's OAuth registry and error, imported only where single sign-on is configured (11 MB resident)."""
    with warnings.catch_warnings():
        # authlib announces a future move of its httpx integration on import; nothing for users to do.
        # Its own module sets an "always" filter when imported, so import it first and filter after.
        import authlib.deprecate  # noqa: F401

        warnings.filterwarnings("ignore", message="The httpx module is deprecated")
        from authlib.integrations.base_client.errors import OAuthError
        from authlib.integrations.starlette_client import OAuth
    return OAuth, OAuthError


class OidcLogin:
    """The configured issuer: start a sign-in, finish it, find or create the user."""

    def __init__(self, settings: Settings) -> None:
        assert settings.oidc_issuer and settings.oidc_client_secret
        self.settings = settings
        self.issuer = settings.oidc_issuer.rstrip("/")
        OAuth, self.OAuthError = _authlib()
        self.oauth = OAuth()
        self.client = self.oauth.register(
            "sso",
            client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret.get_secret_value(),
            server_metadata_url=f"{self.issuer}/.well-known/openid-configuration",
            client_kwargs={"scope": settings.oidc_scopes, "code_challenge_method": "S256"},
        )

    async def start(self, request: Request, redirect_uri: str) -> Response:
        """The redirect to the issuer's login page."""
        response: Response = await self.client.authorize_redirect(request, redirect_uri)
        return response

    async def finish(self, request: Request) -> dict[str, Any]:
        """Exchange the code and check the ID token (signature, issuer, audience, nonce); its claims."""
        try:
            token = await self.client.authorize_access_token(request)
        except self.OAuthError as exc:
            raise Unauthorized(
                f"single sign-on failed: {getattr(exc, 'description', None) or getattr(exc, 'error', exc)}",
                code="oidc_failed",
            ) from exc
        claims: dict[str, Any] = dict(token.get("userinfo") or {})
        if not claims.get("sub"):
            raise Unauthorized("single sign-on failed: the issuer sent no subject", code="oidc_failed")
        # Many issuers keep email and groups out of the ID token: ask the userinfo endpoint too.
        if "email" not in claims or self.settings.oidc_groups_claim not in claims:
            try:
                extra = dict(await self.client.userinfo(token=token))
            except (self.OAuthError, httpx.HTTPError) as exc:
                raise Unauthorized(f"single sign-on failed: userinfo: {exc}", code="oidc_failed") from exc
            if extra.get("sub") != claims["sub"]:
                raise Unauthorized("single sign-on failed: userinfo is about someone else", code="oidc_failed")
            claims = {**extra, **claims}
        allowed_groups = self.settings.oidc_allowed_groups
        if not is_allowed(claims, self.settings.oidc_allowed_domains, allowed_groups, self.settings.oidc_groups_claim):
            raise Forbidden(
                "your account is not allowed here: ask an admin to allow your email domain or group",
                code="oidc_not_allowed",
            )
        return claims

    async def user_for(self, db: async_sessionmaker[AsyncSession], claims: dict[str, Any]) -> tuple[UserRow, bool]:
        """The user linked to the claims' subject, created on first sign-in; (user, created)."""
        subject = f"{self.issuer} {claims['sub']}"
        async with db() as s:
            found = await s.scalar(select(UserRow).where(UserRow.oidc_subject == subject))
        if found is not None:
            return found, False
        base = user_name_for(claims)
        for n in range(1, 100):
            name = base if n == 1 else f"{base[:35]}-{n}"
            row = UserRow(name=name, password_hash=None, is_admin=False, oidc_subject=subject)
            async with db() as s:
                s.add(row)
                try:
                    await s.commit()
                    return row, True
                except IntegrityError:
                    await s.rollback()
                    async with db() as again:  # lost a race with the same subject?
                        found = await again.scalar(select(UserRow).where(UserRow.oidc_subject == subject))
                    if found is not None:
                        return found, False
        raise Invalid(f"no free user name for '{base}'", code="oidc_name_exhausted")
