"""Same-origin checks: CSRF protection for cookie-authenticated changes and WebSocket upgrades."""

from __future__ import annotations

from urllib.parse import urlsplit

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def origin_matches(origin: str | None, host: str | None) -> bool:
    """Whether an Origin header names the host (and port) the request was sent to."""
    if not origin or not host or origin == "null":
        return False
    return urlsplit(origin).netloc.lower() == host.lower()


def cross_site(origin: str | None, host: str | None) -> bool:
    """True when a browser says the request comes from another site (no Origin: not a browser form)."""
    return origin is not None and not origin_matches(origin, host)
