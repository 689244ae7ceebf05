"""Random secrets (session cookies, API tokens) and the digests stored in their place."""

from __future__ import annotations

import hashlib
import os
import secrets
from datetime import timedelta
from pathlib import Path

from devyard.errors import Invalid
from devyard.fields import DURATION

TOKEN_PREFIX = "dy_"
KEY_BYTES = 32
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def new_secret(prefix: str = "") -> str:
    """A fresh URL-safe secret with 256 bits of entropy."""
    return prefix + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """The SHA-256 hex digest stored instead of a secret (secrets are random, so no salt is needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_duration(text: str) -> timedelta:
    """'30d', '12h', '15m', '90s' or plain seconds as a timedelta; Invalid otherwise."""
    match = DURATION.fullmatch(text)
    if not match:
        raise Invalid(
            f"'{text}' is not a duration: use a positive number (up to 5 digits) with s, m, h, d or w (e.g. 30d)",
            code="invalid_duration",
        )
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def load_or_create_key(path: Path) -> bytes:
    """The 256-bit key at `path`, made (mode 0600, folder 0700) on first use."""
    try:
        found = path.read_bytes()
    except FileNotFoundError:
        pass
    else:
        if len(found) != KEY_BYTES:
            raise Invalid(
                f"the key {path} holds {len(found)} bytes, not {KEY_BYTES} (make one with: head -c {KEY_BYTES} /dev/urandom > {path.name})",
                code="key_invalid",
            )
        return found
    key = secrets.token_bytes(KEY_BYTES)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise Invalid(
            f"the key {path} does not exist and cannot be made there ({exc.strerror}); give every replica the same "
            "keys (keys_dir, e.g. a mounted Secret: deploy/kubernetes/README.md)",
            code="key_missing",
        ) from exc
    try:
        os.write(fd, key)
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return key
