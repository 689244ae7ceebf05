"""`devyard secret ...`: your secrets, through the manager's API (values are read, never shown)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from devyard.apiclient import Api
from devyard.errors import Invalid

secret_app = typer.Typer(
    help="Manage your secrets: environment variables or files in your workspaces.", no_args_is_help=True
)
console = Console()


def _api() -> Api:
    api = Api()
    api.require_token()
    return api


@secret_app.command("set")
def set_secret(
    name: str,
    file: Annotated[
        str | None,
        typer.Option("--file", help="Write it to this path in each workspace's home (0600), e.g. .databrickscfg."),
    ] = None,
) -> None:
    """Set a secret; the value is read from standard input (or asked for, hidden)."""
    if sys.stdin.isatty():
        value = typer.prompt(f"value of {name}", hide_input=True, confirmation_prompt=True)
    else:
        value = sys.stdin.read()
        value = value[:-1] if value.endswith("\n") and not file else value  # `echo x |` adds a newline to variables
    if not value:
        raise Invalid("the secret's value is empty: give it on standard input", code="empty_secret")
    info = _api().request("PUT", f"/secrets/{name}", json={"value": value, "file": file})
    where = (
        f"file ~/{info['file']}" if info["file"] else "environment variable (running workspaces see it after a restart)"
    )
    console.print(f"secret {name} set: {where}", highlight=False)


@secret_app.command("ls")
def list_secrets() -> None:
    """List your secrets (names, never values)."""
    table = Table("name", "as", "updated")
    for s in _api().request("GET", "/secrets"):
        table.add_row(
            s["name"], f"file ~/{s['file']}" if s["file"] else "variable", s["updated_at"][:16].replace("T", " ")
        )
    console.print(table)


@secret_app.command("rm")
def remove_secret(name: str) -> None:
    """Delete a secret (its file goes from your workspaces too)."""
    _api().request("DELETE", f"/secrets/{name}")
    console.print(f"deleted secret {name}")
