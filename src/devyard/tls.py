"""TLS for `devyard up`: a certificate given by the admin, or a self-signed one kept in the data dir.

The self-signed certificate (EC P-256, a year) names the bind host, localhost, the loopback
addresses and, with a workspace domain in force, that domain and `*.<domain>` (every workspace
and forwarded port is a host there); it is reused while it still covers them all and has more
than RENEW_BEFORE to live, so a certificate made before the domain was set is replaced.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devyard.errors import Invalid

VALID_FOR = dt.timedelta(days=365)
RENEW_BEFORE = dt.timedelta(days=30)
CERT_NAME, KEY_NAME = "self-signed.crt", "self-signed.key"


def names_for(host: str, domain: str | None = None) -> list[str]:
    """Host names and addresses a self-signed certificate should cover for a manager bound to `host`, serving workspaces under `domain`."""
    names = {"localhost", "127.0.0.1", "::1", socket.gethostname()}
    if host not in ("0.0.0.0", "::", ""):
        names.add(host)
    if domain:
        names.update({domain, f"*.{domain}"})
    return sorted(names)


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _still_good(cert_path: Path, names: list[str]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        covered = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    wanted = set(_san(names))
    return wanted <= set(covered) and cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > RENEW_BEFORE


def self_signed(folder: Path, host: str, domain: str | None = None) -> tuple[Path, Path]:
    """(certificate, key) for `host` and the workspace domain `domain` (None: path mode) in `folder`, made or renewed when needed."""
    cert_path, key_path = folder / CERT_NAME, folder / KEY_NAME
    names = names_for(host, domain)
    if key_path.exists() and _still_good(cert_path, names):
        return cert_path, key_path
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "devyard"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "devyard self-signed"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(_san(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem_key)
    key_path.with_suffix(".tmp").replace(key_path)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def check_pair(cert: Path | None, key: Path | None) -> None:
    """Invalid unless both or neither of certificate and key are given, and the given files exist."""
    if (cert is None) != (key is None):
        raise Invalid("give both --tls-cert and --tls-key", code="tls_incomplete")
    for path in (cert, key):
        if path is not None and not path.is_file():
            raise Invalid(f"TLS file {path} does not exist", code="tls_file_missing")
