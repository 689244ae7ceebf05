"""Gateway helpers: path parsing and the headers sent to engines."""

from __future__ import annotations

from devyard.gateway.access import parse_target
from devyard.gateway.headers import WEBSOCKET_TUNNEL_DROP, downstream_headers, strip_session_cookie, upstream_headers


def test_parse_target() -> None:
    t = parse_target("/w/ann/proj/static/x.js")
    assert t and (t.owner, t.name, t.prefix, t.rest) == ("ann", "proj", "/w/ann/proj", "/static/x.js")
    t = parse_target("/w/ann/proj")
    assert t and t.rest == ""
    assert parse_target("/w/ann/proj/") and parse_target("/w/ann/proj/").rest == "/"  # type: ignore[union-attr]
    assert parse_target("/w/ann") is None and parse_target("/w//x/") is None and parse_target("/x/ann/proj/") is None


def test_session_cookie_never_reaches_engines() -> None:
    assert strip_session_cookie(b"a=1; devyard_session=secret; b=2") == b"a=1; b=2"
    assert strip_session_cookie(b"devyard_session=secret") == b""
    assert strip_session_cookie(b"x=devyard_session=1") == b"x=devyard_session=1"
    raw = [
        (b"Host", b"h:1"),
        (b"Cookie", b"devyard_session=s"),
        (b"Authorization", b"Bearer dy_x"),
        (b"Connection", b"keep-alive"),
        (b"X-Forwarded-Host", b"spoofed"),
        (b"Accept", b"*/*"),
    ]
    out = dict(upstream_headers(raw, drop=frozenset(), used_bearer=True, client="1.2.3.4", scheme="https"))
    assert b"cookie" not in out and b"authorization" not in out and b"connection" not in out
    assert (
        out[b"x-forwarded-host"] == b"h:1"
        and out[b"x-forwarded-proto"] == b"https"
        and out[b"x-forwarded-for"] == b"1.2.3.4"
    )
    assert out[b"accept"] == b"*/*"
    kept = dict(
        upstream_headers(
            [(b"authorization", b"Basic x")], drop=frozenset(), used_bearer=False, client="", scheme="http"
        )
    )
    assert kept[b"authorization"] == b"Basic x"  # not ours: the workspace's own business
    # A tunnelled upgrade keeps the browser's Sec-WebSocket-* (the engine answers the browser itself).
    ws = dict(
        upstream_headers(
            [(b"sec-websocket-key", b"k"), (b"origin", b"o"), (b"content-length", b"0")],
            drop=WEBSOCKET_TUNNEL_DROP,
            used_bearer=False,
            client="",
            scheme="http",
        )
    )
    assert ws[b"sec-websocket-key"] == b"k" and ws[b"origin"] == b"o" and b"content-length" not in ws
    assert downstream_headers([(b"Transfer-Encoding", b"chunked"), (b"ETag", b"x")]) == [(b"ETag", b"x")]
