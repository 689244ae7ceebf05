"""Security headers on the manager's own responses (dashboard, API, static files): a strict CSP, no framing, no sniffing.

Added inside create_app, so it covers FastAPI's routes only: GatewayMiddleware, outside the app,
passes workspace responses on untouched (code-server sets its own policy and needs inline scripts).
The templates have no inline scripts, styles or event handlers, so the policy allows none. The one
page not ours, FastAPI's Swagger UI at DOCS_PATH, gets a policy of its own: its CDN and the hash of
the one inline script it has.
"""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import urlsplit

from fastapi.openapi.docs import get_swagger_ui_html
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from devyard.config import Settings
from devyard.origins import Origins

_HOST = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)
DOCS_PATH = "/api/v1/docs"
# What api/meta.py's docs route passes to get_swagger_ui_html; a test fails if the page's inline script no longer matches.
DOCS_OPENAPI_URL, DOCS_TITLE = "/api/v1/openapi.json", "devyard API"
SWAGGER_CDN, FASTAPI_FAVICON = "https://cdn.jsdelivr.net", "https://fastapi.tiangolo.com"


def image_sources(settings: Settings) -> list[str]:
    """The origins of the catalog's remote thumbnails, the only images the dashboard loads from elsewhere."""
    found: dict[str, None] = {}
    for tab in settings.packaged_assets.tabs:
        for item in tab.items:
            parts = urlsplit(item.thumbnail_url or "")
            host = (parts.hostname or "").lower()
            # Only a plain host name or IPv4 address: anything else could smuggle a `;` or a space into the policy.
            if parts.scheme in ("http", "https") and _HOST.match(host):
                found[f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")] = None
    return list(found)


def workspace_sources(settings: Settings) -> list[str]:
    """The workspace origins as one CSP source (`http://*.localhost:8443`), none in path mode."""
    origins = Origins.from_settings(settings)
    if origins.domain is None:
        return []
    scheme = "https" if origins.secure else "http"
    port = origins.public.port if origins.public else origins.port or "*"
    return [f"{scheme}://*.{origins.domain}" + (f":{port}" if port else "")]


def _policy(directives: dict[str, str]) -> str:
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def content_security_policy(settings: Settings) -> str:
    """The Content-Security-Policy of every dashboard and API response (but the API docs page)."""
    return _policy(
        {
            "default-src": "'self'",
            "script-src": "'self'",
            "style-src": "'self'",
            "img-src": " ".join(["'self'", "data:", *image_sources(settings)]),
            "connect-src": "'self'",
            "frame-ancestors": "'none'",
            "base-uri": "'none'",
            # SSO starts with a link, not a form, so its issuer need not be here. A workspace origin must:
            # after logging in to open one, the login form's redirects end there (/auth/workspace), and
            # browsers hold a form submission's redirects to form-action too.
            "form-action": " ".join(["'self'", *workspace_sources(settings)]),
        }
    )


def docs_policy() -> str:
    """The Content-Security-Policy of FastAPI's Swagger UI page: its CDN, its favicon and its one inline script, by hash."""
    page = bytes(get_swagger_ui_html(openapi_url=DOCS_OPENAPI_URL, title=DOCS_TITLE).body).decode()
    hashes = [
        f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(page)
    ]
    return _policy(
        {
            "default-src": "'self'",
            "script-src": " ".join(["'self'", SWAGGER_CDN, *hashes]),
            "style-src": f"'self' {SWAGGER_CDN}",
            "img-src": f"'self' data: {FASTAPI_FAVICON}",
            "connect-src": "'self'",
            "frame-ancestors": "'none'",
            "base-uri": "'none'",
            "form-action": "'self'",
        }
    )


class SecurityHeaders:
    """ASGI middleware adding the security headers to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        others = {"x-frame-options": "DENY", "referrer-policy": "same-origin", "x-content-type-options": "nosniff"}
        self.headers = self._encode({"content-security-policy": content_security_policy(settings), **others})
        self.docs_headers = self._encode({"content-security-policy": docs_policy(), **others})

    @staticmethod
    def _encode(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
        return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        ours = self.docs_headers if scope["path"] == DOCS_PATH else self.headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                present = {name.lower() for name, _ in raw}
                raw.extend(header for header in ours if header[0] not in present)
                message["headers"] = raw
            await send(message)

        await self.app(scope, receive, send_with_headers)
