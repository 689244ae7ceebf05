"""`devyard group ...`: local groups and their members, and what each group means here (admins)."""

from __future__ import annotations

import typer
from rich.table import Table

from devyard.cli.ws import _api, console

group_app = typer.Typer(help="Manage groups and their members (admins).", no_args_is_help=True)


@group_app.command("ls")
def list_groups() -> None:
    """List the groups, their members (local or from the identity provider) and their policies."""
    table = Table("group", "members", "policy")
    for g in _api().request("GET", "/groups"):
        members = ", ".join(f"{m['user']}" + (" (sso)" if m["source"] == "oidc" else "") for m in g["members"])
        policy = g["policy"] or {}
        said = ", ".join(f"{k}: {v}" for k, v in policy.items() if v not in (None, False)) or "-"
        table.add_row(g["name"], members or "-", said)
    console.print(table)


@group_app.command("add")
def add_group(name: str) -> None:
    """Add a local group (give it a meaning under `groups:` in devyard.yaml)."""
    _api().request("POST", "/groups", json={"name": name})
    console.print(f"group {name} added")


@group_app.command("rm")
def remove_group(name: str) -> None:
    """Delete a group; its members leave it."""
    _api().request("DELETE", f"/groups/{name}")
    console.print(f"group {name} deleted")


@group_app.command("add-member")
def add_member(name: str, user: str) -> None:
    """Put a user in a group."""
    _api().request("PUT", f"/groups/{name}/members/{user}")
    console.print(f"{user} is in {name}")


@group_app.command("rm-member")
def remove_member(name: str, user: str) -> None:
    """Take a user out of a group (from their next request on)."""
    _api().request("DELETE", f"/groups/{name}/members/{user}")
    console.print(f"{user} is no longer in {name}")
