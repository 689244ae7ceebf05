"""devyard's SSH authorities: short-lived user certificates, and a host key per workspace certified by a host CA.

Both authorities, and every workspace's host key, are derived (HKDF-SHA256) from one 256-bit seed
in the keys folder (`ssh.key`, made on first use like session.key): replicas sharing their keys
share the authorities, and a workspace's host key is the same at every start and on every replica
for as long as it exists (it is derived from its uid), with nothing more to store or back up.

The CLI pins the host CA once (`@cert-authority devyard--* ...` in its known_hosts), so no host key
is ever trusted on first use, workspaces made later included. User certificates are minted for a
key the CLI makes per session, valid for minutes, with the workspace's account as the only
principal and agent forwarding only when an admin allows it. OpenSSH's own formats throughout,
through `cryptography`'s SSHCertificateBuilder (what `ssh-keygen -s` does, without a subprocess).
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    SSHCertificateBuilder,
    SSHCertificateType,
    load_ssh_public_key,
)

from devyard.errors import Invalid

log = logging.getLogger("devyard")
ALIAS_PREFIX = "devyard--"
KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")
CLOCK_SKEW_S = 60  # a certificate is valid from a minute ago: the developer's clock may run behind
HOST_CERT_DAYS = 3650


def alias(owner: str, name: str, caller: str) -> str:
    """The SSH host alias `caller` uses for a workspace: devyard--NAME for their own, devyard--OWNER--NAME for others'."""
    return f"{ALIAS_PREFIX}{name}" if owner == caller else f"{ALIAS_PREFIX}{owner}--{name}"


def workspace_principal(uid: str) -> str:
    """The principal only workspace `uid`'s sshd accepts (its AuthorizedPrincipalsFile): a certificate opens one workspace."""
    return f"devyard-workspace-{uid}"


def _openssh(public: Ed25519PublicKey) -> str:
    return public.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()


@dataclass(frozen=True, slots=True)
class HostKey:
    """One workspace's host key (OpenSSH private key text) and its certificate."""

    private: str
    certificate: str


class Authority:
    """The user CA, the host CA and the per-workspace host keys, from one seed."""

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self.user_ca = self._derive(b"devyard ssh user ca")
        self.host_ca = self._derive(b"devyard ssh host ca")

    @classmethod
    def load(cls, keys_dir: Path) -> Authority:
        """The authority of this manager (and its replicas): the seed in `keys_dir`/ssh.key, made on first use."""
        from devyard.auth.secrets import load_or_create_key  # the manager's; the CLI's ssh halves never load it

        return cls(load_or_create_key(keys_dir / "ssh.key"))

    def _derive(self, info: bytes) -> Ed25519PrivateKey:
        raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(self._seed)
        return Ed25519PrivateKey.from_private_bytes(raw)

    @property
    def user_ca_public(self) -> str:
        """The user CA, as sshd's TrustedUserCAKeys reads it."""
        return _openssh(self.user_ca.public_key())

    def known_hosts(self) -> str:
        """The known_hosts line that trusts every workspace's host key, present and future."""
        return f"@cert-authority {ALIAS_PREFIX}* {_openssh(self.host_ca.public_key())} devyard-host-ca"

    def host_key(self, uid: str, owner: str, name: str) -> HostKey:
        """The host key of workspace `uid` and a certificate naming both its aliases (owner's and others')."""
        key = self._derive(b"devyard ssh host key " + uid.encode())
        private = key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()).decode()
        now = int(time.time())
        cert = (
            SSHCertificateBuilder()
            .public_key(key.public_key())
            .serial(int.from_bytes(secrets.token_bytes(8), "big"))
            .type(SSHCertificateType.HOST)
            .key_id(f"devyard:{owner}/{name}:{uid}".encode())
            .valid_principals([alias(owner, name, owner).encode(), alias(owner, name, "").encode()])
            .valid_after(now - CLOCK_SKEW_S)
            .valid_before(now + HOST_CERT_DAYS * 86400)
            .sign(self.host_ca)
        )
        return HostKey(private, cert.public_bytes().decode() + "\n")

    def user_certificate(
        self, public_key: str, principals: list[str], key_id: str, ttl_s: int, agent_forwarding: bool
    ) -> tuple[str, int]:
        """A user certificate for `public_key` (one OpenSSH line) valid `ttl_s` seconds; the certificate line and its end (unix time)."""
        text = public_key.strip()
        if not text.startswith(KEY_TYPES):
            raise Invalid(
                f"public_key must be an OpenSSH public key line starting with one of {', '.join(KEY_TYPES)}",
                code="invalid_public_key",
            )
        try:
            key = load_ssh_public_key(text.encode())
        except (ValueError, TypeError) as exc:
            raise Invalid(f"public_key is not a valid OpenSSH public key: {exc}", code="invalid_public_key") from exc
        now = int(time.time())
        builder = (
            SSHCertificateBuilder()
            .public_key(key)  # type: ignore[arg-type]  # any SSH public key type; SSHCertPublicKeyTypes at runtime
            .serial(int.from_bytes(secrets.token_bytes(8), "big"))
            .type(SSHCertificateType.USER)
            .key_id(key_id.encode())
            .valid_principals([p.encode() for p in principals])
            .valid_after(now - CLOCK_SKEW_S)
            .valid_before(now + ttl_s)
            .add_extension(b"permit-port-forwarding", b"")
            .add_extension(b"permit-pty", b"")
        )
        if agent_forwarding:
            builder = builder.add_extension(b"permit-agent-forwarding", b"")
        cert = builder.sign(self.user_ca)
        return cert.public_bytes().decode(), now + ttl_s


class Lazy:
    """The authority of a keys folder, loaded at its first use; `off` says why SSH is off when it cannot be.

    A read-only keys folder without ssh.key (a cluster's keys Secret from before SSH) leaves the
    manager and its workspaces running, without SSH, and says so once in the log.
    """

    def __init__(self, keys_dir: Path) -> None:
        self.keys_dir = keys_dir
        self.found: Authority | None = None
        self.off: str | None = None

    def get(self) -> Authority | None:
        """The authority, or None (see `off`)."""
        if self.found is None and self.off is None:
            from devyard.errors import DevyardError

            try:
                self.found = Authority.load(self.keys_dir)
            except (DevyardError, OSError) as exc:
                self.off = f"SSH is off here: {getattr(exc, 'message', None) or exc}"
                log.warning("%s", self.off)
        return self.found
