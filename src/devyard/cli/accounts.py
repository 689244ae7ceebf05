"""`devyard user ...` and `devyard token ...`: through the API when DEVYARD_TOKEN is set, else on the local database."""

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

from devyard.auth import users as user_store
from devyard.auth.identity import Authenticator
from devyard.auth.secrets import parse_duration
from devyard.auth.throttle import LoginThrottle
from devyard.cli.client import Api
from devyard.config import load_settings
from devyard.errors import Invalid
from devyard.models import UserCreate
from devyard.store.db import migrate, open_engine, sessionmaker
from devyard.store.tables import utcnow

user_app = typer.Typer(help="Manage user accounts.", no_args_is_help=True)
token_app = typer.Typer(help="Manage API tokens.", no_args_is_help=True)
console = Console()
T = TypeVar("T")
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="devyard's data directory (local database access).")]


def _local(data_dir: Path | None, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run `work(sessionmaker)` against the database in the data dir."""
    settings = load_settings(data_dir=data_dir)

    async def run() -> T:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        migrate(settings.db_url)
        engine = open_engine(settings.db_url)
        try:
            return await work(sessionmaker(engine))
        finally:
            await engine.dispose()

    return asyncio.run(run())


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
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from standard input.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Add a user; without a password given, one is generated and printed once."""
    password = _read_password(password_stdin)
    generated = not password
    password = password or secrets.token_urlsafe(12)
    body = UserCreate(name=name, password=password, is_admin=admin)  # validates before touching anything
    if os.environ.get("DEVYARD_TOKEN"):
        Api().request("POST", "/users", json=body.model_dump())
    else:
        _local(data_dir, lambda db: user_store.create_user(db, body.name, body.password, body.is_admin))
    console.print(f"added user [bold]{name}[/]" + (" (admin)" if admin else ""))
    if generated:
        console.print(f"password: [bold]{password}[/] (shown once)")


@user_app.command("ls")
def user_ls(data_dir: DataDir = None) -> None:
    """List users."""
    if os.environ.get("DEVYARD_TOKEN"):
        rows = [(u["name"], u["is_admin"], u["created_at"][:16]) for u in Api().request("GET", "/users")]
    else:
        found = _local(data_dir, user_store.list_users)
        rows = [(u.name, u.is_admin, u.created_at.strftime("%Y-%m-%dT%H:%M")) for u in found]
    table = Table("name", "admin", "created")
    for name, is_admin, created in rows:
        table.add_row(name, "yes" if is_admin else "", created)
    console.print(table)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option("--name", help="A label for the token.")] = "cli",
    expires_in: Annotated[str | None, typer.Option("--expires-in", help="Lifetime like 30d, 12h; default: no expiry.")] = None,
    user: Annotated[str, typer.Option("--user", help="Whose token (local database or --password-stdin).")] = "admin",
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Log in to the manager as --user with the password from standard input.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Create an API token and print it once (use it as DEVYARD_TOKEN)."""
    expires_at = utcnow() + parse_duration(expires_in) if expires_in else None
    body = {"name": name, "expires_in": expires_in}
    if password_stdin:
        api = Api(token="")
        api.request("POST", "/auth/login", json={"username": user, "password": sys.stdin.readline().rstrip("\n")})
        token = api.request("POST", "/tokens", json=body)["token"]
    elif os.environ.get("DEVYARD_TOKEN"):
        token = Api().request("POST", "/tokens", json=body)["token"]
    else:
        async def make(db: Any) -> str:
            row = await user_store.get_user(db, user)
            return await Authenticator(db, LoginThrottle(1, 1), 1).create_token(row.id, name, expires_at)

        token = _local(data_dir, make)
    print(token)
