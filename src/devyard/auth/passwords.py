"""Password hashing with argon2id (argon2-cffi's defaults follow RFC 9106's recommendations)."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# A hash to verify against when the user does not exist, so a miss costs as long as a hit.
_DUMMY_HASH = _hasher.hash("devyard-timing-equaliser")


def hash_password(password: str) -> str:
    """The argon2id hash of `password`."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches `password_hash` (None = no such user: still spends the time)."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_password_async(password_hash: str | None, password: str) -> bool:
    """verify_password off the event loop: argon2 takes tens of milliseconds of CPU."""
    return await asyncio.to_thread(verify_password, password_hash, password)
