"""HTTPS served by the manager: a self-signed certificate, Secure cookies, the gateway over TLS."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from websockets.asyncio.client import connect

from devyard.errors import Invalid
from devyard.tls import check_pair, self_signed
from tests.support import ADMIN_PASSWORD, start_manager


def test_self_signed_certificate_is_made_once(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path / "tls", "127.0.0.1")
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    sans = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert again_same(tmp_path, cert)
    cert2, _ = self_signed(tmp_path / "tls", "dev.example.org")  # a new name: a new certificate
    names = (
        x509.load_pem_x509_certificate(cert2.read_bytes())
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    assert "dev.example.org" in names.get_values_for_type(x509.DNSName)


def again_same(tmp_path: Path, cert: Path) -> bool:
    before = cert.read_bytes()
    self_signed(tmp_path / "tls", "127.0.0.1")
    return cert.read_bytes() == before


def dns_names(cert: Path) -> list[str]:
    """The DNS names in a certificate's subjectAltName."""
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    return parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    )


def handshake(cert: Path, key: Path, host: str) -> None:
    """A TLS handshake in memory: a client trusting `cert` asks for `host` of a server holding it (SSLError on a mismatch)."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_in, client_out, server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = ssl.create_default_context(cafile=str(cert)).wrap_bio(client_in, client_out, server_hostname=host)
    server = server_ctx.wrap_bio(server_in, server_out, server_side=True)
    for _ in range(10):
        finished = 0
        for side in (client, server):
            try:
                side.do_handshake()
                finished += 1
            except ssl.SSLWantReadError:
                pass
        server_in.write(client_out.read())
        client_in.write(server_out.read())
        if finished == 2:
            return
    raise AssertionError(f"the handshake for {host} did not finish")


def test_self_signed_certificate_covers_the_workspace_domain(tmp_path: Path) -> None:
    # One made before a workspace domain was in force lacks the wildcard: it is renewed, then kept.
    old, _ = self_signed(tmp_path / "tls", "127.0.0.1")
    before = old.read_bytes()
    assert "*.localhost" not in dns_names(old)
    cert, _ = self_signed(tmp_path / "tls", "127.0.0.1", "localhost")
    renewed = cert.read_bytes()
    assert renewed != before and "*.localhost" in dns_names(cert)
    self_signed(tmp_path / "tls", "127.0.0.1", "localhost")
    assert cert.read_bytes() == renewed
    # A domain of its own: the domain, and every workspace and port host under it.
    cert, key = self_signed(tmp_path / "tls2", "0.0.0.0", "ws.example.com")
    assert {"ws.example.com", "*.ws.example.com"} <= set(dns_names(cert))
    for host in ("ws.example.com", "app--alice.ws.example.com", "8080--app--alice.ws.example.com"):
        handshake(cert, key, host)


def test_manager_certificate_covers_workspace_hosts(engine: object, tmp_path: Path) -> None:
    # The default workspace_domain (the suite runs in path mode): workspaces under localhost on a loopback bind.
    m = start_manager(tmp_path / "data", extra_env={"DEVYARD_WORKSPACE_DOMAIN": "auto"}, args=("--tls", "self-signed"))
    try:
        assert m.ca and "*.localhost" in dns_names(Path(m.ca))
    finally:
        m.stop()


def test_tls_pairs(tmp_path: Path) -> None:
    with pytest.raises(Invalid):
        check_pair(tmp_path / "c.pem", None)
    with pytest.raises(Invalid):
        check_pair(tmp_path / "c.pem", tmp_path / "k.pem")
    check_pair(None, None)


def test_manager_over_tls(engine: object, tmp_path: Path) -> None:
    m = start_manager(tmp_path / "data", args=("--tls", "self-signed"))
    try:
        assert m.url.startswith("https://") and m.ca
        with pytest.raises(httpx.ConnectError):
            httpx.get(m.url + "/healthz")  # not trusted without the certificate
        with httpx.Client(base_url=m.url, verify=m.verify) as c:
            r = c.post("/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
            assert r.status_code == 200
            flags = r.headers["set-cookie"].lower()
            assert "secure" in flags and "httponly" in flags and "samesite=lax" in flags
            assert c.post("/api/v1/workspaces", json={"name": "sec"}, headers={"origin": m.url}).status_code == 201
            m.wait_status("sec", "running")
            assert c.get("/w/admin/sec/").status_code == 302
            cookie = f"devyard_session={c.cookies['devyard_session']}"
        # The engine's own WebSocket, over wss through the gateway.
        ctx = ssl.create_default_context(cafile=m.ca)
        url = (
            m.url.replace("https://", "wss://")
            + "/w/admin/sec/stable-x?reconnectionToken=t&reconnection=false&skipWebSocketFrames=false"
        )
        assert asyncio.run(_wss_opens(url, ctx, m.url, cookie)) == "OPEN"
        out = m.cli("ws", "ls")
        assert out.returncode == 0 and "sec" in out.stdout
    finally:
        m.stop()


async def _wss_opens(url: str, ctx: ssl.SSLContext, origin: str, cookie: str) -> str:
    # On a loaded CI machine an opening handshake over TLS has twice gone unanswered (never
    # reproduced in 60 tries on an idle one); websockets' sync client then hangs for good joining
    # its reader thread. The asyncio client is cancellable: a stuck attempt ends and one more is made.
    for attempt in range(3):
        try:
            async with asyncio.timeout(30):
                async with connect(url, ssl=ctx, origin=origin, additional_headers={"cookie": cookie}) as conn:  # type: ignore[arg-type]
                    return conn.protocol.state.name
        except TimeoutError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def test_incomplete_tls_flags_are_refused(engine: object, tmp_path: Path) -> None:
    import subprocess

    from tests.support import DEVYARD

    out = subprocess.run(
        [DEVYARD, "up", "--data-dir", str(tmp_path), "--port", "0", "--tls-cert", str(tmp_path / "x.pem")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and out.stderr.strip() == "error: give both --tls-cert and --tls-key"
    out = subprocess.run(
        [DEVYARD, "up", "--data-dir", str(tmp_path), "--tls", "maybe"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2 and out.stderr.strip() == "error: tls: Input should be 'off' or 'self-signed'"
