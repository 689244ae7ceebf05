"""`devyard user|token|audit ...`: through the API when DEVYARD_TOKEN is set, else on the local database.

Local use needs read access to the data dir, which is as good as being its admin; changes made
that way are audited with the actor `cli` and the address `local`.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import secrets
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devyard.apiclient import Api
from devyard.audit import AuditLog
from devyard.auth import users as user_store
from devyard.auth.identity import SCOPES, delete_sessions, insert_token
from devyard.auth.secrets import parse_duration
from devyard.config import load_settings
from devyard.errors import Forbidden, Invalid, NotFound
from devyard.models import PasswordChange, UserCreate
from devyard.store.db import migrate, open_engine, sessionmaker
from devyard.store.tables import TokenRow, utcnow

user_app = typer.Typer(help="Manage user accounts.", no_args_is_help=True)
token_app = typer.Typer(help="Manage API tokens.", no_args_is_help=True)
console = Console()
T = TypeVar("T")
DB = async_sessionmaker[AsyncSession]
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="devyard's data directory (local database access).")]
PasswordStdin = Annotated[bool, typer.Option("--password-stdin", help="Read the password from standard input.")]


def remote() -> bool:
    """Whether to go through the API (DEVYARD_TOKEN is set) rather than the local database."""
    return bool(os.environ.get("DEVYARD_TOKEN"))


def local(data_dir: Path | None, work: Callable[[DB, AuditLog], Awaitable[T]]) -> T:
    """Run `work(db, audit)` against the database in the data dir."""
    settings = load_settings(data_dir=data_dir)

    async def run() -> T:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        migrate(settings.db_url)
        engine = open_engine(settings.db_url)
        try:
            db = sessionmaker(engine)
            return await work(db, AuditLog(db))
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _audited(action: str, target: str, detail: dict[str, Any] | None = None) -> Callable[[AuditLog], Awaitable[None]]:
    return lambda audit: audit.record("cli", action, target, address="local", detail=detail)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Again: "):
            raise Invalid("the passwords differ", code="password_mismatch")
        return first
    return ""


@user_app.command("add")
def user_add(
    name: str,
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an admin.")] = False,
    password_stdin: PasswordStdin = False,
    data_dir: DataDir = None,
) -> None:
    """Add a user; without a password given, one is generated and printed once."""
    password = _read_password(password_stdin)
    generated = not password
    body = UserCreate(name=name, password=password or secrets.token_urlsafe(12), is_admin=admin)  # validates first
    if remote():
        Api().request("POST", "/users", json=body.model_dump())
    else:

        async def add(db: DB, audit: AuditLog) -> None:
            await user_store.create_user(db, body.name, body.password, body.is_admin)
            await _audited("user.create", name, {"is_admin": admin})(audit)

        local(data_dir, add)
    console.print(f"added user [bold]{name}[/]" + (" (admin)" if admin else ""))
    if generated:
        console.print(f"password: [bold]{body.password}[/] (shown once)")


@user_app.command("ls")
def user_ls(data_dir: DataDir = None) -> None:
    """List users."""
    if remote():
        rows = [(u["name"], u["is_admin"], u["disabled"], u["created_at"][:16]) for u in Api().request("GET", "/users")]
    else:
        found = local(data_dir, lambda db, _: user_store.list_users(db))
        rows = [(u.name, u.is_admin, u.disabled, u.created_at.strftime("%Y-%m-%dT%H:%M")) for u in found]
    table = Table("name", "admin", "disabled", "created")
    for name, is_admin, disabled, created in rows:
        table.add_row(name, "yes" if is_admin else "", "yes" if disabled else "", created)
    console.print(table)


def _update(name: str, data_dir: Path | None, **changes: Any) -> None:
    if remote():
        Api().request("PATCH", f"/users/{name}", json=changes)
        return

    async def update(db: DB, audit: AuditLog) -> None:
        await user_store.update_user(db, name, **changes)
        # The manager re-reads users for every login, and sessions die with the rows removed here.
        user = await user_store.get_user(db, name)
        if changes.get("disabled") or changes.get("password"):
            await delete_sessions(db, user.id)
        shown = {k: ("changed" if k == "password" else v) for k, v in changes.items()}
        await _audited("user.update", name, shown)(audit)

    local(data_dir, update)


@user_app.command("disable")
def user_disable(name: str, data_dir: DataDir = None) -> None:
    """Disable a user: they cannot log in, their sessions and tokens stop working."""
    _update(name, data_dir, disabled=True)
    console.print(f"disabled {name}")


@user_app.command("enable")
def user_enable(name: str, data_dir: DataDir = None) -> None:
    """Enable a disabled user again."""
    _update(name, data_dir, disabled=False)
    console.print(f"enabled {name}")


@user_app.command("passwd")
def user_passwd(name: str, password_stdin: PasswordStdin = False, data_dir: DataDir = None) -> None:
    """Set a user's password (generated and printed when none is given); ends their sessions."""
    password = _read_password(password_stdin)
    generated = not password
    password = password or secrets.token_urlsafe(12)
    PasswordChange(current_password="-", new_password=password)  # the same length rule as the API
    _update(name, data_dir, password=password)
    console.print(f"password of {name} changed" + (f": [bold]{password}[/] (shown once)" if generated else ""))


def _limit(value: str | None, flag: str) -> int | None:
    if value is None or value == "default":
        return None
    if not value.isdigit():
        raise typer.BadParameter(f"{flag} takes a whole number or 'default', not {value!r}")
    return int(value)


