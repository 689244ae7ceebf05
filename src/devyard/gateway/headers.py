"""Header handling shared by the HTTP proxy and the WebSocket tunnel.

An engine's answer is the tenant's to write (see gateway/assets.py), so what the browser gets of it
is filtered: no cookie of devyard's own (a tenant's page must not log a visitor in or out of the
dashboard), no `Service-Worker-Allowed` (code-server sends `/`, which would let a worker registered
from a workspace control every page of the origin) and no `Clear-Site-Data`.
"""

from __future__ import annotations

from devyard.auth.identity import SESSION_COOKIE

# RFC 9110 §7.6.1 hop-by-hop headers, plus the ones the proxy sets itself.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-connection",
    }
)
# A tunnelled upgrade keeps the browser's Sec-WebSocket-* (the engine answers the browser itself).
WEBSOCKET_TUNNEL_DROP = frozenset({b"content-length"})
# Response headers an engine may not send on: they reach beyond its own workspace.
ENGINE_MAY_NOT_SET = frozenset({b"service-worker-allowed", b"clear-site-data"})
OWN_COOKIE_PREFIX = SESSION_COOKIE.partition("_")[0].encode()  # devyard_session, devyard_sso, any devyard_* to come


def strip_session_cookie(cookie: bytes) -> bytes:
    """The Cookie header without devyard's own cookies (the session, the sign-in state), which no workspace may see."""
    if OWN_COOKIE_PREFIX not in cookie:
        return cookie
    parts = [p for p in cookie.split(b";") if not p.strip().startswith(OWN_COOKIE_PREFIX)]
    return b";".join(parts).strip()


def upstream_headers(
    raw: list[tuple[bytes, bytes]], *, drop: frozenset[bytes], used_bearer: bool, client: str, scheme: str
) -> list[tuple[bytes, bytes]]:
    """Request headers to send to the engine: no hop-by-hop, no devyard credentials, X-Forwarded-* added."""
    out: list[tuple[bytes, bytes]] = []
    host = b""
    for name, value in raw:
        lname = name.lower()
        if lname in HOP_BY_HOP or lname in drop or lname.startswith(b"x-forwarded-") or lname == b"forwarded":
            continue
        if lname == b"host":
            host = value
        elif lname == b"cookie":
            value = strip_session_cookie(value)
            if not value:
                continue
        elif lname == b"authorization" and used_bearer:
            continue
        out.append((lname, value))
    # The engine compares a WebSocket's Origin with X-Forwarded-Host (else Host): pass the browser's.
    out.append((b"x-forwarded-host", host))
    out.append((b"x-forwarded-proto", scheme.encode()))
    out.append((b"x-forwarded-for", client.encode()))
    return out


def reaches_beyond(name: bytes, value: bytes) -> bool:
    """Whether an engine's response header would act beyond its own workspace (`name` in lower case)."""
    if name in ENGINE_MAY_NOT_SET:
        return True
    return name == b"set-cookie" and value.lstrip().lower().startswith(OWN_COOKIE_PREFIX)


def downstream_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Response headers to pass back to the browser: not hop-by-hop, nothing that reaches beyond the workspace."""
    out = []
    for name, value in raw:
        lname = name.lower()
        if lname not in HOP_BY_HOP and not reaches_beyond(lname, value):
            out.append((name, value))
    return out


def filter_head(head: bytes) -> bytes:
    """An engine's raw answer head (a WebSocket's 101: hop-by-hop headers stay) without what reaches beyond the workspace."""
    status, _, rest = head.partition(b"\r\n")
    kept = [status]
    for line in rest.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if line and colon and reaches_beyond(name.strip().lower(), value.strip()):
            continue
        kept.append(line)
    return b"\r\n".join(kept)
