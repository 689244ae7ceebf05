"""Header handling shared by the HTTP proxy and the WebSocket relay."""

from __future__ import annotations

from devyard.auth.identity import SESSION_COOKIE

# RFC 9110 §7.6.1 hop-by-hop headers, plus the ones the proxy sets itself.
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
    b"transfer-encoding", b"upgrade", b"proxy-connection",
})
WEBSOCKET_HANDSHAKE = frozenset({
    b"sec-websocket-key", b"sec-websocket-version", b"sec-websocket-extensions", b"sec-websocket-protocol", b"host",
    b"content-length",
})
# A tunnelled upgrade keeps the browser's Sec-WebSocket-* (the engine answers the browser itself).
WEBSOCKET_TUNNEL_DROP = frozenset({b"content-length"})
_SESSION_PREFIX = SESSION_COOKIE.encode() + b"="


def strip_session_cookie(cookie: bytes) -> bytes:
    """The Cookie header without devyard's session cookie, which no workspace may see."""
    if _SESSION_PREFIX not in cookie:
        return cookie
    parts = [p for p in cookie.split(b";") if not p.strip().startswith(_SESSION_PREFIX)]
    return b";".join(parts).strip()


def upstream_headers(raw: list[tuple[bytes, bytes]], *, drop: frozenset[bytes], used_bearer: bool, client: str, scheme: str) -> list[tuple[bytes, bytes]]:
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


def downstream_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Response headers to pass back to the browser: everything but hop-by-hop ones."""
    return [(n, v) for n, v in raw if n.lower() not in HOP_BY_HOP]