@user_app.command("quota")
def user_quota(
    name: str,
    max_workspaces: Annotated[
        str | None, typer.Option(help="Workspaces the user may have (a number, or 'default').")
    ] = None,
    max_running: Annotated[str | None, typer.Option(help="Workspaces the user may run at once.")] = None,
    max_disk_mb: Annotated[str | None, typer.Option(help="Disk all of the user's workspaces may use, in MB.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Set a user's own quota (options left out, or 'default', follow the manager's max_*_per_user)."""
    limits = {
        "max_workspaces": _limit(max_workspaces, "--max-workspaces"),
        "max_running": _limit(max_running, "--max-running"),
        "max_disk_mb": _limit(max_disk_mb, "--max-disk-mb"),
    }
    if remote():
        Api().request("PUT", f"/users/{name}/quota", json=limits)
    else:

        async def put(db: DB, audit: AuditLog) -> None:
            await user_store.set_quota(db, name, **limits)
            await _audited("user.quota", name, limits)(audit)

        local(data_dir, put)
    shown = ", ".join(f"{k} {'default' if v is None else v}" for k, v in limits.items())
    console.print(f"quota of {name}: {shown}")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option("--name", help="A label for the token.")] = "cli",
    expires_in: Annotated[
        str | None, typer.Option("--expires-in", help="Lifetime like 30d, 12h; default: no expiry.")
    ] = None,
    scope: Annotated[str, typer.Option("--scope", help="read, write or admin (admins only).")] = "",
    user: Annotated[str, typer.Option("--user", help="Whose token (local database or --password-stdin).")] = "admin",
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Log in to the manager as --user with the password from standard input."),
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Create an API token and print it once (use it as DEVYARD_TOKEN)."""
    expires_at = utcnow() + parse_duration(expires_in) if expires_in else None
    if scope and scope not in SCOPES:
        raise Invalid(f"scope must be one of {', '.join(SCOPES)}", code="invalid_scope")
    body = {"name": name, "expires_in": expires_in, **({"scope": scope} if scope else {})}
    if password_stdin:
        api = Api(token="")
        api.request("POST", "/auth/login", json={"username": user, "password": sys.stdin.readline().rstrip("\n")})
        token = api.request("POST", "/tokens", json=body)["token"]
    elif remote():
        token = Api().request("POST", "/tokens", json=body)["token"]
    else:

        async def make(db: DB, audit: AuditLog) -> str:
            row = await user_store.get_user(db, user)
            chosen = scope or ("admin" if row.is_admin else "write")
            if chosen == "admin" and not row.is_admin:
                raise Forbidden("only admins may have admin-scoped tokens", code="admin_required")
            token_row, token = await insert_token(db, row.id, name, chosen, expires_at)
            await _audited("token.create", name, {"user": user, "scope": chosen, "token_id": token_row.id})(audit)
            return token

        token = local(data_dir, make)
    print(token)


@token_app.command("ls")
def token_ls() -> None:
    """List your tokens (through the API)."""
    api = Api()
    api.require_token()
    table = Table("id", "name", "scope", "created", "expires", "last used", "revoked")
    for t in api.request("GET", "/tokens"):
        table.add_row(
            str(t["id"]),
            t["name"],
            t["scope"],
            *((t[k] or "")[:16].replace("T", " ") for k in ("created_at", "expires_at", "last_used_at", "revoked_at")),
        )
    console.print(table)


@token_app.command("revoke")
def token_revoke(token_id: int, data_dir: DataDir = None) -> None:
    """Revoke a token by id: it stops working at once."""
    if remote():
        Api().request("DELETE", f"/tokens/{token_id}")
    else:

        async def revoke(db: DB, audit: AuditLog) -> None:
            async with db() as s:
                row = await s.get(TokenRow, token_id)
                if row is None:
                    raise NotFound(f"no token {token_id}", code="token_not_found")
                row.revoked_at = row.revoked_at or utcnow()
                await s.commit()
            await _audited("token.revoke", row.name, {"token_id": token_id})(audit)

        local(data_dir, revoke)
    console.print(f"revoked token {token_id}")


def audit_command(
    lines: Annotated[int, typer.Option("-n", "--lines", help="How many entries, newest first.")] = 50,
    action: Annotated[str | None, typer.Option("--action", help="Only this action (prefix, e.g. workspace.).")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only this user's actions.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Show the audit log: logins, account and token changes, workspace actions and shares."""
    if remote():
        entries = Api().request(
            "GET", "/audit", params={k: v for k, v in {"limit": lines, "action": action, "actor": actor}.items() if v}
        )
        rows = [
            (
                e["at"][:19].replace("T", " "),
                e["actor"] or "",
                e["action"],
                e["target"] or "",
                e["success"],
                e["address"] or "",
            )
            for e in entries
        ]
    else:
        found = local(data_dir, lambda _db, audit: audit.entries(lines, action, actor))
        rows = [
            (e.at.strftime("%Y-%m-%d %H:%M:%S"), e.actor or "", e.action, e.target or "", e.success, e.address or "")
            for e in found
        ]
    table = Table("when (UTC)", "actor", "action", "target", "ok", "address")
    for when, who, what, target, ok, address in rows:
        table.add_row(when, who, what, target, "yes" if ok else "[red]no[/]", address)
    console.print(table)
