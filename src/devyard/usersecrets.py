"""Per-user secrets: stored encrypted (AES-256-GCM, key in <data_dir>/secrets/secrets.key), handed to
the user's engines as environment variables or as 0600 files in the workspace's home.

The value never leaves this module except towards an engine: the API lists names only, and
nothing here logs. Each ciphertext is bound to its owner and name (GCM associated data), so a row
copied to another user or renamed does not decrypt.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devyard.errors import Conflict, Invalid, NotFound
from devyard.store.tables import SecretRow, utcnow

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_VALUE = 64 * 1024
# Variables a secret (or a devcontainer.json) must not set: those an engine needs for itself, and those
# glibc obeys in a program root runs (it ignores them only in setuid ones): root starts each sandbox
# (bwrap) with the engine's variables. Any LD_* name counts, and any DEVYARD_* one is devyard's.
RESERVED = {
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "XDG_RUNTIME_DIR",
    "NODE_OPTIONS",
    "GCONV_PATH",
    "GETCONF_DIR",
    "GLIBC_TUNABLES",
    "HOSTALIASES",
    "LOCALDOMAIN",
    "LOCPATH",
    "MALLOC_TRACE",
    "NIS_PATH",
    "NLSPATH",
    "RESOLV_HOST_CONF",
    "RES_OPTIONS",
    "TZDIR",
}
RESERVED_PREFIXES = ("DEVYARD_", "LD_")


def is_reserved(name: str) -> bool:
    """Whether `name` (in any case) is a variable no secret or devcontainer.json may set."""
    upper = name.upper()
    return upper in RESERVED or upper.startswith(RESERVED_PREFIXES)


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """A secret as listed: never its value."""

    name: str
    file: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Materials:
    """What an engine gets: variables, and files (path in home → content)."""

    env: dict[str, str]
    files: dict[str, str]


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


# check_name as a JSON Schema pattern (no inline flags there): a variable name, not reserved in any case.
NAME_PATTERN = (
    f"^(?!(?:{'|'.join(_any_case(r) for r in sorted(RESERVED))})$)"
    + "".join(f"(?!{_any_case(prefix)})" for prefix in RESERVED_PREFIXES)
    + NAME.pattern.removeprefix("^")
)


def check_name(name: str) -> str:
    """`name` when it can be an environment variable name devyard allows; Invalid otherwise."""
    if not NAME.fullmatch(name):
        raise Invalid(
            "secret names are 1-128 letters, digits and '_', not starting with a digit (like environment variables)",
            code="invalid_secret_name",
        )
    if is_reserved(name):
        raise Invalid(f"'{name}' is used by the engine itself; choose another name", code="reserved_secret_name")
    return name


def check_file(path: str) -> str:
    """A relative path inside the home folder (e.g. `.databrickscfg`), normalized; Invalid otherwise."""
    if not path or len(path) > 255 or "\0" in path or path.startswith("/") or "\\" in path:
        raise Invalid(
            "a secret file is a relative path in the workspace's home, such as .databrickscfg",
            code="invalid_secret_file",
        )
    parts = [p for p in PurePosixPath(path).parts if p != "."]
    if not parts or ".." in parts:
        raise Invalid("a secret file must stay inside the workspace's home (no '..')", code="invalid_secret_file")
    return "/".join(parts)


class SecretStore:
    """Users' secrets in the database, encrypted with the manager's key."""

    def __init__(self, db: async_sessionmaker[AsyncSession], key: bytes) -> None:
        self.db = db
        self._aead = AESGCM(key)

    def _seal(self, user_id: int, name: str, value: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, value.encode(), f"{user_id}/{name}".encode())

    def _open(self, row: SecretRow) -> str:
        return self._aead.decrypt(
            row.ciphertext[:12], row.ciphertext[12:], f"{row.user_id}/{row.name}".encode()
        ).decode()

    async def put(self, user_id: int, name: str, value: str, file: str | None) -> tuple[SecretInfo, bool, str | None]:
        """Set (or replace) a secret: (the secret as listed, whether it is new, the file it was written to before)."""
        check_name(name)
        file = check_file(file) if file is not None else None
        if len(value.encode()) > MAX_VALUE:
            raise Invalid(f"a secret holds at most {MAX_VALUE // 1024} KB", code="secret_too_large")
        async with self.db() as s:
            if file is not None:
                clash = await s.scalar(
                    select(SecretRow.name).where(
                        SecretRow.user_id == user_id, SecretRow.file == file, SecretRow.name != name
                    )
                )
                if clash:
                    raise Conflict(f"secret {clash} is already written to {file}", code="secret_file_taken")
            row = await s.scalar(select(SecretRow).where(SecretRow.user_id == user_id, SecretRow.name == name))
            created = row is None
            previous = row.file if row else None
            if row is None:
                row = SecretRow(user_id=user_id, name=name, created_at=utcnow())
                s.add(row)
            row.ciphertext, row.file, row.updated_at = self._seal(user_id, name, value), file, utcnow()
            try:
                await s.commit()
            except IntegrityError as exc:
                raise Conflict(f"secret {name} was set at the same moment; try again", code="secret_conflict") from exc
            return SecretInfo(row.name, row.file, row.created_at, row.updated_at), created, previous

    async def list(self, user_id: int) -> list[SecretInfo]:
        """The user's secrets by name (never values)."""
        async with self.db() as s:
            rows = (
                await s.scalars(select(SecretRow).where(SecretRow.user_id == user_id).order_by(SecretRow.name))
            ).all()
        return [SecretInfo(r.name, r.file, r.created_at, r.updated_at) for r in rows]

    async def delete(self, user_id: int, name: str) -> str | None:
        """Remove a secret; the file it was written to, if any. NotFound when there is none."""
        async with self.db() as s:
            row = await s.scalar(select(SecretRow).where(SecretRow.user_id == user_id, SecretRow.name == name))
            if row is None:
                raise NotFound(f"you have no secret named {name}", code="secret_not_found")
            file = row.file
            await s.execute(delete(SecretRow).where(SecretRow.id == row.id))
            await s.commit()
        return file

    async def materials(self, user_id: int) -> Materials:
        """Everything the user's engines get, decrypted."""
        async with self.db() as s:
            rows = (await s.scalars(select(SecretRow).where(SecretRow.user_id == user_id))).all()
        env, files = {}, {}
        for row in rows:
            if row.file:
                files[row.file] = self._open(row)
            else:
                env[row.name] = self._open(row)
        return Materials(env, files)
